//! `vbank drill <name>`: a disaster-recovery drill that proves itself. Each builds its scenario on this machine in a
//! network namespace of its own (a scratch appliance, never the production node), drives it, injects the fault,
//! measures recovery against its objectives, and writes a sealed report (see [`report`]). Exit 0 when every
//! objective is met, 2 when one is missed, 1 when the drill could not run. Every drill is bounded in time and
//! cleans up after itself.

mod backup_restore;
pub mod report;
mod scratch;

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, Result, bail};
use clap::Subcommand;
use vbank_crypto::sm2sig::Sm2PrivateKey;

/// The drills this version runs, with the runbook each belongs to.
pub const DRILLS: &[(&str, &str, &str)] = &[(
    "backup-restore",
    "runbooks/restore-from-backup.md",
    "take a backup of a working node, lose its state, restore it, and compare",
)];

/// Drill tools.
#[derive(Debug, Subcommand)]
pub enum DrillCmd {
    /// Run a drill (as root: it makes a network namespace).
    Run {
        /// The drill (`vbank drill list`).
        name: String,
        /// Where the report goes.
        #[arg(long, default_value = "/var/lib/vbank/drills")]
        report_dir: PathBuf,
        /// The officer's SM2 private key that seals the report (`vbank hsm officer-keygen`).
        #[arg(long)]
        signer_key: PathBuf,
        /// The officer's name, as written in the report.
        #[arg(long)]
        signer: String,
        /// Give up (exit 1) after this many seconds.
        #[arg(long, default_value_t = 900)]
        time_limit: u64,
    },
    /// The drills, each with its runbook.
    List,
    /// Check a report's seal against the signer's public key and print its result.
    Verify {
        /// The report (`drill-<name>-<time>.json`; its seal is the `.json.sig` next to it).
        report: PathBuf,
        /// The signer's public key (PEM).
        #[arg(long)]
        public_key: PathBuf,
    },
}

/// Seconds since the epoch.
pub fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// Run a drill command; returns the exit code. Called before any thread is started (a drill enters its own network
/// namespace, which applies to the calling thread and what it starts later).
pub fn run(cmd: DrillCmd, json_out: bool) -> Result<i32> {
    match cmd {
        DrillCmd::List => {
            if json_out {
                let list: Vec<_> = DRILLS
                    .iter()
                    .map(|(n, rb, what)| serde_json::json!({"name": n, "runbook": rb, "scenario": what}))
                    .collect();
                println!("{}", serde_json::Value::Array(list));
            } else {
                for (n, rb, what) in DRILLS {
                    println!("{n:<16} {what} ({rb})");
                }
            }
            Ok(0)
        }
        DrillCmd::Verify { report, public_key } => {
            let r = report::verify(&report, &public_key)?;
            if json_out {
                println!(
                    "{}",
                    serde_json::json!({"seal": "valid", "drill": r.drill, "passed": r.passed,
                                                  "signer": r.signer, "started": r.started})
                );
            } else {
                println!(
                    "seal valid: drill {} run by {} at {} (unix): {}",
                    r.drill,
                    r.signer,
                    r.started,
                    if r.passed { "passed" } else { "FAILED" }
                );
                for o in &r.objectives {
                    println!("  {:<4} {}: {} (goal {})", if o.met { "ok" } else { "MISS" }, o.name, o.measured, o.goal);
                }
            }
            Ok(if r.passed { 0 } else { 2 })
        }
        DrillCmd::Run { name, report_dir, signer_key, signer, time_limit } => {
            let Some(&(name, _, _)) = DRILLS.iter().find(|d| d.0 == name) else {
                bail!("no drill {name:?} (hint: vbank drill list)");
            };
            let key = load_key(&signer_key)?;
            enter_namespace()?;
            watchdog(Duration::from_secs(time_limit));
            let work =
                tempfile::Builder::new().prefix("vbank-drill-").tempdir().context("making the drill's directory")?;
            let report = match name {
                "backup-restore" => backup_restore::run(work.path(), &signer)?,
                _ => unreachable!("listed in DRILLS"),
            };
            let path = report.write_sealed(&report_dir, &key)?;
            if json_out {
                println!(
                    "{}",
                    serde_json::json!({"report": path, "passed": report.passed, "objectives": report.objectives})
                );
            } else {
                println!("{}: {} — report {}", name, if report.passed { "PASSED" } else { "FAILED" }, path.display());
            }
            Ok(if report.passed { 0 } else { 2 })
        }
    }
}

fn load_key(path: &Path) -> Result<Sm2PrivateKey> {
    let pem = std::fs::read_to_string(path)
        .with_context(|| format!("reading the signer key {} (hint: vbank hsm officer-keygen)", path.display()))?;
    Sm2PrivateKey::from_pkcs8_pem(&pem).context("the signer key is not an SM2 private key (PKCS#8 PEM)")
}

/// A network namespace of the drill's own, with loopback up: its appliance's ports cannot collide with, or be
/// reached from, anything else on the machine.
fn enter_namespace() -> Result<()> {
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)
        .map_err(|e| anyhow::anyhow!("cannot make the drill's network namespace ({e}) (hint: run drills as root)"))?;
    let out =
        std::process::Command::new("ip").args(["link", "set", "lo", "up"]).output().context("running ip (iproute2)")?;
    if !out.status.success() {
        bail!("ip link set lo up: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

/// End the whole drill (and, through PR_SET_PDEATHSIG, its appliance) when it overruns.
fn watchdog(limit: Duration) {
    std::thread::spawn(move || {
        std::thread::sleep(limit);
        eprintln!("vbank drill: the drill exceeded its time limit of {} s and was stopped", limit.as_secs());
        std::process::exit(1);
    });
}
