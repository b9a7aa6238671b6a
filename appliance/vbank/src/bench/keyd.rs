//! `vbank bench keyd`: a throw-away development node (SoftHSM2 token, keyd) is started, a key ceremony is held, and
//! then, in rounds, data keys are issued and opened through keyd's mTLS API and directly through PKCS#11 on the same
//! token. The ratio shows what keyd's policy checks, registry, audit entries (each an fsync'd store write) and TLS
//! add to the HSM's own cost.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use serde_json::{Value, json};
use vbank_config::Service;
use vbank_crypto::aead::AeadAlg;
use vbank_crypto::sm2sig::Sm2PrivateKey;
use vbank_crypto::to_hex;
use vbank_hsm::{KeyBackend, KeyLabel, Pkcs11Backend, Profile};
use vbank_service::client::{ClientConfig, Connection, Method};

use super::node::start_node;
use super::{aead, median};

async fn connect(cfg: &vbank_config::Config, svc: Service) -> Result<Connection> {
    let tls: Arc<ClientConfig> = vbank_tls::service_client_config(&cfg.tls, svc)?;
    Ok(Connection::open(tls, cfg.keyd.listen, &vbank_tls::service_dns_name(Service::Keyd), Duration::from_secs(10))
        .await?)
}

async fn post(c: &mut Connection, path: &str, body: Value) -> Result<Value> {
    let (s, b) = c.request(Method::POST, path, Some(body.to_string().into())).await?;
    if !s.is_success() {
        bail!("{path}: {s} {}", String::from_utf8_lossy(&b));
    }
    Ok(serde_json::from_slice(&b)?)
}

/// Hold a key ceremony on a throw-away node with two generated officers.
pub(crate) async fn ceremony(cfg: &vbank_config::Config) -> Result<()> {
    let officers: Vec<(String, Sm2PrivateKey)> = ["bench-a", "bench-b"]
        .iter()
        .map(|n| Ok((n.to_string(), Sm2PrivateKey::generate()?)))
        .collect::<Result<_>>()?;
    let names: Vec<String> = officers.iter().map(|(n, _)| n.clone()).collect();
    let msg = vbank_keyd::approvals::ceremony_message(&cfg.hsm.token_label, &names);
    let list: Vec<Value> =
        officers.iter().map(|(n, k)| json!({"name": n, "public_pem": k.public_key().to_pem()})).collect();
    let witnesses: Vec<Value> = officers
        .iter()
        .map(|(n, k)| Ok(json!({"officer": n, "signature": to_hex(&k.sign_der(n, &msg)?)})))
        .collect::<Result<_>>()?;
    let mut c = connect(cfg, Service::Cli).await?;
    post(&mut c, "/v1/admin/ceremony", json!({"officers": list, "witnesses": witnesses})).await?;
    Ok(())
}

/// Issue then open data keys through keyd on `conns` parallel connections for `seconds`; returns (issued/s, opened/s).
async fn through_keyd(cfg: &vbank_config::Config, conns: usize, seconds: f64) -> Result<(f64, f64)> {
    let mut tasks = Vec::new();
    for _ in 0..conns {
        let mut c = connect(cfg, Service::Recorder).await?;
        tasks.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            let start = Instant::now();
            while start.elapsed().as_secs_f64() < seconds {
                let v = post(&mut c, "/v1/dek/create", json!({"purpose": "recording", "context": "bench"})).await?;
                ids.push(v["id"].as_str().unwrap_or_default().to_string());
            }
            let issue = ids.len() as f64 / start.elapsed().as_secs_f64();
            let start = Instant::now();
            let mut opened = 0usize;
            for id in ids.iter().cycle() {
                if start.elapsed().as_secs_f64() >= seconds {
                    break;
                }
                post(&mut c, "/v1/dek/open", json!({"purpose": "recording", "id": id, "context": "bench"})).await?;
                opened += 1;
            }
            Ok::<_, anyhow::Error>((issue, opened as f64 / start.elapsed().as_secs_f64()))
        }));
    }
    let (mut issue, mut open) = (0.0, 0.0);
    for t in tasks {
        let (i, o) = t.await??;
        issue += i;
        open += o;
    }
    Ok((issue, open))
}

/// The raw PKCS#11 half, in this (child) process: random + wrap, then unwrap + read, on one session.
pub fn raw(module: &Path, token: &str, pin_file: &Path, kek: &str, seconds: f64, rounds: usize) -> Result<()> {
    let pin = std::fs::read_to_string(pin_file).context("reading the PIN file")?;
    let kek = KeyLabel::parse(kek).context("KEK label")?;
    let hsm =
        Pkcs11Backend::new(vbank_hsm::load_module(module)?, module, token, pin.trim(), Profile::builtin("softhsm")?);
    let (mut issue, mut open) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        let mut wrapped = Vec::new();
        let start = Instant::now();
        while start.elapsed().as_secs_f64() < seconds {
            let dek = hsm.random(32)?;
            let mut payload = dek.expose().to_vec();
            payload.extend_from_slice(&[0u8; 32]);
            wrapped.push(hsm.wrap(kek, &payload)?);
        }
        issue.push(wrapped.len() as f64 / start.elapsed().as_secs_f64());
        let start = Instant::now();
        let mut n = 0usize;
        for w in wrapped.iter().cycle() {
            if start.elapsed().as_secs_f64() >= seconds {
                break;
            }
            hsm.unwrap(kek, w)?;
            n += 1;
        }
        open.push(n as f64 / start.elapsed().as_secs_f64());
    }
    println!("{}", json!({"issue": median(issue), "open": median(open)}));
    Ok(())
}

fn raw_in_child(cfg: &vbank_config::Config, data: &Path, seconds: f64, rounds: usize) -> Result<(f64, f64)> {
    let out = Command::new(std::env::current_exe()?)
        .args(["bench", "keyd-raw", "--module"])
        .arg(&cfg.hsm.module)
        .args(["--token", &cfg.hsm.token_label, "--pin-file"])
        .arg(data.join("credentials/hsm-pin"))
        .args(["--kek", "vbank/recording/v1", "--seconds", &seconds.to_string(), "--rounds", &rounds.to_string()])
        .env("SOFTHSM2_CONF", data.join("softhsm/softhsm2.conf"))
        .output()?;
    if !out.status.success() {
        bail!("raw PKCS#11 run failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let v: Value = serde_json::from_slice(&out.stdout)?;
    Ok((v["issue"].as_f64().unwrap_or(f64::NAN), v["open"].as_f64().unwrap_or(f64::NAN)))
}

/// Run the whole benchmark and print the table (or JSON).
pub async fn run(seconds: f64, rounds: usize, json_out: bool) -> Result<()> {
    let (node, cfg) = start_node(&[], None)?;
    let data = node.data_dir();
    ceremony(&cfg).await?;

    let (raw_issue, raw_open) = raw_in_child(&cfg, &data, seconds, rounds)?;
    let (mut k1_issue, mut k1_open, mut k4_issue, mut k4_open) = (vec![], vec![], vec![], vec![]);
    for _ in 0..rounds {
        let (i, o) = through_keyd(&cfg, 1, seconds).await?;
        k1_issue.push(i);
        k1_open.push(o);
        let (i, o) = through_keyd(&cfg, 4, seconds).await?;
        k4_issue.push(i);
        k4_open.push(o);
    }
    drop(node);

    let aead_rounds = rounds.min(3);
    let aes = aead::ours(AeadAlg::Aes256Gcm, 1.0, aead_rounds)?;
    let sm4 = aead::ours(AeadAlg::Sm4Gcm, 1.0, aead_rounds)?;
    let ossl_aes = aead::openssl("aes-256-gcm", aead_rounds)?;
    let ossl_sm4 = aead::openssl("sm4-cbc", aead_rounds)?;

    let m = |v: Vec<f64>| median(v);
    let rows = json!({
        "dek_issue_per_s": {"keyd_1_conn": m(k1_issue.clone()), "keyd_4_conns": m(k4_issue.clone()), "raw_pkcs11": raw_issue},
        "dek_open_per_s": {"keyd_1_conn": m(k1_open.clone()), "keyd_4_conns": m(k4_open.clone()), "raw_pkcs11": raw_open},
        "aead_mb_per_s": {"vbank_aes_256_gcm": aes, "openssl_aes_256_gcm": ossl_aes, "vbank_sm4_gcm": sm4, "openssl_sm4_cbc": ossl_sm4},
        "rounds": rounds, "seconds_per_round": seconds, "buffer_bytes": aead::BUF,
    });
    if json_out {
        println!("{rows}");
        return Ok(());
    }
    let r = |a: f64, b: f64| a / b;
    println!("vbank bench keyd — medians of {rounds} rounds of {seconds} s; SoftHSM2 token, same machine, same run\n");
    println!("{:<34} {:>12} {:>12} {:>9}", "data keys", "per second", "raw PKCS#11", "ratio");
    for (name, v, raw) in [
        ("issue via keyd, 1 connection", m(k1_issue.clone()), raw_issue),
        ("issue via keyd, 4 connections", m(k4_issue), raw_issue),
        ("open via keyd, 1 connection", m(k1_open.clone()), raw_open),
        ("open via keyd, 4 connections", m(k4_open), raw_open),
    ] {
        println!("{name:<34} {v:>12.0} {raw:>12.0} {:>8.2}×", r(v, raw));
    }
    println!(
        "\n{:<34} {:>12} {:>12} {:>9}",
        format!("AEAD, {} KiB buffers", aead::BUF / 1024),
        "MB/s",
        "openssl",
        "ratio"
    );
    println!("{:<34} {aes:>12.0} {ossl_aes:>12.0} {:>8.2}×", "AES-256-GCM (vs aes-256-gcm)", r(aes, ossl_aes));
    println!("{:<34} {sm4:>12.0} {ossl_sm4:>12.0} {:>8.2}×", "SM4-GCM (vs OpenSSL SM4-CBC*)", r(sm4, ossl_sm4));
    println!("\n* Debian's OpenSSL 3.0 has no SM4-GCM; SM4-CBC is its nearest SM4 mode.");
    Ok(())
}
