//! 国密 TLS 1.3 on a running `vbank up`: the public port serves browsers (standard TLS) and RFC 8998 clients alike —
//! our own SM client and an independent one (Tongsuo, strict mode) — and the HSM console reaches keyd over SM mTLS.

mod common;

use std::path::PathBuf;
use std::process::{Command, Stdio};

use common::{VBANK, free_ports, get};
use vbank_service::client::StatusCode;

fn tongsuo_python() -> PathBuf {
    std::env::var_os("VBANK_TONGSUO_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/vbank/venv/bin/python"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_port_serves_standard_and_sm_clients() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let (public, base) = free_ports();
    let (mut child, _) = common::spawn_up(&data, public, base, Stdio::null());
    let (cfg, _) = vbank_config::load(&data.join("vbank.toml")).unwrap();
    assert!(cfg.tls.sm.enabled, "vbank up turns 国密 TLS on");
    let addr = format!("127.0.0.1:{public}").parse().unwrap();

    let standard = vbank_tls::anonymous_client_config(&cfg.tls).unwrap();
    let (s, body) = get(&standard, addr, "localhost", "/api/status").await;
    assert_eq!(s, StatusCode::OK, "{body}");

    // This client offers only TLS_SM4_GCM_SM3, curveSM2 and sm2sig_sm3, and trusts only the SM2 CA.
    let sm = vbank_tls::anonymous_client_config_sm(&cfg.tls).unwrap();
    let (s, body) = get(&sm, addr, "localhost", "/api/status").await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert!(body.contains("\"ready\":true"));

    // An independent implementation in strict RFC 8998 mode, verifying our SM2 chain.
    // The checkout's path at run time: a shared target directory may hold a binary built from another checkout.
    let dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo test sets CARGO_MANIFEST_DIR");
    let peer = format!("{dir}/../../hsm/gmtls/tests/tongsuo_peer.py");
    let request = "GET /api/status HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
    let out = Command::new(tongsuo_python())
        .args([peer.as_str(), "client", &public.to_string()])
        .arg(&cfg.tls.sm.internal_ca)
        .arg(request)
        .output()
        .expect("the tongsuopy venv (tests/setup.sh)");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {out:?}"));
    assert_eq!(
        (v["ok"].as_bool(), v["cipher"].as_str(), v["verify"].as_i64()),
        (Some(true), Some("TLS_SM4_GCM_SM3"), Some(0)),
        "{v}"
    );
    assert!(v["echo"].as_str().unwrap().starts_with("HTTP/1.1 200"), "{v}");

    // The HSM console over SM mTLS (SM2 client certificate) to keyd.
    let out = Command::new(VBANK)
        .args(["hsm", "status", "--tls", "sm", "--json", "--config"])
        .arg(data.join("vbank.toml"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let st: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(st["token"], "vbank-dev");

    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGTERM).unwrap();
    assert!(child.wait().unwrap().success());
}
