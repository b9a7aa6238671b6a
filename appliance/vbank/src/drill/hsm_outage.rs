//! Drill `hsm-outage`: the HSM disappears under a working node (SoftHSM2's token directory is taken away, as a
//! network HSM dropping off the network looks to PKCS#11), then comes back. Objectives: keyd notices within 10 s,
//! refuses key operations fast and clearly rather than hanging, no new call can start (no call token, no recording
//! key), it recovers by itself within 15 s of the HSM's return without a restart, and what was issued before still
//! opens.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use serde_json::{Value, json};
use vbank_config::{Config, Service};
use vbank_service::client::{self, Method};

use super::report::{Recorder, Report};
use super::scratch::Scratch;

const DETECT_GOAL: Duration = Duration::from_secs(10);
const REFUSE_GOAL: Duration = Duration::from_secs(3);
const RECOVER_GOAL: Duration = Duration::from_secs(15);
/// The outage lasts this long before the HSM comes back.
const OUTAGE: Duration = Duration::from_secs(8);

/// Run it in `work`.
pub fn run(work: &Path, signer: &str) -> Result<Report> {
    let mut r = Recorder::new(
        "hsm-outage",
        "A scratch appliance with its keys in a SoftHSM2 token loses the token (its directory is taken away) for 8 s, \
         then gets it back. Nobody restarts anything.",
        signer,
    );
    let data = work.join("node");
    let mut node = Scratch::start(&data, Duration::from_secs(240))?;
    node.ceremony(work, 2)?;
    let (cfg, _) = vbank_config::load(&node.config).map_err(|e| anyhow::anyhow!("{e}"))?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let mut before = Vec::new();
    for i in 0..8 {
        let context = format!("drill-rec-{i}");
        let (status, v) = rt.block_on(dek_create(&cfg, &context))?;
        if status != 200 {
            bail!("keyd did not issue a data key before the outage: {status} {v}");
        }
        let field = |k: &str| v[k].as_str().unwrap_or_default().to_string();
        before.push((field("id"), field("key"), context));
    }
    let keyd_pid = super::service_pid(&node.config, "keyd").context("cannot find the scratch keyd process")?;
    r.step(format!("scratch appliance ready, key ceremony held, 8 recording data keys issued (keyd pid {keyd_pid})"));

    let tokens = data.join("softhsm/tokens");
    let away = data.join("softhsm/tokens-away");
    std::fs::rename(&tokens, &away).context("taking the token away")?;
    let fault = Instant::now();
    r.step("fault: the HSM token is gone");

    let asked = Instant::now();
    let (status, answer) = rt.block_on(dek_create(&cfg, "drill-during-outage"))?;
    let refused_in = asked.elapsed();
    let clear = status == 503 && answer["error"] == "hsm_unavailable";
    r.objective(
        "key operations refused fast and clearly",
        &format!("503 hsm_unavailable within {} s", REFUSE_GOAL.as_secs()),
        format!("{status} {} in {:.2} s", answer["error"].as_str().unwrap_or("?"), refused_in.as_secs_f64()),
        refused_in.as_millis() as f64,
        "ms",
        clear && refused_in <= REFUSE_GOAL,
    );

    let detected = wait_for(&rt, &cfg, false, DETECT_GOAL * 3).map(|_| fault.elapsed());
    r.timed(
        "outage detected (keyd's hsm check failing, VbankHsmUnavailable's signal)",
        DETECT_GOAL,
        "after the token went",
        detected,
        "not detected",
    );

    let token = node.run(&["token", "--room", "drill-during-outage", "--role", "customer"], None);
    r.objective(
        "no new call starts while keys are unavailable",
        "no call token and no recording key issued",
        format!(
            "call token {}, recording key {}",
            if token.is_err() { "refused" } else { "ISSUED" },
            if clear { "refused" } else { "ISSUED" }
        ),
        if token.is_err() && clear { 1.0 } else { 0.0 },
        "bool",
        token.is_err() && clear,
    );

    std::thread::sleep(OUTAGE.saturating_sub(fault.elapsed()));
    std::fs::rename(&away, &tokens).context("bringing the token back")?;
    let back = Instant::now();
    r.step(format!("the HSM token is back after {:.1} s", fault.elapsed().as_secs_f64()));
    let recovered = loop {
        if let Ok((200, _)) = rt.block_on(dek_create(&cfg, "drill-after-outage"))
            && wait_for(&rt, &cfg, true, Duration::from_secs(1)).is_some()
        {
            break Some(back.elapsed());
        }
        if back.elapsed() > RECOVER_GOAL * 3 {
            break None;
        }
        std::thread::sleep(Duration::from_millis(250));
    };
    r.timed(
        "recovered by itself",
        RECOVER_GOAL,
        "after the HSM returns, keyd ready and issuing keys",
        recovered,
        "not recovered",
    );
    r.same_process("keyd", keyd_pid, super::service_pid(&node.config, "keyd"));
    let opened = before.iter().filter(|(id, key, context)| rt.block_on(dek_opens(&cfg, id, key, context))).count();
    r.objective(
        "keys issued before the outage still open",
        &format!("{} of {}", before.len(), before.len()),
        format!("{opened} of {}", before.len()),
        opened as f64,
        "data keys",
        opened == before.len(),
    );
    node.stop();
    r.step("scratch appliance stopped");
    Ok(r.finish())
}

/// A recording data key, asked for as the recorder asks.
async fn dek_create(cfg: &Config, context: &str) -> Result<(u16, Value)> {
    super::scratch::keyd_api(
        cfg,
        Service::Recorder,
        "/v1/dek/create",
        json!({"purpose": "recording", "context": context}),
    )
    .await
}

async fn dek_opens(cfg: &Config, id: &str, key: &str, context: &str) -> bool {
    let body = json!({"purpose": "recording", "id": id, "context": context});
    matches!(super::scratch::keyd_api(cfg, Service::Recorder, "/v1/dek/open", body).await, Ok((200, v)) if v["key"] == key)
}

/// Poll keyd's /readyz until its `hsm` check is ok (`ok`) or not ok (`!ok`); None when `within` passes first.
fn wait_for(rt: &tokio::runtime::Runtime, cfg: &Config, ok: bool, within: Duration) -> Option<()> {
    let tls = vbank_tls::internal_client_config(&cfg.tls, Service::Cli).ok()?;
    let name = vbank_tls::service_dns_name(Service::Keyd);
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        let asked = client::call(
            tls.clone(),
            cfg.keyd.admin_listen,
            &name,
            Method::GET,
            "/readyz",
            None,
            Duration::from_secs(2),
        );
        if let Ok((_, body)) = rt.block_on(asked) {
            let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            if (v["checks"]["hsm"]["state"] == "ok") == ok {
                return Some(());
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    None
}
