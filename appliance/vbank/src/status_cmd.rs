//! `vbank status`: every local service's readiness, from its admin listener's `/readyz` (TLS, the operator
//! certificate), for operators, the image's boot check and the install's last step.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde_json::{Value, json};
use vbank_config::Service;
use vbank_service::client::{self, Method};

/// One service's answer.
struct Probe {
    service: &'static str,
    addr: SocketAddr,
    ready: bool,
    /// The `/readyz` report, or why it could not be read.
    detail: Value,
}

/// Ask every service; with `wait`, ask again until all are ready or the time is up. Exit code 0 when all are ready.
pub fn run(config: &Path, wait: Duration, json_out: bool) -> Result<i32> {
    let (cfg, _) = vbank_config::load(config).map_err(|e| anyhow::anyhow!("{e}"))?;
    let tls = vbank_tls::internal_client_config(&cfg.tls, Service::Cli)
        .context("loading the operator certificate (tls.cli)")?;
    let services = [
        ("gateway", Service::Gateway, cfg.gateway.admin_listen),
        ("keyd", Service::Keyd, cfg.keyd.admin_listen),
        ("recorder", Service::Recorder, cfg.recorder.admin_listen),
        ("kyc", Service::Kyc, cfg.kyc.admin_listen),
    ];
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let deadline = Instant::now() + wait;
    let probes = loop {
        let probes = rt.block_on(probe_all(&tls, &services));
        if probes.iter().all(|p| p.ready) || Instant::now() >= deadline {
            break probes;
        }
        std::thread::sleep(Duration::from_secs(1));
    };
    let all = probes.iter().all(|p| p.ready);
    if json_out {
        let list: Vec<Value> = probes
            .iter()
            .map(|p| json!({"service": p.service, "admin": p.addr.to_string(), "ready": p.ready, "detail": p.detail}))
            .collect();
        println!("{}", json!({"ready": all, "services": list}));
    } else {
        for p in &probes {
            println!(
                "{:<9} {:<21} {:<9} {}",
                p.service,
                p.addr,
                if p.ready { "ready" } else { "NOT READY" },
                summary(&p.detail)
            );
        }
    }
    Ok(if all { 0 } else { 1 })
}

async fn probe_all(tls: &Arc<rustls::ClientConfig>, services: &[(&'static str, Service, SocketAddr)]) -> Vec<Probe> {
    let mut out = Vec::new();
    for &(service, kind, addr) in services {
        let name = vbank_tls::service_dns_name(kind);
        let answer = client::call(tls.clone(), addr, &name, Method::GET, "/readyz", None, Duration::from_secs(3)).await;
        let (ready, detail) = match answer {
            Ok((status, body)) => {
                let v: Value =
                    serde_json::from_slice(&body).unwrap_or_else(|_| json!({"error": String::from_utf8_lossy(&body)}));
                (status.is_success() && v["ready"] == Value::Bool(true), v)
            }
            Err(e) => (false, json!({"error": format!("{e} (is vbank-{service}.service running?)")})),
        };
        out.push(Probe { service, addr, ready, detail });
    }
    out
}

/// The checks that are not ok, or the error, on one line.
fn summary(detail: &Value) -> String {
    if let Some(e) = detail["error"].as_str() {
        return e.to_string();
    }
    let Some(checks) = detail["checks"].as_object() else { return String::new() };
    let failing: Vec<String> = checks
        .iter()
        .filter(|(_, c)| c["state"] != "ok")
        .map(|(name, c)| match c["detail"].as_str() {
            Some(d) => format!("{name}: {d}"),
            None => format!("{name}: {}", c["state"].as_str().unwrap_or("?")),
        })
        .collect();
    if failing.is_empty() { checks.keys().cloned().collect::<Vec<_>>().join(", ") + " ok" } else { failing.join("; ") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_names_what_fails() {
        let ready = json!({"ready": true, "checks": {"hsm": {"state": "ok"}, "store": {"state": "ok"}}});
        assert_eq!(summary(&ready), "hsm, store ok");
        let failing = json!({"ready": false, "checks": {"hsm": {"state": "failing", "detail": "no token"}, "store": {"state": "pending"}}});
        assert_eq!(summary(&failing), "hsm: no token; store: pending");
        assert_eq!(summary(&json!({"error": "refused"})), "refused");
    }
}
