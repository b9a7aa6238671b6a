//! Drill `backup-restore`: a working node (accounts, call tokens and their audit entries) is backed up, then stops
//! and loses its store; the operator restores the latest backup and starts it again. Objectives: the restored stores
//! are byte-identical to the backup's, every account is back, and the node serves again within the RTO goal.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use vbank_store::{RedbStore, Snapshot, Store as _};

use super::report::{Recorder, Report};
use super::scratch::Scratch;
use crate::backup::restic::Restic;

const ACCOUNTS: usize = 12;
const TOKENS: usize = 12;
/// Time to service after the loss: restore plus start (the runbook's objective).
const RTO_GOAL: Duration = Duration::from_secs(300);

/// Run it in `work` (a scratch directory).
pub fn run(work: &Path, signer: &str) -> Result<Report> {
    let mut r = Recorder::new(
        "backup-restore",
        "A scratch appliance with tellers and audited call tokens is backed up with `vbank backup create`; it then \
         stops and its store is deleted (storage lost). `vbank backup restore latest` brings the store back and the \
         appliance starts again.",
        signer,
    );
    let data = work.join("node");
    let mut node = Scratch::start(&data, Duration::from_secs(240))?;
    r.step("scratch appliance ready (vbank up in the drill's network namespace)");

    let password = work.join("backup-password");
    let mut secret = [0u8; 24];
    vbank_crypto::random(&mut secret)?;
    write_private(&password, secret.iter().map(|b| format!("{b:02x}")).collect::<String>().as_bytes())?;
    let repo = work.join("repository");
    let mut cfg_text = std::fs::read_to_string(&node.config)?;
    cfg_text.push_str(&format!(
        "\n[backup]\nrepository = \"{}\"\npassword = \"file:{}\"\n",
        repo.display(),
        password.display()
    ));
    std::fs::write(&node.config, cfg_text)?;

    node.ceremony(work, 2)?;
    r.step("key ceremony held with two drill officers (KEKs, seal and call-token keys in the drill's token)");
    for i in 0..ACCOUNTS {
        let name = format!("drill-teller-{i:02}");
        node.run(&["accounts", "add", &name, "--business", "wealth"], Some("Drill-Passw0rd-2026!\n"))?;
    }
    for i in 0..TOKENS {
        node.run(&["token", "--room", &format!("drill-call-{i:02}"), "--role", "customer"], None)?;
    }
    r.step(format!("{ACCOUNTS} teller accounts created and {TOKENS} call tokens issued (each audited by keyd)"));

    let out: serde_json::Value = serde_json::from_str(&node.run(&["--json", "backup", "create"], None)?)?;
    let snapshot = out["snapshot"].as_str().context("vbank backup create printed no snapshot")?.to_string();
    r.step(format!("backup {} taken in {} ms: {}", &snapshot[..8], out["ms"], out["stores"].as_str().unwrap_or("")));
    let backed_up_at = Instant::now();

    node.stop();
    let store_dir = data.join("store");
    let before = export_files(&store_dir)?;
    let fault = Instant::now();
    for f in std::fs::read_dir(&store_dir)? {
        std::fs::remove_file(f?.path())?;
    }
    r.step("fault: the node stopped and its store was deleted");

    let out: serde_json::Value = serde_json::from_str(&node.run(&["--json", "backup", "restore", "latest"], None)?)?;
    r.step(format!("vbank backup restore latest: {} ms", out["ms"]));
    let restored = export_files(&store_dir)?;

    let (cfg, _) = vbank_config::load(&node.config).map_err(|e| anyhow::anyhow!("{e}"))?;
    let restic = Restic::new(&cfg.backup)?;
    let snap = restic.find(&snapshot)?;
    let check = work.join("backup-as-taken");
    let root = restic.restore(&snap, &check)?;
    let mut identical = true;
    let mut compared = Vec::new();
    for (name, bytes) in &restored {
        let taken = std::fs::read(root.join(format!("store/{name}.export")))
            .with_context(|| format!("the backup holds no {name} store"))?;
        identical &= &taken == bytes;
        compared.push(format!("{name} {} bytes", bytes.len()));
    }
    identical &= restored.len() == 2;
    r.objective(
        "backup round trip",
        "restored stores byte-identical to the backup's exports",
        format!("{} ({})", if identical { "byte-identical" } else { "DIFFERENT" }, compared.join(", ")),
        if identical { 1.0 } else { 0.0 },
        "bool",
        identical,
    );
    let lost = lost_entries(&before, &restored);
    r.step(format!(
        "written after the backup, so lost with the store (RPO is the time since the last backup, here {:.1} s): {}",
        fault.duration_since(backed_up_at).as_secs_f64(),
        if lost.is_empty() { "nothing".to_string() } else { lost.join(", ") }
    ));

    drop(node);
    let mut node = Scratch::start(&data, Duration::from_secs(240))?;
    let rto = fault.elapsed();
    r.objective(
        "time to service (RTO)",
        &format!("≤ {} s from the loss to every service ready", RTO_GOAL.as_secs()),
        format!("{:.1} s", rto.as_secs_f64()),
        rto.as_millis() as f64,
        "ms",
        rto <= RTO_GOAL,
    );
    let listed: serde_json::Value = serde_json::from_str(&node.run(&["--json", "accounts", "list"], None)?)?;
    let back = (0..ACCOUNTS)
        .filter(|i| {
            let name = format!("drill-teller-{i:02}");
            listed
                .as_array()
                .into_iter()
                .flatten()
                .chain(listed["accounts"].as_array().into_iter().flatten())
                .any(|a| a["name"] == name.as_str())
        })
        .count();
    r.objective(
        "accounts after the restore",
        &format!("{ACCOUNTS} of {ACCOUNTS}"),
        format!("{back} of {ACCOUNTS}"),
        back as f64,
        "accounts",
        back == ACCOUNTS,
    );
    node.stop();
    r.step("scratch appliance stopped");
    Ok(r.finish())
}

/// Each redb store file of `dir`, exported (its service stopped).
fn export_files(dir: &Path) -> Result<Vec<(String, Vec<u8>)>> {
    let rt = tokio::runtime::Builder::new_current_thread().build()?;
    let mut out = Vec::new();
    let mut names: Vec<_> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.strip_suffix(".redb")).map(str::to_string))
        .collect();
    names.sort();
    for name in names {
        let store = RedbStore::open(&dir.join(format!("{name}.redb")))?;
        out.push((name, rt.block_on(store.export())?.encode()));
    }
    if out.is_empty() {
        bail!("no store files in {}", dir.display());
    }
    Ok(out)
}

/// Entries in `before` (the store as the fault found it) that the restore did not bring back, named.
fn lost_entries(before: &[(String, Vec<u8>)], after: &[(String, Vec<u8>)]) -> Vec<String> {
    let mut lost = Vec::new();
    for (name, bytes) in before {
        let Ok(b) = Snapshot::decode(bytes) else { continue };
        let a = after.iter().find(|(n, _)| n == name).and_then(|(_, x)| Snapshot::decode(x).ok()).unwrap_or_default();
        for e in b.kv.iter().filter(|e| !a.kv.contains(e)) {
            lost.push(format!("{name}: {}/{} v{}", e.table, e.key, e.version));
        }
        for e in b.streams.iter().filter(|e| !a.streams.contains(e)) {
            lost.push(format!("{name}: stream {} #{}", e.stream, e.seq));
        }
    }
    lost
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
    f.write_all(bytes)?;
    Ok(())
}
