//! The systemd service protocol (sd_notify): `READY=1` once the service serves, `STATUS=` with its readiness checks,
//! `WATCHDOG=1` every half `WatchdogSec` while the async runtime is alive, `STOPPING=1` on the way out. A no-op when
//! not started by systemd (`NOTIFY_SOCKET` unset), so `vbank up` and tests are unaffected.

use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

/// Send `state` (newline-separated `KEY=VALUE` lines) to systemd; whether it was sent.
pub fn notify(state: &str) -> bool {
    std::env::var("NOTIFY_SOCKET").is_ok_and(|path| notify_to(&path, state))
}

/// Send `state` to the notify socket at `path` (`@name`: an abstract socket).
pub fn notify_to(path: &str, state: &str) -> bool {
    let addr = match path.strip_prefix('@') {
        Some(name) => SocketAddr::from_abstract_name(name.as_bytes()),
        None => SocketAddr::from_pathname(path),
    };
    let Ok(addr) = addr else { return false };
    UnixDatagram::unbound().and_then(|s| s.send_to_addr(state.as_bytes(), &addr)).is_ok()
}

/// How often systemd wants a watchdog ping (half its `WatchdogSec`), if this process is the one it watches.
pub fn watchdog_interval() -> Option<Duration> {
    watchdog_from(std::env::var("WATCHDOG_USEC").ok().as_deref(), std::env::var("WATCHDOG_PID").ok().as_deref())
}

/// [`watchdog_interval`] from the two variables' values.
fn watchdog_from(usec: Option<&str>, pid: Option<&str>) -> Option<Duration> {
    let usec: u64 = usec?.parse().ok()?;
    let for_us = pid.is_none_or(|p| p.parse() == Ok(std::process::id()));
    (for_us && usec > 0).then(|| Duration::from_micros(usec / 2))
}

/// The `STATUS=` text for a readiness report.
pub fn status(report: &crate::health::Report) -> String {
    if report.ready {
        return "ready".into();
    }
    let waiting: Vec<&str> =
        report.checks.iter().filter(|(_, c)| **c != crate::health::Check::Ok).map(|(n, _)| n.as_str()).collect();
    format!("not ready: {}", waiting.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_reaches_the_notify_socket_and_the_watchdog_is_ours_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let listener = UnixDatagram::bind(&path).unwrap();
        assert!(notify_to(path.to_str().unwrap(), "READY=1\nSTATUS=ready"));
        let mut buf = [0u8; 64];
        let n = listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1\nSTATUS=ready");
        assert!(!notify_to(dir.path().join("absent").to_str().unwrap(), "READY=1"));
        let me = std::process::id().to_string();
        assert_eq!(watchdog_from(Some("30000000"), Some(&me)), Some(Duration::from_secs(15)));
        assert_eq!(watchdog_from(Some("30000000"), None), Some(Duration::from_secs(15)));
        assert_eq!(watchdog_from(Some("30000000"), Some("1")), None, "another process's watchdog");
        assert_eq!(watchdog_from(None, None), None);
    }
}
