//! Per-address limits on the desk's open doors: staff login (password spraying across accounts, which the
//! per-account lockout does not stop) and joining the queue (flooding it with fake customers). Fixed one-minute
//! windows per client address; generous enough for a branch or a carrier-grade NAT, where many people share one.

use std::collections::HashMap;
use std::net::IpAddr;

/// Which door.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum Door {
    /// `POST /api/login`.
    Login,
    /// `POST /api/queue`.
    Queue,
}

impl Door {
    /// Requests allowed per address per minute.
    pub(super) fn per_minute(self) -> u32 {
        match self {
            Door::Login => 20,
            Door::Queue => 30,
        }
    }
}

const WINDOW_MS: u64 = 60_000;
/// Addresses remembered before old windows are dropped.
const REMEMBERED: usize = 100_000;

/// The windows, by door and address.
#[derive(Default)]
pub(super) struct Limits {
    windows: HashMap<(Door, IpAddr), (u64, u32)>,
}

impl Limits {
    /// Whether `ip` may go through `door` at `now_ms`; if not, the seconds until it may, and whether this is the
    /// window's first refusal (log that one, not a flood).
    pub(super) fn allow(&mut self, door: Door, ip: IpAddr, now_ms: u64) -> Result<(), (u64, bool)> {
        if self.windows.len() >= REMEMBERED {
            self.windows.retain(|_, (start, _)| now_ms.saturating_sub(*start) < WINDOW_MS);
        }
        let (start, count) = self.windows.entry((door, ip)).or_insert((now_ms, 0));
        if now_ms.saturating_sub(*start) >= WINDOW_MS {
            *start = now_ms;
            *count = 0;
        }
        *count = count.saturating_add(1);
        if *count > door.per_minute() {
            let wait = (WINDOW_MS - now_ms.saturating_sub(*start)).div_ceil(1000);
            return Err((wait, *count == door.per_minute() + 1));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_address_gets_its_own_minute() {
        let mut l = Limits::default();
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        for _ in 0..Door::Login.per_minute() {
            assert!(l.allow(Door::Login, a, 1_000).is_ok());
        }
        assert_eq!(l.allow(Door::Login, a, 31_000), Err((30, true)), "refused, with the seconds left in the window");
        assert_eq!(l.allow(Door::Login, a, 32_000), Err((29, false)), "refused again, not logged again");
        assert!(l.allow(Door::Login, b, 31_000).is_ok(), "another address");
        assert!(l.allow(Door::Queue, a, 31_000).is_ok(), "another door");
        assert!(l.allow(Door::Login, a, 61_000).is_ok(), "the next minute");
    }
}
