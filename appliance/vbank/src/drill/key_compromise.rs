//! Drill `key-compromise`: the recording KEK in use is suspected known outside the HSM. The security officers freeze
//! the audit log, rotate the KEK (dual control), rewrap every data key under the new version inside the HSM, and
//! destroy the old version (dual control). Objectives: every data key under the new version and still opening to
//! the same key, every old wrapped key dead, the old version gone from the token (keyd's view and OpenSC's), two
//! distinct officers on the destruction, every step in the audit log.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use serde_json::{Value, json};
use vbank_config::{Config, Service};
use vbank_hsm::Envelope;
use vbank_service::client::{self, Method};
use vbank_store::Snapshot;

use super::report::{Recorder, Report};
use super::scratch::Scratch;

/// Data keys issued before the incident (one per recording).
const DEKS: usize = 24;
/// From "compromise suspected" to the old version destroyed.
const RESPONSE_GOAL: Duration = Duration::from_secs(600);

struct Dek {
    id: String,
    key: String,
    envelope: String,
    context: String,
}

/// Run it in `work`.
pub fn run(work: &Path, signer: &str) -> Result<Report> {
    let mut r = Recorder::new(
        "key-compromise",
        "A scratch appliance whose recording KEK (vbank/recording/v1) wraps the data keys of 24 recordings is \
         suspected compromised. Officers freeze the audit log, rotate the KEK under dual control, rewrap every data \
         key inside the HSM, and destroy v1 under dual control.",
        signer,
    );
    let data = work.join("node");
    let mut node = Scratch::start(&data, Duration::from_secs(240))?;
    let officers = node.ceremony(work, 3)?;
    let officer = |i: usize| -> (&str, String) { (&officers[i].0, officers[i].1.display().to_string()) };
    r.step("scratch appliance ready; key ceremony with three officers (two approvals required)");
    let (cfg, _) = vbank_config::load(&node.config).map_err(|e| anyhow::anyhow!("{e}"))?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;

    let mut deks = Vec::new();
    for i in 0..DEKS {
        let context = format!("drill-rec-{i:02}");
        let v = rt.block_on(keyd(
            &cfg,
            Service::Recorder,
            "/v1/dek/create",
            json!({"purpose": "recording", "context": context}),
        ))?;
        let field = |k: &str| v[k].as_str().map(str::to_string).with_context(|| format!("dek/create: no {k}: {v}"));
        deks.push(Dek { id: field("id")?, key: field("key")?, envelope: field("envelope")?, context });
    }
    r.step(format!("{DEKS} recording data keys issued as the recorder would, wrapped under vbank/recording/v1"));

    let started = Instant::now();
    r.step("incident: vbank/recording/v1 suspected compromised; response starts");
    let frozen = work.join("audit-at-detection.jsonl");
    node.run(&["hsm", "audit", "export", "--out", &frozen.display().to_string()], None)?;
    r.step(format!("audit log frozen: {} entries exported", std::fs::read_to_string(&frozen)?.lines().count()));

    let (a, a_key) = officer(0);
    let (b, b_key) = officer(1);
    let (c, c_key) = officer(2);
    let req = json_of(&node, &["hsm", "keys", "rotate", "--purpose", "recording", "--officer", a, "--key", &a_key])?;
    let done = approve(&node, &req, b, &b_key)?;
    r.step(format!("rotation requested by {a}, approved by {b}: {}", done["result"].as_str().unwrap_or("?")));
    let moved = json_of(&node, &["hsm", "rewrap", "--purpose", "recording"])?;
    r.step(format!("rewrap inside the HSM: {} data keys moved", moved["moved"]));
    let req = json_of(&node, &["hsm", "keys", "destroy", "vbank/recording/v1", "--officer", c, "--key", &c_key])?;
    let done = approve(&node, &req, b, &b_key)?;
    let destroy_id = req["id"].as_str().unwrap_or_default().to_string();
    r.step(format!("destruction requested by {c}, approved by {b}: {}", done["result"].as_str().unwrap_or("?")));
    let response = started.elapsed();

    // The store's own record: every recording data key's envelope names its KEK.
    let export = rt.block_on(client::call(
        vbank_tls::internal_client_config(&cfg.tls, Service::Cli)?,
        cfg.keyd.admin_listen,
        &vbank_tls::service_dns_name(Service::Keyd),
        Method::GET,
        vbank_service::backup::EXPORT_PATH,
        None,
        Duration::from_secs(30),
    ))?;
    let snap = Snapshot::decode(&export.1)?;
    let (mut under_new, mut under_old) = (0, 0);
    for e in snap.kv.iter().filter(|e| e.table == "keys" && e.key.starts_with("dek/")) {
        let rec: Value = serde_json::from_slice(&e.value)?;
        let env = Envelope::decode(&vbank_crypto::from_hex(rec["envelope"].as_str().unwrap_or_default())?)?;
        match (env.kek.purpose.name(), env.kek.version) {
            ("recording", 2) => under_new += 1,
            ("recording", _) => under_old += 1,
            _ => {}
        }
    }
    r.objective(
        "data keys rewrapped under the new KEK version",
        &format!("{DEKS} of {DEKS} under vbank/recording/v2, none under v1"),
        format!("{under_new} under v2, {under_old} under an older version"),
        under_new as f64,
        "data keys",
        under_new == DEKS && under_old == 0,
    );

    let (mut same, mut dead) = (0, 0);
    for d in &deks {
        let by_id = json!({"purpose": "recording", "id": d.id, "context": d.context});
        if rt
            .block_on(keyd(&cfg, Service::Recorder, "/v1/dek/open", by_id))
            .ok()
            .and_then(|v| v["key"].as_str().map(str::to_string))
            .as_deref()
            == Some(d.key.as_str())
        {
            same += 1;
        }
        let old = json!({"purpose": "recording", "envelope": d.envelope, "context": d.context});
        if rt.block_on(keyd(&cfg, Service::Recorder, "/v1/dek/open", old)).is_err() {
            dead += 1;
        }
    }
    r.objective(
        "recordings still open after the rewrap",
        &format!("{DEKS} of {DEKS} data keys open to the same key"),
        format!("{same} of {DEKS}"),
        same as f64,
        "data keys",
        same == DEKS,
    );
    r.objective(
        "old wrapped keys dead",
        &format!("{DEKS} of {DEKS} envelopes under v1 refused"),
        format!("{dead} of {DEKS} refused"),
        dead as f64,
        "data keys",
        dead == DEKS,
    );

    let listed = json_of(&node, &["hsm", "keys", "list"])?;
    let on_token = |version: u64| {
        listed["hsm_objects"].as_array().into_iter().flatten().any(|o| {
            o["label"]["purpose"] == "recording" && o["label"]["version"] == version && o["class"] == "secret-key"
        })
    };
    let opensc = pkcs11_tool_objects(&cfg, &data)?;
    let v1_opensc = opensc.contains("label:      vbank/recording/v1");
    let v2_opensc = opensc.contains("label:      vbank/recording/v2");
    let gone = !on_token(1) && on_token(2) && !v1_opensc && v2_opensc;
    r.objective(
        "old KEK version destroyed in the HSM",
        "vbank/recording/v1 absent and v2 present, in keyd's view and pkcs11-tool's",
        format!(
            "keyd: v1 {}, v2 {}; pkcs11-tool: v1 {}, v2 {}",
            present(on_token(1)),
            present(on_token(2)),
            present(v1_opensc),
            present(v2_opensc)
        ),
        if gone { 1.0 } else { 0.0 },
        "bool",
        gone,
    );

    let approvals = json_of(&node, &["hsm", "approvals", "list"])?;
    let destroy = approvals["requests"].as_array().into_iter().flatten().find(|q| q["id"] == destroy_id.as_str());
    let by: BTreeSet<String> = destroy
        .map(|q| {
            q["approvals"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|a| a["officer"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let executed = destroy.is_some_and(|q| q["state"] == "executed");
    r.objective(
        "destruction under dual control",
        "executed with two distinct officers' signed approvals",
        format!(
            "{} by {}",
            if executed { "executed" } else { "NOT executed" },
            by.iter().cloned().collect::<Vec<_>>().join(" and ")
        ),
        by.len() as f64,
        "officers",
        executed && by.len() >= 2,
    );

    let after = work.join("audit-after.jsonl");
    node.run(&["hsm", "audit", "export", "--out", &after.display().to_string()], None)?;
    let log = std::fs::read_to_string(&after)?;
    let logged: Vec<&str> =
        ["key.rewrap", "key.destroy"].into_iter().filter(|a| log.contains(&format!("\"action\":\"{a}\""))).collect();
    let no_key_material = deks.iter().all(|d| !log.contains(&d.key));
    r.objective(
        "every step in the audit log, no key material",
        "rewrap and destruction logged; no data key in the log",
        format!(
            "logged: {}; key material in the log: {}",
            logged.join(", "),
            if no_key_material { "none" } else { "FOUND" }
        ),
        logged.len() as f64,
        "steps",
        logged.len() == 2 && no_key_material,
    );
    r.objective(
        "response time",
        &format!("≤ {} s from detection to the old version destroyed", RESPONSE_GOAL.as_secs()),
        format!("{:.1} s", response.as_secs_f64()),
        response.as_millis() as f64,
        "ms",
        response <= RESPONSE_GOAL,
    );
    node.stop();
    r.step("scratch appliance stopped");
    Ok(r.finish())
}

fn present(b: bool) -> &'static str {
    if b { "present" } else { "absent" }
}

fn json_of(node: &Scratch, args: &[&str]) -> Result<Value> {
    let out = node.run(&[&["--json"], args].concat(), None)?;
    serde_json::from_str(&out).with_context(|| format!("vbank {} printed {out:?}", args.join(" ")))
}

fn approve(node: &Scratch, req: &Value, officer: &str, key: &str) -> Result<Value> {
    let id = req["id"].as_str().with_context(|| format!("no request id in {req}"))?;
    let done = json_of(node, &["hsm", "approvals", "approve", id, "--officer", officer, "--key", key])?;
    if done["state"] != "executed" {
        bail!("request {id} not executed after the second approval: {done}");
    }
    Ok(done)
}

/// Call keyd's API as `who`; anything but success is an error.
async fn keyd(cfg: &Config, who: Service, path: &str, body: Value) -> Result<Value> {
    let (status, v) = super::scratch::keyd_api(cfg, who, path, body).await?;
    if !(200..300).contains(&status) {
        bail!("keyd {path}: {status}: {v}");
    }
    Ok(v)
}

/// OpenSC's view of the scratch token: an independent check of what keyd reports.
fn pkcs11_tool_objects(cfg: &Config, data: &Path) -> Result<String> {
    let pin = std::fs::read_to_string(data.join("credentials/hsm-pin"))?;
    let out = std::process::Command::new("pkcs11-tool")
        .arg("--module")
        .arg(&cfg.hsm.module)
        .args(["--token-label", &cfg.hsm.token_label, "--login", "--pin", pin.trim(), "--list-objects"])
        .env("SOFTHSM2_CONF", data.join("softhsm/softhsm2.conf"))
        .output()
        .context("running pkcs11-tool (Debian opensc)")?;
    if !out.status.success() {
        bail!("pkcs11-tool: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
