//! `vbank backup verify` and `vbank backup restore`.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context as _, Result, bail};
use serde_json::{Value, json};
use vbank_config::{Config, StoreConfig};
use vbank_store::{RedbStore, Snapshot, Store};

use super::manifest::{self, Manifest};
use super::restic::{Restic, SnapshotInfo};

/// A scratch directory under the staging directory, removed when dropped.
fn scratch(cfg: &Config, what: &str) -> Result<tempfile::TempDir> {
    std::fs::create_dir_all(&cfg.backup.staging_dir)
        .with_context(|| format!("creating [backup] staging_dir {}", cfg.backup.staging_dir.display()))?;
    Ok(tempfile::Builder::new().prefix(what).tempdir_in(&cfg.backup.staging_dir)?)
}

/// Restore `id` into a scratch directory and check it against its manifest; refuse a tree that differs.
fn fetch(
    cfg: &Config,
    restic: &Restic,
    id: &str,
    what: &str,
) -> Result<(SnapshotInfo, tempfile::TempDir, PathBuf, Manifest)> {
    let snap = restic.find(id)?;
    let tmp = scratch(cfg, what)?;
    let root = restic.restore(&snap, tmp.path())?;
    let m = Manifest::read(&root)?;
    let problems = m.check_tree(&root)?;
    if !problems.is_empty() {
        bail!("snapshot {} does not match its manifest: {}", snap.short_id, problems.join("; "));
    }
    Ok((snap, tmp, root, m))
}

/// What `verify` found; `ok` is false when anything does not hold.
pub async fn verify(cfg: &Config, restic: &Restic, id: &str, read_data: bool) -> Result<Value> {
    let started = Instant::now();
    restic.check(read_data)?;
    let (snap, tmp, root, m) = fetch(cfg, restic, id, "verify-")?;
    let mut stores = Vec::new();
    let mut ok = true;
    for s in &m.stores {
        let bytes = std::fs::read(root.join(&s.path))?;
        let decoded = Snapshot::decode(&bytes).with_context(|| format!("{}: not a valid store export", s.path))?;
        let path = tmp.path().join(format!("{}.redb", s.name));
        let store = tokio::task::spawn_blocking(move || RedbStore::open(&path)).await??;
        store.import(&decoded).await?;
        let identical = store.export().await?.encode() == bytes;
        ok &= identical && decoded.kv.len() as u64 == s.kv && decoded.streams.len() as u64 == s.stream_entries;
        stores.push(json!({"name": s.name, "kv": s.kv, "stream_entries": s.stream_entries,
                           "reimported_byte_identical": identical}));
    }
    // Recordings are not in the backup; say whether the ones it lists are still where they were, unchanged.
    let now = manifest::list_recordings(&cfg.recorder.dir);
    let (mut present, mut changed, mut gone) = (0, 0, 0);
    for r in &m.recordings {
        match now.iter().find(|n| n.id == r.id) {
            None => gone += 1,
            Some(n) if r.sealed && n.manifest_sha256 != r.manifest_sha256 => changed += 1,
            Some(_) => present += 1,
        }
    }
    ok &= changed == 0;
    Ok(json!({
        "ok": ok,
        "action": "verify",
        "snapshot": snap.id,
        "time": snap.time,
        "repository_data_read": read_data,
        "files": m.files.len(),
        "files_match_manifest": true,
        "stores": stores,
        "recordings": {"listed": m.recordings.len(), "present": present, "changed": changed, "gone": gone},
        "ms": started.elapsed().as_millis() as u64,
    }))
}

/// Keep `path` aside as `<path>.before-restore-<unix seconds>`; returns the new name.
fn move_aside(path: &Path) -> Result<PathBuf> {
    let aside = PathBuf::from(format!("{}.before-restore-{}", path.display(), crate::unix_now()));
    std::fs::rename(path, &aside).with_context(|| format!("moving {} aside", path.display()))?;
    Ok(aside)
}

/// Give `path` the owner of `like` (the old file, or the directory).
fn same_owner(path: &Path, like: &Path) {
    use std::os::unix::fs::MetadataExt as _;
    if let Ok(m) = std::fs::metadata(like) {
        let _ = nix::unistd::chown(path, Some(m.uid().into()), Some(m.gid().into()));
    }
}

/// Restore one export into `<dir>/<name>.redb`, keeping a file already there aside.
async fn restore_redb(dir: &Path, root: &Path, s: &manifest::StoreEntry) -> Result<Value> {
    let decoded = Snapshot::decode(&std::fs::read(root.join(&s.path))?)?;
    let path = dir.join(format!("{}.redb", s.name));
    let mut aside = None;
    if path.exists() {
        // Opening it fails while its service runs: the restore must not pull the file from under it.
        let p = path.clone();
        let held = tokio::task::spawn_blocking(move || RedbStore::open(&p).map(drop)).await?;
        if held.is_err() {
            bail!(
                "{} is in use: vbank-{} is running (hint: stop the services before restoring: systemctl stop \
                 vbank.target)",
                path.display(),
                s.name
            );
        }
        aside = Some(move_aside(&path)?);
    }
    let p = path.clone();
    let store = tokio::task::spawn_blocking(move || RedbStore::open(&p)).await??;
    store.import(&decoded).await?;
    drop(store);
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    same_owner(&path, aside.as_deref().unwrap_or(dir));
    Ok(json!({"name": s.name, "into": path, "kv": s.kv, "stream_entries": s.stream_entries,
              "previous_kept_at": aside}))
}

/// Restore a snapshot onto this node.
pub async fn restore(cfg: &Config, restic: &Restic, id: &str, only: &str) -> Result<Value> {
    let started = Instant::now();
    let (snap, _tmp, root, m) = fetch(cfg, restic, id, "restore-")?;
    let mut stores = Vec::new();
    if only != "files" {
        if let StoreConfig::Redb { dir } = &cfg.store {
            if m.store_backend == "postgres" {
                bail!("this backup is of a cluster's shared database; restore it on a node with [store] postgres");
            }
            for s in &m.stores {
                stores.push(restore_redb(dir, &root, s).await?);
            }
        } else {
            // One database takes every export at once: a single node's per-service stores merged.
            let parts = m.stores.iter().map(|s| Ok(Snapshot::decode(&std::fs::read(root.join(&s.path))?)?));
            let merged = Snapshot::merge(parts.collect::<Result<Vec<_>>>()?)?;
            let store = vbank_store::open(cfg, "restore").await.context("connecting to the database")?;
            store.import(&merged).await?;
            for s in &m.stores {
                stores
                    .push(json!({"name": s.name, "into": "postgres", "kv": s.kv, "stream_entries": s.stream_entries}));
            }
        }
    }
    let mut files = Vec::new();
    if only != "store" {
        for f in m.files.iter().filter(|f| f.from.is_some()) {
            let to = f.from.as_ref().expect("filtered");
            let bytes = std::fs::read(root.join(&f.path))?;
            if std::fs::read(to).ok().as_deref() == Some(bytes.as_slice()) {
                files.push(json!({"path": to, "state": "unchanged"}));
                continue;
            }
            let aside = if to.exists() { Some(move_aside(to)?) } else { None };
            std::fs::create_dir_all(to.parent().unwrap_or(Path::new("/")))?;
            std::fs::write(to, &bytes).with_context(|| format!("writing {}", to.display()))?;
            if let Some(a) = &aside {
                same_owner(to, a);
                if let Ok(meta) = std::fs::metadata(a) {
                    let _ = std::fs::set_permissions(to, meta.permissions());
                }
            }
            files.push(json!({"path": to, "state": "restored", "previous_kept_at": aside}));
        }
    }
    log::info!(snapshot = snap.id.as_str(), only = only; "backup restored");
    Ok(json!({
        "ok": true,
        "action": "restore",
        "snapshot": snap.id,
        "time": snap.time,
        "stores": stores,
        "files": files,
        "next": "start the services (systemctl start vbank.target), then vbank status --wait 120",
        "ms": started.elapsed().as_millis() as u64,
    }))
}

/// Print a verify or restore result.
pub fn print(r: &Value, json_out: bool) {
    if json_out {
        println!("{r}");
        return;
    }
    let id = r["snapshot"].as_str().unwrap_or("?");
    println!(
        "{} of snapshot {} ({}): {}",
        r["action"].as_str().unwrap_or("?"),
        &id[..id.len().min(8)],
        r["time"].as_str().unwrap_or("?"),
        if r["ok"] == true { "ok" } else { "FAILED" }
    );
    for s in r["stores"].as_array().into_iter().flatten() {
        println!(
            "  store {}: {} entries, {} stream entries{}",
            s["name"].as_str().unwrap_or("?"),
            s["kv"],
            s["stream_entries"],
            match s["reimported_byte_identical"].as_bool() {
                Some(true) => ", re-imported byte-identical".to_string(),
                Some(false) => ", RE-IMPORT DIFFERS".to_string(),
                None => format!(" → {}", s["into"]),
            }
        );
    }
    if let Some(files) = r["files"].as_array() {
        for f in files {
            println!("  {} {}", f["state"].as_str().unwrap_or("?"), f["path"].as_str().unwrap_or("?"));
        }
    } else if r["files"].is_number() {
        println!("  {} files match the manifest", r["files"]);
    }
    if r["recordings"].is_object() {
        let c = &r["recordings"];
        println!(
            "  recordings: {} listed, {} present, {} changed, {} gone",
            c["listed"], c["present"], c["changed"], c["gone"]
        );
    }
    if let Some(next) = r["next"].as_str() {
        println!("next: {next}");
    }
}
