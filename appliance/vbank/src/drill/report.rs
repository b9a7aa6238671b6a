//! A drill's report: what was done when, each objective with its goal and what was measured, written as JSON (the
//! record) and markdown (for people), and sealed: an SM2 signature (user ID [`SEAL_ID`], SM3) over the JSON file's
//! bytes by the officer who ran the drill, verifiable offline with `vbank drill verify` or stock OpenSSL.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use serde::{Deserialize, Serialize};
use vbank_crypto::sm2sig::{Sm2PrivateKey, Sm2PublicKey};

/// The SM2 user ID of drill-report seals (distinct from evidence seals, so one can never pass for the other).
pub const SEAL_ID: &str = "vbank-drill-report";

/// One objective.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Objective {
    /// What is measured.
    pub name: String,
    /// The goal, in words.
    pub goal: String,
    /// What was measured, in words.
    pub measured: String,
    /// The measured figure, for trends (milliseconds, entries, bytes; see `unit`).
    pub value: f64,
    /// Its unit.
    pub unit: String,
    /// Whether the goal was met.
    pub met: bool,
}

/// One step of the drill, at a time since its start.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Step {
    /// Milliseconds since the drill started.
    pub at_ms: u64,
    /// What happened.
    pub what: String,
}

/// The report.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    /// The drill's name.
    pub drill: String,
    /// Unix seconds at start.
    pub started: u64,
    /// Duration in milliseconds.
    pub duration_ms: u64,
    /// The machine that ran it.
    pub host: String,
    /// The vbank version.
    pub vbank_version: String,
    /// Who ran it (the signer).
    pub signer: String,
    /// The scenario, in words.
    pub scenario: String,
    /// The objectives.
    pub objectives: Vec<Objective>,
    /// The timeline.
    pub steps: Vec<Step>,
    /// Every objective met.
    pub passed: bool,
}

/// Collects steps and objectives while a drill runs.
pub struct Recorder {
    start: Instant,
    report: Report,
}

impl Recorder {
    /// Start a drill's record.
    pub fn new(drill: &str, scenario: &str, signer: &str) -> Recorder {
        let host = std::fs::read_to_string("/etc/hostname").map(|h| h.trim().to_string()).unwrap_or_default();
        Recorder {
            start: Instant::now(),
            report: Report {
                drill: drill.into(),
                started: crate::unix_now(),
                duration_ms: 0,
                host,
                vbank_version: env!("CARGO_PKG_VERSION").into(),
                signer: signer.into(),
                scenario: scenario.into(),
                objectives: Vec::new(),
                steps: Vec::new(),
                passed: false,
            },
        }
    }

    /// Milliseconds since the start.
    pub fn now_ms(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    /// Note a step (also printed to standard error, so an operator watching sees progress).
    pub fn step(&mut self, what: impl Into<String>) {
        let what = what.into();
        let at_ms = self.now_ms();
        eprintln!("[{:>7.1} s] {what}", at_ms as f64 / 1000.0);
        self.report.steps.push(Step { at_ms, what });
    }

    /// Record an objective.
    pub fn objective(&mut self, name: &str, goal: &str, measured: String, value: f64, unit: &str, met: bool) {
        self.step(format!("{}: {measured} (goal {goal}){}", name, if met { "" } else { " — MISSED" }));
        self.report.objectives.push(Objective {
            name: name.into(),
            goal: goal.into(),
            measured,
            value,
            unit: unit.into(),
            met,
        });
    }

    /// A "how long until" objective: met when it happened within `goal`; `None` means it never happened.
    pub fn timed(&mut self, name: &str, goal: Duration, within: &str, took: Option<Duration>, never: &str) {
        self.objective(
            name,
            &format!("≤ {} s {within}", goal.as_secs()),
            took.map_or(never.to_string(), |d| format!("{:.1} s", d.as_secs_f64())),
            took.map_or(-1.0, |d| d.as_millis() as f64),
            "ms",
            took.is_some_and(|d| d <= goal),
        );
    }

    /// The service recovered without being restarted: the same process id before and after.
    pub fn same_process(&mut self, service: &str, before: i32, after: Option<i32>) {
        let same = after == Some(before);
        self.objective(
            "no restart needed",
            &format!("the same {service} process throughout"),
            if same { "same process".into() } else { format!("{service} was restarted") },
            if same { 1.0 } else { 0.0 },
            "bool",
            same,
        );
    }

    /// The finished report.
    pub fn finish(mut self) -> Report {
        self.report.duration_ms = self.now_ms();
        self.report.passed = !self.report.objectives.is_empty() && self.report.objectives.iter().all(|o| o.met);
        self.report
    }
}

impl Report {
    /// For people.
    pub fn markdown(&self) -> String {
        let mut s = format!(
            "# Drill `{}`: {}\n\n{}\n\n- started: {} (unix), duration {:.1} s\n- host: {}, vbank {}\n- run and sealed by: {}\n\n",
            self.drill,
            if self.passed { "PASSED" } else { "FAILED" },
            self.scenario,
            self.started,
            self.duration_ms as f64 / 1000.0,
            self.host,
            self.vbank_version,
            self.signer
        );
        s.push_str("## Objectives\n\n| objective | goal | measured | met |\n|---|---|---|---|\n");
        // A cell must not end early at a `|` or a line break inside a measured text.
        let cell = |t: &str| t.replace('|', "\\|").replace('\n', " ");
        for o in &self.objectives {
            s.push_str(&format!(
                "| {} | {} | {} | {} |\n",
                cell(&o.name),
                cell(&o.goal),
                cell(&o.measured),
                if o.met { "yes" } else { "**no**" }
            ));
        }
        s.push_str("\n## Timeline\n\n");
        for st in &self.steps {
            s.push_str(&format!("- {:.1} s: {}\n", st.at_ms as f64 / 1000.0, st.what));
        }
        s.push_str(&format!(
            "\nThe record is the JSON file next to this one; its seal (`.json.sig`) is an SM2 signature with user ID \
             `{SEAL_ID}`. Check it with `vbank drill verify REPORT.json --public-key SIGNER.pub.pem`.\n"
        ));
        s
    }

    /// Write `<dir>/drill-<name>-<started>.{json,md,json.sig}`; returns the JSON's path.
    pub fn write_sealed(&self, dir: &Path, key: &Sm2PrivateKey) -> Result<PathBuf> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating the report directory {}", dir.display()))?;
        let base = dir.join(format!("drill-{}-{}", self.drill, self.started));
        let json_path = base.with_extension("json");
        let bytes = serde_json::to_vec_pretty(self)?;
        std::fs::write(&json_path, &bytes)?;
        std::fs::write(base.with_extension("md"), self.markdown())?;
        std::fs::write(base.with_extension("json.sig"), key.sign_der(SEAL_ID, &bytes)?)?;
        Ok(json_path)
    }
}

/// Check a report's seal against the signer's public key; returns the report.
pub fn verify(report: &Path, public_key: &Path) -> Result<Report> {
    let bytes = std::fs::read(report).with_context(|| format!("reading {}", report.display()))?;
    let sig_path = PathBuf::from(format!("{}.sig", report.display()));
    let sig = std::fs::read(&sig_path).with_context(|| format!("reading the seal {}", sig_path.display()))?;
    let pem = std::fs::read_to_string(public_key).with_context(|| format!("reading {}", public_key.display()))?;
    let key = Sm2PublicKey::from_pem(&pem)?;
    key.verify(SEAL_ID, &bytes, &sig)
        .map_err(|_| anyhow::anyhow!("the seal does not match: the report was changed or not signed by this key"))?;
    serde_json::from_slice(&bytes).context("the report is not a drill report")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_report_verifies_and_a_changed_one_does_not() {
        let key = Sm2PrivateKey::generate().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let mut r = Recorder::new("backup-restore", "scenario", "officer-a");
        r.objective("rto", "≤ 300 s", "12.0 s".into(), 12000.0, "ms", true);
        let report = r.finish();
        assert!(report.passed);
        let path = report.write_sealed(dir.path(), &key).unwrap();
        let public = dir.path().join("k.pub.pem");
        std::fs::write(&public, key.public_key().to_pem()).unwrap();
        assert!(verify(&path, &public).unwrap().passed);
        assert!(
            std::fs::read_to_string(path.with_extension("md")).unwrap().contains("| rto | ≤ 300 s | 12.0 s | yes |")
        );
        let tampered = std::fs::read_to_string(&path).unwrap().replace("12.0 s", "1.0 s");
        std::fs::write(&path, tampered).unwrap();
        assert!(verify(&path, &public).unwrap_err().to_string().contains("does not match"));
    }

    #[test]
    fn a_measured_text_with_a_bar_or_a_line_break_stays_in_its_cell() {
        let mut r = Recorder::new("x", "y", "z");
        r.objective("split", "a | b", "one\ntwo".into(), 1.0, "n", true);
        let md = r.finish().markdown();
        assert!(md.contains("| split | a \\| b | one two | yes |"), "{md}");
    }

    #[test]
    fn no_objectives_is_not_a_pass() {
        assert!(!Recorder::new("x", "y", "z").finish().passed);
    }
}
