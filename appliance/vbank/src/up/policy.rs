//! When to restart a supervised service: a sans-IO state machine (time is an input), tested without processes.

use std::time::{Duration, Instant};

/// A service that stayed up this long is considered healthy again: its failure count resets.
const STABLE_AFTER: Duration = Duration::from_secs(60);
/// Consecutive quick failures after which restarting stops.
const MAX_QUICK_FAILURES: u32 = 8;
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// What to do after a service exited.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Start it again after this delay.
    RestartAfter(Duration),
    /// Do not restart; stop everything and report why.
    GiveUp(String),
}

/// Restart bookkeeping for one service.
#[derive(Debug, Default)]
pub struct RestartPolicy {
    quick_failures: u32,
    started_at: Option<Instant>,
}

impl RestartPolicy {
    /// The service was started at `now`.
    pub fn started(&mut self, now: Instant) {
        self.started_at = Some(now);
    }

    /// The service exited at `now` with `code` (None: killed by a signal).
    pub fn exited(&mut self, now: Instant, code: Option<i32>) -> Decision {
        if code == Some(vbank_service::exit::CONFIG) {
            return Decision::GiveUp("it reported a configuration error; restarting will not help".to_string());
        }
        let ran = self.started_at.map(|t| now.saturating_duration_since(t)).unwrap_or_default();
        if ran >= STABLE_AFTER {
            self.quick_failures = 0;
        }
        self.quick_failures += 1;
        if self.quick_failures > MAX_QUICK_FAILURES {
            return Decision::GiveUp(format!(
                "it failed {} times in a row, each within {}s of starting",
                self.quick_failures - 1,
                STABLE_AFTER.as_secs()
            ));
        }
        let backoff = FIRST_BACKOFF.saturating_mul(1 << (self.quick_failures - 1).min(16));
        Decision::RestartAfter(backoff.min(MAX_BACKOFF))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backs_off_exponentially_up_to_a_cap() {
        let mut p = RestartPolicy::default();
        let t0 = Instant::now();
        let mut delays = Vec::new();
        for i in 0..8 {
            p.started(t0 + Duration::from_secs(i));
            match p.exited(t0 + Duration::from_secs(i) + Duration::from_millis(100), Some(1)) {
                Decision::RestartAfter(d) => delays.push(d.as_millis()),
                d => panic!("{d:?}"),
            }
        }
        assert_eq!(delays, [500, 1000, 2000, 4000, 8000, 16000, 30000, 30000]);
        assert!(matches!(p.exited(t0 + Duration::from_secs(9), Some(1)), Decision::GiveUp(_)));
    }

    #[test]
    fn a_stable_run_resets_the_count() {
        let mut p = RestartPolicy::default();
        let t0 = Instant::now();
        p.started(t0);
        assert_eq!(p.exited(t0, None), Decision::RestartAfter(Duration::from_millis(500)));
        p.started(t0);
        assert_eq!(p.exited(t0, None), Decision::RestartAfter(Duration::from_millis(1000)));
        p.started(t0);
        assert_eq!(
            p.exited(t0 + Duration::from_secs(120), Some(1)),
            Decision::RestartAfter(Duration::from_millis(500))
        );
    }

    #[test]
    fn configuration_errors_are_not_retried() {
        let mut p = RestartPolicy::default();
        p.started(Instant::now());
        assert!(matches!(p.exited(Instant::now(), Some(78)), Decision::GiveUp(_)));
    }
}
