//! `vbank backup create|list|verify|restore`: consistent backups of a node's state into restic.
//!
//! A backup holds the stores (exported from a read transaction inside the service that owns each redb file, or from
//! one repeatable-read snapshot of PostgreSQL), the configuration and the certificates. The stores hold the audit
//! log and keyd's registry of wrapped keys; no plaintext key exists outside the HSM, so none can be in a backup. TLS
//! private keys are left out (re-issued from the bank's CA), and recordings are listed, not copied: they are
//! protected by their own storage. The tree is assembled in `[backup] staging_dir`, described by `MANIFEST.json`, and
//! handed to restic, which encrypts it under the repository password (a credential).

pub(crate) mod manifest;
mod metrics;
pub(crate) mod restic;
mod restore;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use clap::Subcommand;
use serde_json::json;
use vbank_config::{Config, Service, StoreConfig};
use vbank_service::client::{self, Method};
use vbank_store::{Snapshot, Store};

pub use manifest::{Excluded, FileEntry, Manifest, StoreEntry};
use restic::Restic;

/// Backup tools.
#[derive(Debug, Subcommand)]
pub enum BackupCmd {
    /// Take a backup now: stores, configuration, certificates, the recordings' list; prints the snapshot id.
    Create {
        /// Afterwards apply [backup] retention (keep_daily/weekly/monthly) and prune the repository.
        #[arg(long)]
        prune: bool,
    },
    /// vbank's snapshots in the repository.
    List,
    /// Check the repository (every data blob read back), restore a snapshot into a scratch directory, compare every
    /// file with its manifest, and load each store export into a scratch store and export it again byte-identical.
    Verify {
        /// Snapshot id (or its first characters), or `latest`.
        #[arg(default_value = "latest")]
        snapshot: String,
        /// Skip reading every data blob (structure check only; faster on a large repository).
        #[arg(long)]
        no_read_data: bool,
    },
    /// Restore a snapshot onto this node: the stores into empty redb files (the old ones kept aside) or an empty
    /// PostgreSQL database, and the configuration and certificates to their paths (changed files kept aside).
    /// The services must be stopped.
    Restore {
        /// Snapshot id (or its first characters), or `latest`.
        snapshot: String,
        /// Restore only the stores, or only the files.
        #[arg(long, value_parser = ["all", "store", "files"], default_value = "all")]
        only: String,
    },
}

/// Run a backup command; returns the exit code.
pub fn run(cmd: BackupCmd, config: &Path, json_out: bool) -> Result<i32> {
    let (cfg, _) = vbank_config::load(config).map_err(|e| anyhow::anyhow!("{e}"))?;
    let restic = Restic::new(&cfg.backup)?;
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    match cmd {
        BackupCmd::Create { prune } => {
            let metrics = |values: &[(&str, f64)]| metrics::update(&cfg.backup.metrics_file, &cfg.node.name, values);
            let r = match rt.block_on(create(&cfg, config, &restic)) {
                Ok(r) => r,
                Err(e) => {
                    metrics(&[("vbank_backup_last_failure_timestamp_seconds", crate::unix_now() as f64)]);
                    return Err(e);
                }
            };
            metrics(&[
                ("vbank_backup_last_success_timestamp_seconds", crate::unix_now() as f64),
                ("vbank_backup_last_duration_seconds", r["ms"].as_f64().unwrap_or(0.0) / 1000.0),
                ("vbank_backup_last_bytes", r["bytes"].as_f64().unwrap_or(0.0)),
            ]);
            if prune {
                restic.forget(cfg.backup.keep_daily, cfg.backup.keep_weekly, cfg.backup.keep_monthly)?;
            }
            if json_out {
                println!("{}", serde_json::to_string(&r)?);
            } else {
                let id = r["snapshot"].as_str().unwrap_or("?");
                println!(
                    "snapshot {} of {}: {} files, {} bytes, stores {}, {} recordings listed, in {} ms",
                    &id[..id.len().min(8)],
                    cfg.backup.repository,
                    r["files"],
                    r["bytes"],
                    r["stores"].as_str().unwrap_or("?"),
                    r["recordings"],
                    r["ms"]
                );
            }
            Ok(0)
        }
        BackupCmd::List => {
            let list = restic.snapshots()?;
            if json_out {
                println!("{}", serde_json::to_string(&list)?);
            } else {
                for s in &list {
                    println!(
                        "{}  {}  {}  {}",
                        s.short_id,
                        s.time.get(..19).unwrap_or(&s.time),
                        s.hostname,
                        s.tags.join(",")
                    );
                }
                if list.is_empty() {
                    println!("no vbank snapshots in {}", cfg.backup.repository);
                }
            }
            Ok(0)
        }
        BackupCmd::Verify { snapshot, no_read_data } => {
            let verified = rt.block_on(restore::verify(&cfg, &restic, &snapshot, !no_read_data));
            let ok = matches!(&verified, Ok(r) if r["ok"] == true);
            let name = if ok {
                "vbank_backup_last_verify_success_timestamp_seconds"
            } else {
                "vbank_backup_last_verify_failure_timestamp_seconds"
            };
            metrics::update(&cfg.backup.metrics_file, &cfg.node.name, &[(name, crate::unix_now() as f64)]);
            restore::print(&verified?, json_out);
            Ok(if ok { 0 } else { 1 })
        }
        BackupCmd::Restore { snapshot, only } => {
            let r = rt.block_on(restore::restore(&cfg, &restic, &snapshot, &only))?;
            restore::print(&r, json_out);
            Ok(0)
        }
    }
}

/// The staging directory, emptied, locked against a concurrent backup for as long as the lock lives.
fn stage(cfg: &Config) -> Result<(PathBuf, nix::fcntl::Flock<std::fs::File>)> {
    use std::os::unix::fs::DirBuilderExt as _;
    let base = &cfg.backup.staging_dir;
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(base).with_context(|| {
        format!(
            "creating [backup] staging_dir {} (hint: run as root, or choose a writable staging_dir)",
            base.display()
        )
    })?;
    let lock = std::fs::File::create(base.join(".lock"))?;
    let lock = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusiveNonblock)
        .map_err(|_| anyhow::anyhow!("another vbank backup is running on this node (lock {}/.lock)", base.display()))?;
    // A fixed path, so every snapshot holds the same absolute path and restores predictably.
    let dir = base.join("snapshot");
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    std::fs::DirBuilder::new().mode(0o700).create(&dir)?;
    Ok((dir, lock))
}

/// The stores of this node: redb files by service, or the shared database.
fn store_names(cfg: &Config) -> Vec<(&'static str, Option<(Service, std::net::SocketAddr)>)> {
    match cfg.store {
        StoreConfig::Redb { .. } => vec![
            ("gateway", Some((Service::Gateway, cfg.gateway.admin_listen))),
            ("keyd", Some((Service::Keyd, cfg.keyd.admin_listen))),
        ],
        StoreConfig::Postgres(_) => vec![("shared", None)],
    }
}

/// Export one store: inside the running service, else from the file (service stopped), or from PostgreSQL.
async fn export_store(
    cfg: &Config,
    tls: &std::sync::Arc<rustls::ClientConfig>,
    name: &str,
    admin: Option<(Service, std::net::SocketAddr)>,
) -> Result<Option<(Snapshot, &'static str)>> {
    let Some((svc, addr)) = admin else {
        let store = vbank_store::open(cfg, "backup").await.context("connecting to the shared database")?;
        return Ok(Some((store.export().await?, "postgres")));
    };
    let StoreConfig::Redb { dir } = &cfg.store else { unreachable!("only redb stores are asked by admin listener") };
    let path = dir.join(format!("{name}.redb"));
    let path_str = vbank_service::backup::EXPORT_PATH;
    let dns = vbank_tls::service_dns_name(svc);
    let asked = client::call(tls.clone(), addr, &dns, Method::GET, path_str, None, Duration::from_secs(120)).await;
    match asked {
        Ok((status, body)) if status.is_success() => {
            let snap = Snapshot::decode(&body).with_context(|| format!("the {name} service's export"))?;
            Ok(Some((snap, "admin-listener")))
        }
        Ok((status, body)) => {
            bail!("vbank-{name} refused the export ({status}): {}", String::from_utf8_lossy(&body).trim())
        }
        Err(asked) => {
            if !path.exists() {
                return Ok(None);
            }
            let p = path.clone();
            let store = tokio::task::spawn_blocking(move || vbank_store::RedbStore::open(&p)).await?.map_err(|e| {
                anyhow::anyhow!("vbank-{name} did not answer at {addr} ({asked}) and its store cannot be opened: {e}")
            })?;
            Ok(Some((store.export().await?, "file")))
        }
    }
}

/// The configuration and every certificate it names (public parts only).
fn node_files(cfg: &Config, config: &Path) -> Vec<PathBuf> {
    let t = &cfg.tls;
    let mut files = vec![config.to_path_buf(), t.internal_ca.clone(), t.public.cert.clone()];
    files.extend(t.services.iter().map(|(_, p)| p.cert.clone()));
    if t.sm.enabled {
        files.extend([t.sm.internal_ca.clone(), t.sm.public.cert.clone()]);
        files.extend(t.sm.services.iter().map(|(_, p)| p.cert.clone()));
    }
    let mut seen = std::collections::BTreeSet::new();
    files
        .into_iter()
        .filter_map(|p| std::fs::canonicalize(&p).ok())
        .filter(|p| p.is_file() && seen.insert(p.clone()))
        .collect()
}

fn write_file(root: &Path, rel: &str, bytes: &[u8], from: Option<PathBuf>) -> Result<FileEntry> {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().expect("relative paths have a parent"))?;
    std::fs::write(&p, bytes).with_context(|| format!("writing {}", p.display()))?;
    Ok(FileEntry { path: rel.to_string(), from, bytes: bytes.len() as u64, sha256: manifest::sha256_hex(bytes) })
}

async fn create(cfg: &Config, config: &Path, restic: &Restic) -> Result<serde_json::Value> {
    let started = Instant::now();
    let (dir, _lock) = stage(cfg)?;
    let tls = vbank_tls::internal_client_config(&cfg.tls, Service::Cli)
        .context("loading the operator certificate (tls.cli) to ask the services for their exports")?;
    let mut m = Manifest {
        format: manifest::FORMAT.into(),
        created: crate::unix_now(),
        node: cfg.node.name.clone(),
        vbank_version: env!("CARGO_PKG_VERSION").into(),
        store_backend: match cfg.store {
            StoreConfig::Redb { .. } => "redb".into(),
            StoreConfig::Postgres(_) => "postgres".into(),
        },
        files: Vec::new(),
        stores: Vec::new(),
        recordings: manifest::list_recordings(&cfg.recorder.dir),
        excluded: vec![
            Excluded {
                what: "keys".into(),
                why: "every key lives in the HSM; the stores hold only wrapped keys and key metadata".into(),
            },
            Excluded {
                what: "TLS private keys".into(),
                why: "re-issued from the bank's CA on a restored node (runbooks/restore-from-backup.md)".into(),
            },
            Excluded {
                what: "recordings' media".into(),
                why: "protected by the recordings' own storage; each is listed here with its manifest's SHA-256".into(),
            },
        ],
    };
    for (name, admin) in store_names(cfg) {
        let Some((snap, how)) = export_store(cfg, &tls, name, admin).await? else {
            m.excluded.push(Excluded { what: format!("{name} store"), why: "none on this node yet".into() });
            continue;
        };
        let rel = format!("store/{name}.export");
        m.files.push(write_file(&dir, &rel, &snap.encode(), None)?);
        m.stores.push(StoreEntry {
            name: name.into(),
            path: rel,
            taken_by: how.into(),
            schema_version: snap.schema_version,
            kv: snap.kv.len() as u64,
            stream_entries: snap.streams.len() as u64,
        });
    }
    for f in node_files(cfg, config) {
        let bytes = std::fs::read(&f).with_context(|| format!("reading {}", f.display()))?;
        let rel = format!("files{}", f.display());
        m.files.push(write_file(&dir, &rel, &bytes, Some(f))?);
    }
    std::fs::write(dir.join(manifest::MANIFEST), serde_json::to_vec_pretty(&m)?)?;
    let problems = m.check_tree(&dir)?;
    if !problems.is_empty() {
        bail!("the staged backup does not match its manifest: {}", problems.join("; "));
    }
    let created_repo = restic.ensure_initialised()?;
    let tags = vec!["vbank".to_string(), format!("vbank-{}", env!("CARGO_PKG_VERSION"))];
    let id = restic.backup(&dir, &cfg.node.name, &tags)?;
    std::fs::remove_dir_all(&dir)?;
    let bytes: u64 = m.files.iter().map(|f| f.bytes).sum();
    log::info!(snapshot = id.as_str(), files = m.files.len(), bytes = bytes; "backup created");
    Ok(json!({
        "snapshot": id,
        "repository": cfg.backup.repository,
        "repository_created": created_repo,
        "files": m.files.len(),
        "bytes": bytes,
        "stores": m.stores.iter().map(|s| format!("{} ({} entries, {} stream entries, {})", s.name, s.kv, s.stream_entries, s.taken_by)).collect::<Vec<_>>().join(", "),
        "recordings": m.recordings.len(),
        "ms": started.elapsed().as_millis() as u64,
    }))
}
