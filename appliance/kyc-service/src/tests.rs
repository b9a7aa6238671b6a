//! The vendor adapters against the simulator over HTTPS: every result, every fault, retries, the breaker, the
//! fallback rule, SM4-GCM field encryption, and Baidu's token, OCR and face check.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use vbank_config::KycConfig;
use vbank_kyc::simulator::Simulator;
use vbank_kyc::vendor::Verdict;
use vbank_service::client::{ClientConfig, Connection, Method};

use crate::baidu::Baidu;
use crate::cards::CardVendor;
use crate::vendor::{IdentityVendor, ask_in_turn};

const HOSTS: [&str; 5] = [
    "faceid.tencentcloudapi.com",
    "cloudauth.aliyuncs.com",
    "aip.baidubce.com",
    "nciic.test",
    "ocr.tencentcloudapi.com",
];
const SECRETS: [(&str, &str); 7] = [
    ("tencent-secret-id", "AKIDsimulated0000000000000000000000"),
    ("tencent-secret-key", "simulated-secret-key-0000000000000"),
    ("alibaba-access-key-id", "LTAIsimulated"),
    ("alibaba-access-key-secret", "simulated-alibaba-secret"),
    ("nciic-license", "SIMULATED-LICENSE"),
    ("baidu-api-key", "simulated-baidu-ak"),
    ("baidu-secret-key", "simulated-baidu-sk"),
];

/// A synthetic 18-digit number (region 110101) with a correct check character.
fn id(seq: u32) -> String {
    let first = format!("11010119900307{:03}", seq % 1000);
    format!("{first}{}", vbank_kyc::id::check_char(first.as_bytes()))
}

struct Vendors {
    dir: std::path::PathBuf,
    addr: std::net::SocketAddr,
    control: Arc<ClientConfig>,
    stop: tokio::sync::watch::Sender<bool>,
}

impl Vendors {
    async fn start(name: &str) -> Vendors {
        let dir = std::env::temp_dir().join(format!("vbank-kyc-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let pki = vbank_tls::devca::ensure_simulator_pki(&dir, &HOSTS).unwrap();
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
        for (file, value) in SECRETS {
            std::fs::write(dir.join(file), value).unwrap();
        }
        let tencent_key = vbank_crypto::sm2sig::Sm2PrivateKey::generate().unwrap();
        std::fs::write(dir.join("tencent-sm2.pub"), tencent_key.public_key().to_pem()).unwrap();
        let sim = Simulator::new()
            .tencent(HOSTS[0], SECRETS[0].1, SECRETS[1].1)
            .tencent_encryption(tencent_key)
            .alibaba(HOSTS[1], SECRETS[2].1, SECRETS[3].1)
            .nciic(SECRETS[4].1)
            .baidu(SECRETS[5].1, SECRETS[6].1);
        let app = crate::simulate::router(sim);
        tokio::spawn(vbank_service::serve_tls(listener, vbank_tls::ServerTls::standard(tls.into()), app, rx));
        let mut roots = rustls::RootCertStore::empty();
        roots.add(vbank_tls::load_certs(&pki.ca).unwrap().remove(0)).unwrap();
        let control = ClientConfig::builder_with_provider(vbank_tls::provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        Vendors { dir, addr, control: control.into(), stop }
    }

    /// `[kyc]` with `kyc` lines, every vendor pointed at the simulator; `tencent_key` names the file of its secret.
    fn config_with(&self, kyc: &str, tencent_key: &str, timeout_s: u32) -> KycConfig {
        let d = self.dir.display();
        let endpoint = format!("connect = \"{}\"\nca = \"{d}/sim-ca.crt\"\n", self.addr);
        let text = format!(
            "[kyc]\ntimeout_s = {timeout_s}\n{kyc}\n\
             [kyc.tencent]\n{endpoint}secret_id = \"file:{d}/tencent-secret-id\"\nsecret_key = \"file:{d}/{tencent_key}\"\n\
             encrypt_to = \"{d}/tencent-sm2.pub\"\n\
             [kyc.alibaba]\n{endpoint}access_key_id = \"file:{d}/alibaba-access-key-id\"\n\
             access_key_secret = \"file:{d}/alibaba-access-key-secret\"\n\
             [kyc.nciic]\nhost = \"nciic.test\"\n{endpoint}license = \"file:{d}/nciic-license\"\nsbm = \"SBM-1\"\nplace = \"110101\"\n\
             [kyc.baidu]\n{endpoint}api_key = \"file:{d}/baidu-api-key\"\nsecret_key = \"file:{d}/baidu-secret-key\"\n"
        );
        vbank_config::parse(&text).unwrap_or_else(|e| panic!("{e:?}")).0.kyc
    }

    fn config(&self) -> KycConfig {
        self.config_with("", "tencent-secret-key", 5)
    }

    fn adapter(&self, vendor: &str, timeout_s: u32) -> IdentityVendor {
        IdentityVendor::new(&self.config_with("", "tencent-secret-key", timeout_s), vendor).unwrap()
    }

    async fn control(&self, path: &str, body: Value) {
        let mut c = Connection::open(self.control.clone(), self.addr, HOSTS[0], Duration::from_secs(5)).await.unwrap();
        let (status, _) = c.request(Method::POST, path, Some(body.to_string().into())).await.unwrap();
        assert!(status.is_success(), "{path}: {status}");
    }

    async fn faults(&self, faults: Value) {
        self.control("/_simulator/faults", faults).await;
    }
}

impl Drop for Vendors {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[tokio::test]
async fn every_result_of_the_authority_reaches_the_teller_as_documented_through_each_vendor() {
    let v = Vendors::start("results").await;
    v.control("/_simulator/people", json!([{"name": "测试甲", "id_number": id(1), "photo": "/9j/4AAQ"}])).await;
    for vendor in ["tencent", "alibaba", "nciic"] {
        let t = v.adapter(vendor, 5);
        let d = t.verify("测试甲", &id(1)).await;
        assert_eq!(d.verdict, Verdict::Match, "{vendor}: {d:?}");
        assert!(d.billed, "{vendor}");
        assert_eq!(t.verify("测试乙", &id(1)).await.verdict, Verdict::Mismatch, "{vendor}");
        assert_eq!(t.verify("测试甲", &id(2)).await.verdict, Verdict::NoRecord, "{vendor}");
        assert!(matches!(t.verify("测试甲", "110101199003070000").await.verdict, Verdict::BadInput(_)), "{vendor}");
        if vendor == "nciic" {
            assert_eq!(d.photo, Some(vec![0xff, 0xd8, 0xff, 0xe0, 0, 0x10]), "the authority's photo comes back");
        }
    }
    // Tencent with SM4-GCM field encryption: the simulator decrypted the number, or it could not have matched.
    assert_eq!(v.adapter("tencent", 5).engine(), "tencent faceid IdCardVerification (SM4-GCM)");

    let t = v.adapter("tencent", 5);
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
    let v = Vendors::start("faults").await;
    v.control("/_simulator/people", json!([{"name": "测试甲", "id_number": id(1)}])).await;
    let t = v.adapter("tencent", 2);

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
async fn the_fallback_vendor_is_asked_only_when_the_first_failed_without_billing() {
    let v = Vendors::start("fallback").await;
    v.control("/_simulator/people", json!([{"name": "测试甲", "id_number": id(1)}])).await;
    let both = [Arc::new(v.adapter("tencent", 2)), Arc::new(v.adapter("alibaba", 2))];
    let mut asked = Vec::new();
    v.faults(json!([{"status": 503}, {"status": 503}])).await;
    let (d, engine) = ask_in_turn(&both, "测试甲", &id(1), |name, _| asked.push(name)).await;
    assert_eq!(
        (d.verdict, engine, asked.as_slice()),
        (Verdict::Match, "alibaba cloudauth Id2MetaVerify", &["tencent", "alibaba"][..])
    );
    // Billed (or maybe billed): the teller is told, and no second vendor is charged.
    asked.clear();
    v.faults(json!([{"garbled": true}])).await;
    let (d, _) = ask_in_turn(&both, "测试甲", &id(1), |name, _| asked.push(name)).await;
    assert!(d.billed && asked == ["tencent"], "{d:?} {asked:?}");
    let (d, engine) = ask_in_turn(&[], "测试甲", &id(1), |_, _| {}).await;
    assert!(matches!(d.verdict, Verdict::Misconfigured(_)) && engine == "none");
}

#[tokio::test]
async fn a_wrong_key_is_misconfigured_and_the_breaker_opens_on_a_failing_vendor() {
    let v = Vendors::start("auth").await;
    std::fs::write(v.dir.join("wrong"), "not-the-key").unwrap();
    let t = IdentityVendor::new(&v.config_with("", "wrong", 2), "tencent").unwrap();
    let d = t.verify("测试甲", &id(1)).await;
    assert!(matches!(&d.verdict, Verdict::Misconfigured(why) if why.contains("AuthFailure.SignatureFailure")));
    assert!(d.message().contains("bank IT"));

    // Nothing listens: unbilled, retried once, and after five failures the breaker answers at once.
    let mut cfg = v.config();
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    cfg.tencent.connect = Some(closed.local_addr().unwrap());
    drop(closed);
    let t = IdentityVendor::new(&cfg, "tencent").unwrap();
    for _ in 0..2 {
        let d = t.verify("测试甲", &id(1)).await;
        assert!(!d.billed && matches!(&d.verdict, Verdict::Unavailable(why) if why.contains("cannot reach")));
    }
    let d = t.verify("测试甲", &id(1)).await;
    assert!(matches!(&d.verdict, Verdict::Unavailable(why) if why.contains("paused")), "{d:?}");
    assert!(t.is_paused(), "readiness reports it");
}

#[tokio::test]
async fn baidu_reads_cards_and_checks_faces_with_a_token_it_fetches_itself() {
    let v = Vendors::start("baidu").await;
    v.control("/_simulator/people", json!([{"name": "测试甲", "id_number": id(1)}])).await;
    let b = Baidu::new(&v.config()).unwrap();
    let Err(d) = b.read_card(b"\x89PNG", "front").await else { panic!("nothing queued") };
    assert!(matches!(d.verdict, Verdict::BadInput(_)), "{d:?}");
    v.control("/_simulator/cards", json!([{"姓名": "测试甲", "公民身份号码": id(1)}])).await;
    let (card, log_id) = b.read_card(b"\x89PNG", "front").await.unwrap();
    assert_eq!(card.get("公民身份号码"), Some(id(1).as_str()));
    assert!(log_id.is_some());
    let (score, _) = b.verify_face(b"jpeg", "测试甲", &id(1)).await.unwrap();
    assert!(score >= vbank_kyc::vendor::baidu::SAME_PERSON);
    assert_eq!(b.verify_face(b"jpeg", "测试乙", &id(1)).await.unwrap_err().verdict, Verdict::Mismatch);
    v.faults(json!([{"error": "18"}])).await;
    assert!(b.verify_face(b"jpeg", "测试甲", &id(1)).await.is_ok(), "QPS limit: unbilled, retried once");

    std::fs::write(v.dir.join("baidu-secret-key"), "wrong").unwrap();
    let wrong = Baidu::new(&v.config()).unwrap();
    let d = wrong.read_card(b"\x89PNG", "front").await.unwrap_err();
    assert!(matches!(&d.verdict, Verdict::Misconfigured(why) if why.contains("invalid_client")), "{d:?}");
}

#[tokio::test]
async fn tencent_reads_cards_and_checks_faces_on_its_two_hosts() {
    let v = Vendors::start("tencent-cards").await;
    v.control("/_simulator/people", json!([{"name": "测试甲", "id_number": id(1)}])).await;
    let t = CardVendor::new(&v.config(), "tencent").unwrap();
    assert!(t.read_card(b"\x89PNG", "front").await.is_err(), "nothing queued");
    v.control(
        "/_simulator/cards",
        json!([{"姓名": "测试甲", "公民身份号码": id(1), "有效期限": "2020.01.01-2040.01.01"}]),
    )
    .await;
    let (card, request_id) = t.read_card(b"\x89PNG", "front").await.unwrap();
    assert_eq!((card.get("姓名"), card.get("有效期限")), (Some("测试甲"), Some("2020.01.01-2040.01.01")));
    assert!(request_id.is_some_and(|r| r.starts_with("sim-")));
    let (score, _) = t.verify_face(b"jpeg", "测试甲", &id(1)).await.unwrap();
    assert!(score >= t.same_person());
    assert_eq!(t.verify_face(b"jpeg", "测试甲", &id(2)).await.unwrap_err().verdict, Verdict::NoRecord);
}

#[tokio::test]
async fn a_missing_secret_or_ca_is_a_configuration_error_that_names_the_key() {
    let v = Vendors::start("config").await;
    let mut cfg = v.config();
    cfg.tencent.secret = None;
    let e = IdentityVendor::new(&cfg, "tencent").err().unwrap();
    assert!(e.to_string().contains("[kyc.tencent] secret_key"), "{e}");
    let mut cfg = v.config();
    cfg.alibaba.ca = v.dir.join("absent.crt");
    let e = IdentityVendor::new(&cfg, "alibaba").err().unwrap();
    assert!(e.to_string().contains("[kyc.alibaba] ca"), "{e}");
    let mut cfg = v.config();
    cfg.nciic.secret = None;
    let e = IdentityVendor::new(&cfg, "nciic").err().unwrap();
    assert!(e.to_string().contains("[kyc.nciic] license"), "{e}");
}
