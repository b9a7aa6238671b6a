//! Readiness: named checks that a service sets as its dependencies come and go.

use std::collections::BTreeMap;
use std::sync::RwLock;

/// The state of one readiness check.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "state", content = "detail", rename_all = "lowercase")]
pub enum Check {
    /// Not yet known (still starting).
    Pending,
    /// Working.
    Ok,
    /// Not working, with why.
    Failing(String),
}

/// The readiness checks of one service. Ready when every check is `Ok`.
#[derive(Debug, Default)]
pub struct Health {
    checks: RwLock<BTreeMap<String, Check>>,
}

/// A readiness report as `/readyz` serves it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Report {
    /// Whether every check is `Ok`.
    pub ready: bool,
    /// Each check by name.
    pub checks: BTreeMap<String, Check>,
}

impl Health {
    /// A service with the given checks, all pending.
    pub fn new(checks: &[&str]) -> Health {
        let h = Health::default();
        for c in checks {
            h.set(c, Check::Pending);
        }
        h
    }

    /// Set one check.
    pub fn set(&self, name: &str, check: Check) {
        let mut map = self.checks.write().unwrap_or_else(|p| p.into_inner());
        let previous = map.insert(name.to_string(), check.clone());
        if previous.as_ref() != Some(&check) {
            match &check {
                Check::Failing(why) => log::warn!(check = name; "readiness check failing: {why}"),
                Check::Ok => log::info!(check = name; "readiness check ok"),
                Check::Pending => {}
            }
        }
    }

    /// Set one check from a result.
    pub fn set_result<E: std::fmt::Display>(&self, name: &str, r: &Result<(), E>) {
        self.set(
            name,
            match r {
                Ok(()) => Check::Ok,
                Err(e) => Check::Failing(e.to_string()),
            },
        );
    }

    /// The current report.
    pub fn report(&self) -> Report {
        let checks = self.checks.read().unwrap_or_else(|p| p.into_inner()).clone();
        Report { ready: checks.values().all(|c| *c == Check::Ok), checks }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_only_when_all_ok() {
        let h = Health::new(&["store", "hsm"]);
        assert!(!h.report().ready);
        h.set("store", Check::Ok);
        assert!(!h.report().ready);
        h.set_result::<String>("hsm", &Ok(()));
        assert!(h.report().ready);
        h.set_result("hsm", &Err("token missing"));
        let r = h.report();
        assert!(!r.ready);
        assert_eq!(r.checks["hsm"], Check::Failing("token missing".into()));
    }
}
