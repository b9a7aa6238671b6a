//! The journald path for real: `vbank gateway` runs in its own mount namespace where /run/systemd is this test's
//! directory, so its journal socket is a datagram socket the test reads. Checks the native protocol fields and that
//! personal data is masked before it leaves the process.

mod common;

use std::collections::HashMap;
use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{VBANK, free_ports, get};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// Parse one datagram of the journald native protocol: `KEY=value\n`, or `KEY\n<u64 LE length><bytes>\n`.
fn parse_entry(mut data: &[u8]) -> HashMap<String, String> {
    let mut fields = HashMap::new();
    while !data.is_empty() {
        let nl = data.iter().position(|b| *b == b'\n').unwrap_or(data.len());
        let line = &data[..nl];
        if let Some(eq) = line.iter().position(|b| *b == b'=') {
            fields.insert(
                String::from_utf8_lossy(&line[..eq]).into_owned(),
                String::from_utf8_lossy(&line[eq + 1..]).into_owned(),
            );
            data = &data[(nl + 1).min(data.len())..];
        } else {
            let key = String::from_utf8_lossy(line).into_owned();
            let rest = &data[nl + 1..];
            let len = u64::from_le_bytes(rest[..8].try_into().unwrap()) as usize;
            fields.insert(key, String::from_utf8_lossy(&rest[8..8 + len]).into_owned());
            data = &rest[(8 + len + 1).min(rest.len())..];
        }
    }
    fields
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_logs_structured_masked_entries_to_journald() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test mounts inside a private mount namespace and needs root (tests/run.sh runs as root)"
    );
    let tmp = tempfile::tempdir().unwrap();
    let (public, base) = free_ports();
    let extra = format!(
        "[node]\nname = \"jtest\"\ndata_dir = \"{}\"\ndev_mode = true\n[log]\ntarget = \"journald\"\n",
        tmp.path().display()
    );
    let (cfg_path, cfg) = common::node_config(tmp.path(), public, base, &extra);

    let run_systemd = tmp.path().join("run-systemd");
    std::fs::create_dir_all(run_systemd.join("journal")).unwrap();
    let sock = UnixDatagram::bind(run_systemd.join("journal/socket")).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(200))).unwrap();

    let mut child = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c"])
        .arg(r#"mkdir -p /run/systemd && mount --bind "$1" /run/systemd && exec "$2" gateway --config "$3""#)
        .arg("sh")
        .arg(&run_systemd)
        .arg(VBANK)
        .arg(&cfg_path)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();

    let anon = vbank_tls::anonymous_client_config(&cfg.tls).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !common::is_ready(&anon, cfg.gateway.admin_listen).await {
        assert!(Instant::now() < deadline, "gateway not ready within 30 s");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let public_addr = cfg.gateway.listen;
    let (s, _) = get(&anon, public_addr, "localhost", "/customer/110101199003078888/phone/13812345678").await;
    assert_eq!(s.as_u16(), 404);

    let mut entries = Vec::new();
    let mut raw = Vec::new();
    let until = Instant::now() + Duration::from_secs(3);
    let mut buf = vec![0u8; 65536];
    while Instant::now() < until {
        if let Ok(n) = sock.recv(&mut buf) {
            raw.extend_from_slice(&buf[..n]);
            entries.push(parse_entry(&buf[..n]));
        }
    }
    kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM).unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");

    let raw = String::from_utf8_lossy(&raw);
    assert!(!raw.contains("199003078888"), "an ID number reached the journal unmasked");
    assert!(!raw.contains("13812345678"), "a phone number reached the journal unmasked");
    let access = entries
        .iter()
        .find(|e| e.get("MESSAGE").is_some_and(|m| m.contains("/customer/")))
        .unwrap_or_else(|| panic!("no access-log entry among {entries:#?}"));
    assert_eq!(access["MESSAGE"], "[DEV] GET /customer/110101********8888/phone/138****5678");
    // systemd-journal-logger maps log::Level::Info to LOG_NOTICE (5).
    assert_eq!(access["PRIORITY"], "5");
    assert_eq!(access["SYSLOG_IDENTIFIER"], "vbank-gateway");
    assert_eq!(access["VBANK_SERVICE"], "gateway");
    assert_eq!(access["VBANK_NODE"], "jtest");
    assert_eq!(access["VBANK_DEV"], "1");
    assert_eq!(access["STATUS"], "404");
    assert!(entries.iter().any(|e| { e.get("MESSAGE").is_some_and(|m| m.contains("gateway started")) }));
}
