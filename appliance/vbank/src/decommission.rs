//! `vbank decommission` (退出机制): taking a node out of service for good, in two steps an auditor can follow.
//!
//! 1. `start` (keyd running, every other service stopped): refuse while any recording is under legal hold; file the
//!    keyd request that destroys every key of the node in the HSM, signed by the first officer; erase every
//!    recording, check each is gone and record it in the audit log; seal and export the audit log. A second officer
//!    approves the request in the HSM console (`vbank hsm approvals approve`): dual control.
//! 2. `finish` (every service stopped): check from keyd's own store that every key is destroyed and that two
//!    distinct officers approved; wipe the stores, the backup staging area, the secrets and the TLS private keys and
//!    check each is gone; write the certificate, signed by the officer (SM2, user ID [`CERT_ID`]).
//!
//! Erasure is cryptographic first: every recording and every wrapped key is ciphertext under keys that no longer
//! exist; the files are then removed.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use clap::Subcommand;
use serde_json::{Value, json};
use vbank_config::{Config, SecretRef, Service, StoreConfig};
use vbank_service::client::{self, Method};
use vbank_store::{Store as _, Table};

use crate::backup::manifest::{list_recordings, sha256_hex};
use crate::hsm_cmd::{Keyd, file_request, read_key};

/// The SM2 user ID of decommission certificates.
pub const CERT_ID: &str = "vbank-decommission";
/// A recording under legal hold has this file in its directory (`vbank recordings hold`).
pub const LEGAL_HOLD: &str = "legal-hold.json";

/// Decommissioning steps.
#[derive(Debug, Subcommand)]
pub enum DecommissionCmd {
    /// Step 1, with keyd running and every other service stopped: erase the recordings and request the destruction
    /// of every key (a second officer approves it with `vbank hsm approvals approve`).
    Start {
        /// This node's name ([node] name), to confirm which node is being decommissioned.
        #[arg(long)]
        confirm: String,
        /// The officer filing the request.
        #[arg(long)]
        officer: String,
        /// Their SM2 private key.
        #[arg(long)]
        key: PathBuf,
        /// Where the record of the decommissioning is kept (the final audit log, the certificate).
        #[arg(long)]
        out: PathBuf,
    },
    /// Step 2, after the approval, with every service stopped: check, wipe, and write the signed certificate.
    Finish {
        /// The directory `start` wrote.
        #[arg(long)]
        out: PathBuf,
        /// The officer signing the certificate.
        #[arg(long)]
        officer: String,
        /// Their SM2 private key.
        #[arg(long)]
        key: PathBuf,
    },
}

/// Run a step; returns the exit code.
pub fn run(cmd: DecommissionCmd, config: &Path, json_out: bool) -> Result<i32> {
    let (cfg, _) = vbank_config::load(config).map_err(|e| anyhow::anyhow!("{e}"))?;
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let v = match cmd {
        DecommissionCmd::Start { confirm, officer, key, out } => {
            rt.block_on(start(&cfg, &confirm, &officer, &key, &out))?
        }
        DecommissionCmd::Finish { out, officer, key } => rt.block_on(finish(&cfg, config, &out, &officer, &key))?,
    };
    if json_out {
        println!("{v}");
    } else {
        println!("{}", v["summary"].as_str().unwrap_or_default());
        if let Some(next) = v["next"].as_str() {
            println!("next: {next}");
        }
    }
    Ok(0)
}

/// Which services answer on their admin listeners.
async fn running(cfg: &Config) -> Result<Vec<&'static str>> {
    let tls = vbank_tls::internal_client_config(&cfg.tls, Service::Cli).context("the operator certificate")?;
    let mut up = Vec::new();
    for (name, svc, addr) in [
        ("gateway", Service::Gateway, cfg.gateway.admin_listen),
        ("keyd", Service::Keyd, cfg.keyd.admin_listen),
        ("recorder", Service::Recorder, cfg.recorder.admin_listen),
        ("kyc", Service::Kyc, cfg.kyc.admin_listen),
    ] {
        let dns = vbank_tls::service_dns_name(svc);
        if client::call(tls.clone(), addr, &dns, Method::GET, "/healthz", None, Duration::from_secs(2)).await.is_ok() {
            up.push(name);
        }
    }
    Ok(up)
}

async fn start(cfg: &Config, confirm: &str, officer: &str, key: &Path, out: &Path) -> Result<Value> {
    if confirm != cfg.node.name {
        bail!("--confirm {confirm:?} is not this node ({:?}): nothing was done", cfg.node.name);
    }
    let up = running(cfg).await?;
    if up != ["keyd"] {
        bail!(
            "step 1 needs keyd running and every other service stopped; running now: {} (hint: systemctl stop \
             vbank-gateway vbank-recorder vbank-kyc; systemctl start vbank-keyd)",
            if up.is_empty() { "none".to_string() } else { up.join(", ") }
        );
    }
    let recordings = list_recordings(&cfg.recorder.dir);
    let held: Vec<&str> = recordings
        .iter()
        .filter(|r| cfg.recorder.dir.join(&r.id).join(LEGAL_HOLD).exists())
        .map(|r| r.id.as_str())
        .collect();
    if !held.is_empty() {
        bail!(
            "{} recording(s) under legal hold: {} (hint: export each to the bank's legal archive with `vbank recordings \
             export`, then release its hold with `vbank recordings hold --release`): nothing was done",
            held.len(),
            held.join(", ")
        );
    }
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;

    // The request first: keyd checks the officer's signature before anything is erased, and nothing is destroyed
    // until a second officer approves.
    let k = Keyd::new(cfg, false)?;
    let request = file_request(&k, "decommission", &cfg.node.name, officer, key).await?;
    let id = request["id"].as_str().context("keyd returned no request id")?.to_string();

    let mut erased = Vec::new();
    for r in &recordings {
        let dir = cfg.recorder.dir.join(&r.id);
        std::fs::remove_dir_all(&dir).with_context(|| format!("erasing {}", dir.display()))?;
        if dir.exists() {
            bail!("{} is still there after erasure", dir.display());
        }
        let detail = format!("manifest_sha256={}", r.manifest_sha256.as_deref().unwrap_or("none (open)"));
        let entry =
            json!({"action": "operator.recording.erase", "target": r.id, "detail": detail, "on_behalf": officer});
        k.call(Method::POST, "/v1/audit/append", Some(entry)).await?;
        erased.push(json!({"id": r.id, "sealed": r.sealed, "bytes": r.bytes, "manifest_sha256": r.manifest_sha256}));
    }
    k.call(Method::POST, "/v1/admin/audit/seal", None).await?;
    let v = k.call(Method::GET, "/v1/admin/audit/export", None).await?;
    let audit = v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string());
    std::fs::write(out.join("audit-final.jsonl"), &audit)?;
    let record = json!({
        "node": cfg.node.name,
        "started": crate::unix_now(),
        "recordings_erased": erased,
        "audit_final": {"file": "audit-final.jsonl", "entries": audit.lines().count(), "sha256": sha256_hex(audit.as_bytes())},
        "request": id,
        "requested_by": officer,
    });
    std::fs::write(out.join("decommission-start.json"), serde_json::to_vec_pretty(&record)?)?;
    log::warn!(request = id.as_str(); "decommissioning started: recordings erased, key destruction requested");
    Ok(json!({
        "summary": format!("{} recordings erased; audit log sealed and exported ({} entries); request {id} filed to destroy every key", erased.len(), audit.lines().count()),
        "request": id,
        "next": format!("a second officer approves: vbank hsm approvals approve {id} --officer NAME --key KEY; then stop keyd and run vbank decommission finish --out {}", out.display()),
    }))
}

/// A secret reference's file, where this host keeps it: as the service sees it, or, outside a unit, where the
/// Ansible role puts credentials.
fn secret_path(r: &SecretRef) -> Option<PathBuf> {
    r.path().ok().or_else(|| match r {
        SecretRef::Credential(name) => Some(Path::new("/etc/vbank/credentials").join(name)),
        SecretRef::File(p) => Some(p.clone()),
    })
}

async fn finish(cfg: &Config, config: &Path, out: &Path, officer: &str, key: &Path) -> Result<Value> {
    let started: Value = serde_json::from_slice(
        &std::fs::read(out.join("decommission-start.json"))
            .with_context(|| format!("{} has no record of step 1", out.display()))?,
    )?;
    let up = running(cfg).await?;
    if !up.is_empty() {
        bail!("step 2 needs every service stopped; running now: {} (hint: systemctl stop vbank.target)", up.join(", "));
    }
    let StoreConfig::Redb { dir } = &cfg.store else {
        bail!(
            "this node keeps its state in the cluster's PostgreSQL: decommission the cluster's database with the cluster"
        );
    };
    let keyd_file = dir.join("keyd.redb");
    let p = keyd_file.clone();
    let store = tokio::task::spawn_blocking(move || vbank_store::RedbStore::open(&p)).await??;
    let id = started["request"].as_str().context("step 1's record has no request")?;
    let request: Value = serde_json::from_slice(
        &store.get(Table::Approvals, id).await?.with_context(|| format!("keyd has no request {id}"))?.value,
    )?;
    let officers: std::collections::BTreeSet<&str> =
        request["approvals"].as_array().into_iter().flatten().filter_map(|a| a["officer"].as_str()).collect();
    if request["state"] != "executed" || officers.len() < 2 {
        bail!(
            "request {id} is {} with {} approval(s): a second officer must approve it first (vbank hsm approvals \
             approve {id}, with keyd running)",
            request["state"].as_str().unwrap_or("?"),
            officers.len()
        );
    }
    let keys = store.list(Table::Keys, "vbank/", 10_000).await?;
    let mut labels = Vec::new();
    for (label, v) in &keys {
        let rec: Value = serde_json::from_slice(&v.value)?;
        if rec["state"] != "destroyed" {
            bail!("{label} is {} in keyd's registry, not destroyed: nothing was wiped", rec["state"]);
        }
        labels.push(label.clone());
    }
    drop(store);

    let mut targets: Vec<PathBuf> = Vec::new();
    for e in std::fs::read_dir(dir)?.flatten() {
        targets.push(e.path());
    }
    targets.push(cfg.backup.staging_dir.clone());
    for r in [cfg.hsm.pin.as_ref(), cfg.backup.password.as_ref(), cfg.kyc.token_key.as_ref()].into_iter().flatten() {
        targets.extend(secret_path(r));
    }
    for v in [&cfg.kyc.tencent, &cfg.kyc.alibaba, &cfg.kyc.nciic, &cfg.kyc.baidu] {
        targets.extend([v.key_id.as_ref(), v.secret.as_ref()].into_iter().flatten().filter_map(secret_path));
    }
    targets.push(cfg.tls.public.key.clone());
    targets.extend(cfg.tls.services.iter().map(|(_, p)| p.key.clone()));
    if cfg.tls.sm.enabled {
        targets.push(cfg.tls.sm.public.key.clone());
        targets.extend(cfg.tls.sm.services.iter().map(|(_, p)| p.key.clone()));
    }
    targets.sort();
    targets.dedup();
    let mut wiped = Vec::new();
    for t in targets.iter().filter(|t| t.exists()) {
        if t.is_dir() { std::fs::remove_dir_all(t) } else { std::fs::remove_file(t) }
            .with_context(|| format!("wiping {}", t.display()))?;
        if t.exists() {
            bail!("{} is still there after wiping", t.display());
        }
        wiped.push(t.display().to_string());
    }

    let certificate = json!({
        "format": "vbank-decommission/1",
        "node": cfg.node.name,
        "config": config,
        "started": started["started"],
        "finished": crate::unix_now(),
        "recordings_erased": started["recordings_erased"],
        "legal_holds": [],
        "audit_final": started["audit_final"],
        "keys_destroyed": labels,
        "dual_control": {"request": request["id"], "action": request["action"], "target": request["target"],
                          "approvals": request["approvals"], "result": request["result"]},
        "wiped": wiped,
        "left": [
            {"what": "the configuration and the certificates (public)", "why": "no secret in them; remove with the host"},
            {"what": "backups in the restic repository", "why": "the bank's backup retention governs them; their stores hold only keys wrapped under destroyed KEKs"},
        ],
        "signed_by": officer,
    });
    let bytes = serde_json::to_vec_pretty(&certificate)?;
    let path = out.join("decommission-certificate.json");
    std::fs::write(&path, &bytes)?;
    std::fs::write(out.join("decommission-certificate.json.sig"), read_key(key)?.sign_der(CERT_ID, &bytes)?)?;
    Ok(json!({
        "summary": format!("decommissioned {}: {} keys destroyed, {} recordings erased, {} paths wiped; certificate {}",
                           cfg.node.name, labels.len(), started["recordings_erased"].as_array().map_or(0, Vec::len), wiped.len(), path.display()),
        "certificate": path,
    }))
}
