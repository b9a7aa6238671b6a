//! `vbank drill <name>`: a disaster-recovery drill that proves itself. Each builds its scenario on this machine in
//! network and mount namespaces of its own (a scratch appliance or cluster, never the production node), drives it,
//! injects the fault,
//! measures recovery against its objectives, and writes a sealed report (see [`report`]). Exit 0 when every
//! objective is met, 2 when one is missed, 1 when the drill could not run. Every drill is bounded in time and
//! cleans up after itself.

mod backup_restore;
mod cluster;
mod db_failover;
mod disk_full;
mod gateway_failover;
mod hsm_outage;
mod key_compromise;
mod recorder_crash;
pub mod report;
mod scratch;

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use clap::Subcommand;
use vbank_crypto::sm2sig::Sm2PrivateKey;

/// The drills this version runs, with the runbook each belongs to.
pub const DRILLS: &[(&str, &str, &str)] = &[
    (
        "backup-restore",
        "runbooks/restore-from-backup.md",
        "take a backup of a working node, lose its state, restore it, and compare",
    ),
    (
        "key-compromise",
        "runbooks/key-compromise.md",
        "rotate a suspected KEK, rewrap every data key, destroy the old version under dual control",
    ),
    ("hsm-outage", "runbooks/hsm-outage.md", "the HSM disappears under a working node for 8 s, then returns"),
    (
        "recorder-crash",
        "runbooks/recorder-crash.md",
        "the recorder is killed mid-call; the same recording continues with at most 1 s of media missing",
    ),
    ("disk-full", "runbooks/storage-full.md", "the recordings disk fills below its floor, then space is freed"),
    (
        "gateway-failover",
        "runbooks/gateway-node-loss.md",
        "the gateway node holding the VIP loses power mid-call; the client rejoins on the other node within 3 s",
    ),
    (
        "db-failover",
        "runbooks/database-failover.md",
        "the Patroni primary of the shared database is killed under load; no confirmed commit may be lost",
    ),
];

/// Drill tools.
#[derive(Debug, Subcommand)]
pub enum DrillCmd {
    /// Run a drill (as root: it makes network and mount namespaces).
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
            let work =
                tempfile::Builder::new().prefix("vbank-drill-").tempdir().context("making the drill's directory")?;
            watchdog(Duration::from_secs(time_limit), work.path().to_path_buf());
            let report = match name {
                "backup-restore" => backup_restore::run(work.path(), &signer)?,
                "key-compromise" => key_compromise::run(work.path(), &signer)?,
                "hsm-outage" => hsm_outage::run(work.path(), &signer)?,
                "disk-full" => disk_full::run(work.path(), &signer)?,
                "recorder-crash" => recorder_crash::run(work.path(), &signer)?,
                "db-failover" => db_failover::run(work.path(), &signer)?,
                "gateway-failover" => gateway_failover::run(work.path(), &signer)?,
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

/// Network and mount namespaces of the drill's own, with loopback up: its appliance's ports cannot collide with, or
/// be reached from, anything else on the machine, and what it mounts (a drill's own disk) is seen by it alone and
/// goes away with it.
fn enter_namespace() -> Result<()> {
    use nix::sched::CloneFlags;
    nix::sched::unshare(CloneFlags::CLONE_NEWNET | CloneFlags::CLONE_NEWNS)
        .map_err(|e| anyhow::anyhow!("cannot make the drill's namespaces ({e}) (hint: run drills as root)"))?;
    let private = nix::mount::MsFlags::MS_REC | nix::mount::MsFlags::MS_PRIVATE;
    nix::mount::mount(None::<&str>, "/", None::<&str>, private, None::<&str>)
        .map_err(|e| anyhow::anyhow!("cannot make the drill's mounts private: {e}"))?;
    let out =
        std::process::Command::new("ip").args(["link", "set", "lo", "up"]).output().context("running ip (iproute2)")?;
    if !out.status.success() {
        bail!("ip link set lo up: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

/// The process id of the scratch appliance's `service` (its command line names the scratch configuration).
pub fn service_pid(config: &Path, service: &str) -> Option<i32> {
    let config = config.to_str()?;
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: i32 = e.file_name().to_str()?.parse().ok()?;
        let cmdline = std::fs::read(e.path().join("cmdline")).ok()?;
        let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).filter(|a| !a.is_empty()).collect();
        let found = args.contains(&service.as_bytes()) && args.contains(&config.as_bytes());
        found.then_some(pid)
    })
}

/// End the whole drill (and, through PR_SET_PDEATHSIG, its appliance) when it overruns.
fn watchdog(limit: Duration, work: PathBuf) {
    std::thread::spawn(move || {
        std::thread::sleep(limit);
        eprintln!("vbank drill: the drill exceeded its time limit of {} s and was stopped", limit.as_secs());
        // Its scratch processes die with it (they are bound to this process); its files must not outlive it either.
        let _ = std::fs::remove_dir_all(&work);
        std::process::exit(1);
    });
}
