//! `vbank bench kyc`: on a throw-away development node (its KYC service and the vendor simulator), in rounds:
//! - 联网核查 through the KYC service (mTLS as the gateway: local validation, TC3 signing, the HTTPS call to the
//!   simulator, the decision, keyd's seal of the attestation) against the same request, signed, sent straight to the
//!   simulator (SM4-GCM field encryption as the node's configuration asks, on both paths). Both paths keep their
//!   connection alive between requests, as the gateway and the service do, and both are paced under the vendor's
//!   QPS limit. p50 and p99 of each, and the proxy's overhead (the difference).
//! - The engines on this machine: OCR per synthetic card, face detection and face encoding per picture (medians).

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, Result, bail};
use serde_json::{Value, json};
use vbank_config::Service;
use vbank_kyc::vendor::IdentityProtocol as _;
use vbank_kyc::vendor::tencent::Tencent;
use vbank_service::client::{ClientConfig, Connection, Method};

use super::keyd::ceremony;
use super::median;
use super::node::start_node;

/// Requests are paced under the vendor's documented QPS limit (100 a second for IdCardVerification), which the
/// simulator enforces as the vendor does.
const PACE: Duration = Duration::from_micros(12_500);

/// A percentile of a sample, in milliseconds.
fn percentile(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        return f64::NAN;
    }
    v[((v.len() - 1) as f64 * p).round() as usize]
}

/// The vendor simulator's TLS trust and address, and the development account, as the node's configuration names them.
fn simulator(
    cfg: &vbank_config::Config,
    credentials: &std::path::Path,
) -> Result<(Arc<ClientConfig>, std::net::SocketAddr, Tencent)> {
    let t = &cfg.kyc.tencent;
    let addr = t.connect.context("the node's [kyc.tencent] has no connect address")?;
    let mut roots = rustls::RootCertStore::empty();
    for c in vbank_tls::load_certs(&t.ca)? {
        roots.add(c)?;
    }
    let tls = ClientConfig::builder_with_provider(vbank_tls::provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    // The node's credentials directory, as `vbank up` hands it to its children.
    let read = |r: &Option<vbank_config::SecretRef>| -> Result<String> {
        let path = match r.as_ref().context("no secret reference")? {
            vbank_config::SecretRef::Credential(name) => credentials.join(name),
            vbank_config::SecretRef::File(p) => p.clone(),
        };
        Ok(std::fs::read_to_string(&path).with_context(|| path.display().to_string())?.trim().to_string())
    };
    let encrypt_to = match &t.encrypt_to {
        Some(p) => Some(vbank_crypto::sm2sig::Sm2PublicKey::from_pem(&std::fs::read_to_string(p)?)?),
        None => None,
    };
    let key = vbank_crypto::SecretBytes::new(read(&t.secret)?.into_bytes());
    Ok((Arc::new(tls), addr, Tencent::new(&t.host, &read(&t.key_id)?, key, encrypt_to)))
}

/// A synthetic number the simulator does not know (result -5: no record; unbilled, not retried).
fn unknown_number() -> String {
    let first17 = "11010119900307777";
    format!("{first17}{}", vbank_kyc::id::check_char(first17.as_bytes()))
}

/// A check through the KYC service: its path, body and the verdict it must give.
struct Check {
    path: &'static str,
    body: String,
    verdict: &'static str,
}

fn identity_check() -> Check {
    let body = json!({"call": "call-bench", "name": "测试丙", "id_number": unknown_number()}).to_string();
    Check { path: "/v1/identity", body, verdict: "no-record" }
}

/// A check with no vendor (the credit code, on the appliance): the proxy's own cost, its hop and keyd's audited seal.
fn local_check() -> Check {
    let body = json!({"call": "call-bench", "code": "91440300708461136T"}).to_string();
    Check { path: "/v1/credit-code", body, verdict: "valid" }
}

async fn through_kyc(cfg: &vbank_config::Config, n: usize, check: &Check) -> Result<Vec<f64>> {
    let tls = vbank_tls::service_client_config(&cfg.tls, Service::Gateway)?;
    let name = vbank_tls::service_dns_name(Service::Kyc);
    let body = check.body.clone();
    let mut ms = Vec::with_capacity(n);
    let mut pace = tokio::time::interval(PACE);
    let mut c = Connection::open(tls.clone(), cfg.kyc.listen, &name, Duration::from_secs(10)).await?;
    for _ in 0..n {
        pace.tick().await;
        let started = Instant::now();
        let (s, b) = c.request(Method::POST, check.path, Some(body.clone().into())).await?;
        ms.push(started.elapsed().as_secs_f64() * 1000.0);
        let v: Value = serde_json::from_slice(&b).unwrap_or_default();
        if !s.is_success() || v["verdict"] != check.verdict {
            bail!("the KYC service answered {s}: {v}");
        }
    }
    Ok(ms)
}

async fn direct(cfg: &vbank_config::Config, credentials: &std::path::Path, n: usize) -> Result<Vec<f64>> {
    let (tls, addr, tencent) = simulator(cfg, credentials)?;
    let host = cfg.kyc.tencent.host.clone();
    let mut ms = Vec::with_capacity(n);
    let mut pace = tokio::time::interval(PACE);
    let mut c = Connection::open(tls.clone(), addr, &host, Duration::from_secs(10)).await?;
    for _ in 0..n {
        pace.tick().await;
        let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
        let started = Instant::now();
        let r = tencent.request("测试丙", &unknown_number(), now).map_err(|e| anyhow::anyhow!(e))?;
        let headers: Vec<(&str, &str)> = r.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let (s, _, b) = c.request_with(Method::POST, &r.path, &headers, Some(r.body.into())).await?;
        ms.push(started.elapsed().as_secs_f64() * 1000.0);
        if !s.is_success() || !String::from_utf8_lossy(&b).contains("\"-5\"") {
            bail!("the simulator answered {s}: {}", String::from_utf8_lossy(&b));
        }
    }
    Ok(ms)
}

/// Median milliseconds per picture of OCR (synthetic cards), face detection and face encoding.
fn engines(models: &std::path::Path, face: &std::path::Path, rounds: usize) -> Result<(f64, f64, f64)> {
    let ocr = vbank_kyc_ocr::Ocr::load(models).map_err(|e| anyhow::anyhow!("{e}"))?;
    let comparer = vbank_kyc_service::compare::Comparer::load(models).map_err(|e| anyhow::anyhow!("{e}"))?;
    let dir = tempfile::tempdir()?;
    let mut draw = vbank_kyc_ocr::synthetic::Draw(0x0b3c_4d5e);
    let (mut ocr_ms, mut det_ms, mut enc_ms) = (vec![], vec![], vec![]);
    let portrait = image::open(face).with_context(|| format!("{} (pass --face)", face.display()))?.to_rgb8();
    for n in 0..rounds {
        let p = vbank_kyc_ocr::synthetic::person(&mut draw);
        let (clean, _) = vbank_kyc_ocr::synthetic::draw_card(dir.path(), n, &p).map_err(|e| anyhow::anyhow!(e))?;
        let card = image::open(&clean)?.to_rgb8();
        let t = Instant::now();
        ocr.read(&card)?;
        ocr_ms.push(t.elapsed().as_secs_f64() * 1000.0);
        let t = Instant::now();
        let found = vbank_kyc_service::compare::best_face(&portrait).context("no face in the --face picture")?;
        det_ms.push(t.elapsed().as_secs_f64() * 1000.0);
        let t = Instant::now();
        comparer.encode(&portrait, &found).context("no encoding")?;
        enc_ms.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    Ok((median(ocr_ms), median(det_ms), median(enc_ms)))
}

/// Run the whole benchmark and print the table (or JSON).
pub async fn run(requests: usize, rounds: usize, face: std::path::PathBuf, json_out: bool) -> Result<()> {
    let (node, cfg) = start_node(&[], None)?;
    let credentials = node.data_dir().join("credentials");
    ceremony(&cfg).await?;
    let _ = through_kyc(&cfg, 5, &identity_check()).await?; // warm: connections, keyd's seal key
    let (mut kyc_p50, mut kyc_p99, mut dir_p50, mut dir_p99) = (vec![], vec![], vec![], vec![]);
    let (mut local_p50, mut local_p99) = (vec![], vec![]);
    for _ in 0..rounds {
        let mut k = through_kyc(&cfg, requests, &identity_check()).await?;
        let mut d = direct(&cfg, &credentials, requests).await?;
        let mut l = through_kyc(&cfg, requests, &local_check()).await?;
        kyc_p50.push(percentile(&mut k, 0.5));
        kyc_p99.push(percentile(&mut k, 0.99));
        dir_p50.push(percentile(&mut d, 0.5));
        dir_p99.push(percentile(&mut d, 0.99));
        local_p50.push(percentile(&mut l, 0.5));
        local_p99.push(percentile(&mut l, 0.99));
    }
    let models = cfg.kyc.models.clone();
    drop(node);
    let (ocr_ms, det_ms, enc_ms) =
        tokio::task::spawn_blocking(move || engines(&models, &face, rounds.max(5))).await??;
    let (k50, k99, d50, d99) = (median(kyc_p50), median(kyc_p99), median(dir_p50), median(dir_p99));
    let (l50, l99) = (median(local_p50), median(local_p99));
    let rows = json!({
        "identity_ms": {"through_kyc": {"p50": k50, "p99": k99}, "direct_to_simulator": {"p50": d50, "p99": d99},
                        "overhead_p50": k50 - d50, "overhead_p99": k99 - d99,
                        "local_check_sealed": {"p50": l50, "p99": l99}},
        "engine_ms_per_picture": {"ocr_card": ocr_ms, "face_detect": det_ms, "face_encode": enc_ms},
        "requests_per_round": requests, "rounds": rounds,
    });
    if json_out {
        println!("{rows}");
        return Ok(());
    }
    println!("vbank bench kyc — medians of {rounds} rounds of {requests} identity checks; same machine, same run\n");
    println!("{:<44} {:>9} {:>9}", "identity check (kept-alive connections)", "p50 ms", "p99 ms");
    println!("{:<44} {k50:>9.2} {k99:>9.2}", "through the KYC service (incl. keyd seal)");
    println!("{:<44} {d50:>9.2} {d99:>9.2}", "signed request straight to the simulator");
    println!("{:<44} {:>9.2} {:>9.2}", "proxy overhead", k50 - d50, k99 - d99);
    println!("{:<44} {l50:>9.2} {l99:>9.2}", "of which: a local check, sealed (no vendor)");
    println!("\n{:<44} {:>9}", "engines on this machine", "ms/pic");
    println!("{:<44} {ocr_ms:>9.0}", "OCR, one synthetic ID card (856×540)");
    println!("{:<44} {det_ms:>9.0}", "face detection (rustface)");
    println!("{:<44} {enc_ms:>9.0}", "face encoding (dlib ResNet)");
    Ok(())
}
