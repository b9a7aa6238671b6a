//! The Tencent adapter against the simulator over HTTPS: every result, every fault, retries and the breaker.

use std::time::Duration;

use serde_json::{Value, json};
use vbank_config::{SecretRef, TencentConfig};
use vbank_kyc::simulator::Simulator;
use vbank_kyc::vendor::{TENCENT_FACEID_HOST, Verdict};
use vbank_service::client::{ClientConfig, Connection, Method};

use crate::tencent::Tencent;

const SECRET_ID: &str = "AKIDsimulated0000000000000000000000";
const SECRET_KEY: &str = "simulated-secret-key-0000000000000";

/// A synthetic 18-digit number (region 110101) with a correct check character.
fn id(seq: u32) -> String {
    let first = format!("11010119900307{:03}", seq % 1000);
    format!("{first}{}", vbank_kyc::id::check_char(first.as_bytes()))
}

struct Vendor {
    dir: std::path::PathBuf,
    addr: std::net::SocketAddr,
    control: std::sync::Arc<ClientConfig>,
    stop: tokio::sync::watch::Sender<bool>,
}

impl Vendor {
    async fn start(name: &str) -> Vendor {
        let dir = std::env::temp_dir().join(format!("vbank-kyc-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let pki = vbank_tls::devca::ensure_simulator_pki(&dir, &[TENCENT_FACEID_HOST]).unwrap();
        let certs = vbank_tls::load_certs(&pki.cert).unwrap();
        let key = vbank_tls::load_key(&pki.key).unwrap();
        let tls = rustls::ServerConfig::builder_with_provider(vbank_tls::provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .unwrap();
        let listener = vbank_service::bind("127.0.0.1:0".parse().unwrap(), "test").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, rx) = tokio::sync::watch::channel(false);
        let app = crate::simulate::router(Simulator::new(TENCENT_FACEID_HOST, SECRET_ID, SECRET_KEY));
        tokio::spawn(vbank_service::serve_tls(listener, vbank_tls::ServerTls::standard(tls.into()), app, rx));
        std::fs::write(dir.join("id"), SECRET_ID).unwrap();
        std::fs::write(dir.join("key"), SECRET_KEY).unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(vbank_tls::load_certs(&pki.ca).unwrap().remove(0)).unwrap();
        let control = ClientConfig::builder_with_provider(vbank_tls::provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        Vendor { dir, addr, control: control.into(), stop }
    }

    fn config(&self, key_file: &str) -> TencentConfig {
        TencentConfig {
            host: TENCENT_FACEID_HOST.into(),
            connect: Some(self.addr),
            ca: self.dir.join("sim-ca.crt"),
            secret_id: Some(SecretRef::File(self.dir.join("id"))),
            secret_key: Some(SecretRef::File(self.dir.join(key_file))),
        }
    }

    fn adapter(&self, timeout: Duration) -> Tencent {
        Tencent::new(&self.config("key"), timeout).unwrap()
    }

    async fn control(&self, path: &str, body: Value) {
        let mut c = Connection::open(self.control.clone(), self.addr, TENCENT_FACEID_HOST, Duration::from_secs(5))
            .await
            .unwrap();
        let (status, _) = c.request(Method::POST, path, Some(body.to_string().into())).await.unwrap();
        assert!(status.is_success(), "{path}: {status}");
    }

    async fn faults(&self, faults: Value) {
        self.control("/_simulator/faults", faults).await;
    }
}

impl Drop for Vendor {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[tokio::test]
async fn every_result_of_the_authority_reaches_the_teller_as_documented() {
    let v = Vendor::start("results").await;
    v.control("/_simulator/people", json!([{"name": "测试甲", "id_number": id(1)}])).await;
    let t = v.adapter(Duration::from_secs(5));

    let d = t.verify("测试甲", &id(1)).await;
    assert_eq!(d.verdict, Verdict::Match);
    assert!(d.billed && d.request_id.as_deref().is_some_and(|r| r.starts_with("sim-")));
    assert_eq!(t.verify("测试乙", &id(1)).await.verdict, Verdict::Mismatch);
    assert_eq!(t.verify("测试甲", &id(2)).await.verdict, Verdict::NoRecord);
    assert!(matches!(t.verify("测试甲", "110101199003070000").await.verdict, Verdict::BadInput(_)));
    assert!(matches!(t.verify("测试1", &id(1)).await.verdict, Verdict::BadInput(_)));

    for (result, retried_to) in [("-4", Some(Verdict::Match)), ("-6", None), ("-7", None)] {
        v.faults(json!([{"result": result}])).await;
        let d = t.verify("测试甲", &id(1)).await;
        match retried_to {
            // -4 (the authority's database failed) is unbilled and transient: retried once, automatically.
            Some(after) => assert_eq!(d.verdict, after, "{result}"),
            None => assert!(matches!(d.verdict, Verdict::Unavailable(_)), "{result}: {d:?}"),
        }
    }
}

#[tokio::test]
async fn faults_are_retried_only_when_unbilled_and_transient() {
    let v = Vendor::start("faults").await;
    v.control("/_simulator/people", json!([{"name": "测试甲", "id_number": id(1)}])).await;
    let t = v.adapter(Duration::from_secs(2));

    // 5xx and RequestLimitExceeded: unbilled, retried once, and the second try answers.
    for fault in [json!({"status": 502}), json!({"status": 503}), json!({"error": "RequestLimitExceeded"})] {
        v.faults(json!([fault])).await;
        assert_eq!(t.verify("测试甲", &id(1)).await.verdict, Verdict::Match, "{fault}");
    }
    // Twice in a row: the retry is bounded, and the teller is told the check is unavailable.
    v.faults(json!([{"status": 504}, {"status": 504}])).await;
    let d = t.verify("测试甲", &id(1)).await;
    assert!(matches!(&d.verdict, Verdict::Unavailable(why) if why.contains("504")), "{d:?}");
    assert!(d.message().contains("联网核查服务暂不可用"));

    // A garbled 200 may have been billed: never retried (the retry would have taken the queued -1).
    v.faults(json!([{"garbled": true}, {"result": "-1"}])).await;
    let d = t.verify("测试甲", &id(1)).await;
    assert!(d.billed && matches!(d.verdict, Verdict::Unavailable(_)), "{d:?}");
    assert_eq!(t.verify("测试甲", &id(1)).await.verdict, Verdict::Mismatch);

    // A stall past the deadline: the vendor may answer (and bill) later, so no retry either.
    v.faults(json!([{"stall_ms": 4000}])).await;
    let started = std::time::Instant::now();
    let d = t.verify("测试甲", &id(1)).await;
    assert!(d.billed && !d.retryable && started.elapsed() < Duration::from_millis(3500), "{d:?}");
}

#[tokio::test]
async fn a_wrong_key_is_misconfigured_and_the_breaker_opens_on_a_failing_vendor() {
    let v = Vendor::start("auth").await;
    std::fs::write(v.dir.join("wrong"), "not-the-key").unwrap();
    let t = Tencent::new(&v.config("wrong"), Duration::from_secs(2)).unwrap();
    let d = t.verify("测试甲", &id(1)).await;
    assert!(matches!(&d.verdict, Verdict::Misconfigured(why) if why.contains("AuthFailure.SignatureFailure")));
    assert!(d.message().contains("bank IT"));

    // Nothing listens: unbilled, retried once, and after five failures the breaker answers at once.
    let mut cfg = v.config("key");
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    cfg.connect = Some(closed.local_addr().unwrap());
    drop(closed);
    let t = Tencent::new(&cfg, Duration::from_secs(2)).unwrap();
    for _ in 0..2 {
        let d = t.verify("测试甲", &id(1)).await;
        assert!(!d.billed && matches!(&d.verdict, Verdict::Unavailable(why) if why.contains("cannot reach")));
    }
    let d = t.verify("测试甲", &id(1)).await;
    assert!(matches!(&d.verdict, Verdict::Unavailable(why) if why.contains("paused")), "{d:?}");
}

#[tokio::test]
async fn a_missing_secret_or_ca_is_a_configuration_error_that_names_the_key() {
    let v = Vendor::start("config").await;
    let mut cfg = v.config("key");
    cfg.secret_key = None;
    let e = Tencent::new(&cfg, Duration::from_secs(1)).err().unwrap();
    assert!(e.to_string().contains("[kyc.tencent] secret_key"), "{e}");
    let mut cfg = v.config("key");
    cfg.ca = v.dir.join("absent.crt");
    let e = Tencent::new(&cfg, Duration::from_secs(1)).err().unwrap();
    assert!(e.to_string().contains("[kyc.tencent] ca"), "{e}");
}
