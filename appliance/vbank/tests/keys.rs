//! The key service end to end, on `vbank up` (real SoftHSM2 token, real mTLS, the real CLI):
//! ceremony → data key → rotate (2 of 3) → rewrap → destroy (2 of 3), pkcs11-tool's view of the token, OpenSSL
//! verifying an SM2 seal made by keyd, the audit log verifying and then naming a changed entry, and an HSM outage.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{VBANK, free_ports};
use serde_json::{Value, json};
use vbank_config::{Config, Service};
use vbank_service::client::{self, Method, StatusCode};

struct Node {
    child: Child,
    data: PathBuf,
    cfg: Config,
    _tmp: tempfile::TempDir,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let _ = self.child.wait();
    }
}

fn start() -> Node {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let (public, base) = free_ports();
    let (child, _) = common::spawn_up(&data, public, base, Stdio::null());
    let (cfg, _) = vbank_config::load(&data.join("vbank.toml")).unwrap();
    Node { child, data, cfg, _tmp: tmp }
}

impl Node {
    fn vbank(&self, args: &[&str]) -> Output {
        Command::new(VBANK).args(args).arg("--config").arg(self.data.join("vbank.toml")).output().unwrap()
    }

    fn ok_json(&self, args: &[&str]) -> Value {
        let mut a = args.to_vec();
        a.push("--json");
        let out = self.vbank(&a);
        assert!(
            out.status.success(),
            "vbank {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
    }

    async fn api(&self, as_svc: Service, path: &str, body: Value) -> (StatusCode, Value) {
        let tls = vbank_tls::service_client_config(&self.cfg.tls, as_svc).unwrap();
        let name = vbank_tls::service_dns_name(Service::Keyd);
        let (s, b) = client::call(
            tls,
            self.cfg.keyd.listen,
            &name,
            Method::POST,
            path,
            Some(body.to_string().into()),
            Duration::from_secs(10),
        )
        .await
        .unwrap();
        (s, serde_json::from_slice(&b).unwrap_or(Value::Null))
    }

    fn officer(&self, name: &str) -> (PathBuf, PathBuf) {
        let dir = self.data.join("officers");
        self.ok_json(&["hsm", "officer-keygen", "--name", name, "--out", dir.to_str().unwrap()]);
        (dir.join(format!("{name}.key")), dir.join(format!("{name}.pub.pem")))
    }

    fn pkcs11_tool_objects(&self) -> String {
        let pin = std::fs::read_to_string(self.data.join("credentials/hsm-pin")).unwrap();
        let out = Command::new("pkcs11-tool")
            .args([
                "--module",
                "/usr/lib/softhsm/libsofthsm2.so",
                "--token-label",
                "vbank-dev",
                "--login",
                "--pin",
                pin.trim(),
                "--list-objects",
            ])
            .env("SOFTHSM2_CONF", self.data.join("softhsm/softhsm2.conf"))
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

fn pair(name: &str, p: &Path) -> String {
    format!("{name}={}", p.display())
}

fn object_block(listing: &str, kind: &str, label: &str) -> Option<String> {
    let mut blocks: Vec<Vec<&str>> = Vec::new();
    for line in listing.lines() {
        if !line.starts_with(' ') {
            blocks.push(vec![line]);
        } else if let Some(b) = blocks.last_mut() {
            b.push(line);
        }
    }
    let wanted = format!("label:      {label}");
    blocks.into_iter().find(|b| b[0].starts_with(kind) && b.iter().any(|l| l.trim() == wanted)).map(|b| b.join("\n"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ceremony_dek_rotate_rewrap_destroy_seal_audit_outage() {
    let node = start();
    let (alice_key, alice_pub) = node.officer("alice");
    let (bob_key, bob_pub) = node.officer("bob");
    let (carol_key, carol_pub) = node.officer("carol");

    // Before the ceremony there are no keys to hand out.
    let (s, v) =
        node.api(Service::Recorder, "/v1/dek/create", json!({"purpose": "recording", "context": "rec-0"})).await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    assert!(v["message"].as_str().unwrap().contains("ceremony"));

    // One witness is not enough for 2-of-3 dual control.
    let officers = [pair("alice", &alice_pub), pair("bob", &bob_pub), pair("carol", &carol_pub)];
    let ceremony_args = |witnesses: &[String]| {
        let mut a = vec!["hsm".to_string(), "ceremony".to_string()];
        for o in &officers {
            a.extend(["--officer".to_string(), o.clone()]);
        }
        for w in witnesses {
            a.extend(["--witness".to_string(), w.clone()]);
        }
        a
    };
    let args = ceremony_args(&[pair("alice", &alice_key)]);
    let out = node.vbank(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("needs 2"), "{}", String::from_utf8_lossy(&out.stderr));

    let args = ceremony_args(&[pair("alice", &alice_key), pair("bob", &bob_key)]);
    let report = node.ok_json(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(report["keys"].as_array().unwrap().len(), 7, "{report}");
    assert_eq!(report["witnesses"], json!(["alice", "bob"]));

    // A call token from the CLI verifies with the key keyd publishes to gateways; scope and lifetime are enforced.
    let t = node.ok_json(&["token", "--room", "call-9", "--role", "customer", "--ttl", "10m"]);
    let token = t["token"].as_str().unwrap().to_string();
    let gw = vbank_tls::service_client_config(&node.cfg.tls, Service::Gateway).unwrap();
    let (s, body) = client::call(
        gw,
        node.cfg.keyd.listen,
        &vbank_tls::service_dns_name(Service::Keyd),
        Method::GET,
        "/v1/token/keys",
        None,
        Duration::from_secs(10),
    )
    .await
    .unwrap();
    assert_eq!(s, StatusCode::OK);
    let published: Value = serde_json::from_slice(&body).unwrap();
    let keys: Vec<(String, vbank_crypto::p256sig::P256PublicKey)> = published["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| {
            (
                k["kid"].as_str().unwrap().to_string(),
                vbank_crypto::p256sig::P256PublicKey::from_pem(k["pem"].as_str().unwrap()).unwrap(),
            )
        })
        .collect();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let claims = vbank_token::verify(&token, &keys, now).unwrap();
    assert_eq!((claims.room.as_str(), claims.role.as_str(), claims.exp - claims.iat), ("call-9", "customer", 600));
    assert!(claims.require("call-9", "teller").is_err());
    assert!(!node.vbank(&["token", "--room", "call-9", "--role", "customer", "--ttl", "2h"]).status.success());

    // KEKs in the HSM: sensitive, never extractable (keyd's view and OpenSC's).
    let keys = node.ok_json(&["hsm", "keys", "list"]);
    let kek = keys["hsm_objects"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["label"]["purpose"] == "recording" && o["class"] == "secret-key")
        .unwrap()
        .clone();
    assert_eq!(
        (kek["sensitive"].as_bool(), kek["extractable"].as_bool(), kek["never_extractable"].as_bool()),
        (Some(true), Some(false), Some(true))
    );

    // A data key for a recording: only the recorder, only with the right context.
    let (s, dek) =
        node.api(Service::Recorder, "/v1/dek/create", json!({"purpose": "recording", "context": "rec-1"})).await;
    assert_eq!(s, StatusCode::OK, "{dek}");
    let (id, key, envelope) = (
        dek["id"].as_str().unwrap().to_string(),
        dek["key"].as_str().unwrap().to_string(),
        dek["envelope"].as_str().unwrap().to_string(),
    );
    assert_eq!(key.len(), 64);
    let (s, v) = node
        .api(Service::Recorder, "/v1/dek/open", json!({"purpose": "recording", "id": id, "context": "rec-1"}))
        .await;
    assert_eq!((s, v["key"].as_str()), (StatusCode::OK, Some(key.as_str())));
    let (s, v) = node
        .api(Service::Recorder, "/v1/dek/open", json!({"purpose": "recording", "id": id, "context": "rec-2"}))
        .await;
    assert_eq!((s, v["error"].as_str()), (StatusCode::FORBIDDEN, Some("context_mismatch")));

    // End-to-end media keys: keyd encrypts each epoch's key to the pages; the gateway gets nothing it can open, the
    // recorder opens the same key (audited), and the gateway may not open it.
    use p256::elliptic_curve::sec1::ToSec1Point;
    let page = p256::SecretKey::from_slice(&[0x33; 32]).unwrap();
    let page_pub = vbank_crypto::to_hex(page.public_key().to_sec1_point(false).as_bytes());
    let ask = json!({"call": "call-e2ee", "epoch": 2, "recipients": [{"id": "customer-1", "public_key": page_pub}]});
    let (s, v) = node.api(Service::Recorder, "/v1/media-keys", ask.clone()).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "only the gateway asks: {v}");
    let (s, media) = node.api(Service::Gateway, "/v1/media-keys", ask).await;
    assert_eq!(s, StatusCode::OK, "{media}");
    assert!(media.get("key").is_none(), "no media key in clear for the gateway: {media}");
    let blob = vbank_crypto::from_hex(media["wrapped"][0]["key"].as_str().unwrap()).unwrap();
    let on_page = vbank_crypto::key_transport::unwrap_with(&page, &blob, b"media:call-e2ee:2").unwrap();
    let open = json!({"purpose": "media", "id": media["id"], "context": "media:call-e2ee:2"});
    let (s, v) = node.api(Service::Recorder, "/v1/dek/open", open.clone()).await;
    assert_eq!((s, v["key"].as_str()), (StatusCode::OK, Some(vbank_crypto::to_hex(on_page.expose()).as_str())));
    let (s, _) = node.api(Service::Gateway, "/v1/dek/open", open).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "the gateway never opens a media key");
    let bad = json!({"call": "call-e2ee", "epoch": 3, "recipients": [{"id": "x", "public_key": "04"}]});
    let (s, v) = node.api(Service::Gateway, "/v1/media-keys", bad).await;
    assert!(s == StatusCode::BAD_REQUEST && v["message"].as_str().unwrap().contains("P-256"), "{v}");
    let (s, _) =
        node.api(Service::Gateway, "/v1/dek/open", json!({"purpose": "recording", "id": id, "context": "rec-1"})).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let mut tampered = envelope.clone().into_bytes();
    let n = tampered.len() - 5;
    tampered[n] = if tampered[n] == b'0' { b'1' } else { b'0' };
    let (s, v) = node
        .api(
            Service::Recorder,
            "/v1/dek/open",
            json!({"purpose": "recording", "envelope": String::from_utf8(tampered).unwrap(), "context": "rec-1"}),
        )
        .await;
    assert_eq!((s, v["error"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("bad_wrapped_key")), "{v}");
    let (s, _) = node
        .api(
            Service::Recorder,
            "/v1/dek/open",
            json!({"purpose": "recording", "envelope": &envelope[..20], "context": "rec-1"}),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);

    // Rotate: alice asks, alice cannot approve twice, bob approves → v2.
    let req = node.ok_json(&[
        "hsm",
        "keys",
        "rotate",
        "--purpose",
        "recording",
        "--officer",
        "alice",
        "--key",
        alice_key.to_str().unwrap(),
    ]);
    assert_eq!(req["state"], "pending");
    let rid = req["id"].as_str().unwrap().to_string();
    let twice =
        node.vbank(&["hsm", "approvals", "approve", &rid, "--officer", "alice", "--key", alice_key.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&twice.stderr).contains("distinct officers"));
    let forged =
        node.vbank(&["hsm", "approvals", "approve", &rid, "--officer", "bob", "--key", carol_key.to_str().unwrap()]);
    assert!(
        String::from_utf8_lossy(&forged.stderr).contains("does not verify"),
        "{}",
        String::from_utf8_lossy(&forged.stderr)
    );
    let done =
        node.ok_json(&["hsm", "approvals", "approve", &rid, "--officer", "bob", "--key", bob_key.to_str().unwrap()]);
    assert_eq!(
        (done["state"].as_str(), done["result"].as_str()),
        (Some("executed"), Some("created vbank/recording/v2"))
    );

    // Rewrap moves the data key to v2 inside the HSM; it still opens by id.
    let moved = node.ok_json(&["hsm", "rewrap", "--purpose", "recording"]);
    assert_eq!(moved["moved"], 1);
    let (_, v) = node
        .api(Service::Recorder, "/v1/dek/open", json!({"purpose": "recording", "id": id, "context": "rec-1"}))
        .await;
    assert_eq!(v["key"].as_str(), Some(key.as_str()));

    // Destroy v1 under dual control (carol asks, bob approves); the old envelope is dead, the key lives on under v2.
    let req = node.ok_json(&[
        "hsm",
        "keys",
        "destroy",
        "vbank/recording/v1",
        "--officer",
        "carol",
        "--key",
        carol_key.to_str().unwrap(),
    ]);
    assert_eq!(req["state"], "pending");
    let still = node.ok_json(&["hsm", "keys", "list"]);
    assert!(
        still["hsm_objects"]
            .as_array()
            .unwrap()
            .iter()
            .any(|o| o["label"]["purpose"] == "recording" && o["label"]["version"] == 1),
        "nothing happens before the second approval"
    );
    let done = node.ok_json(&[
        "hsm",
        "approvals",
        "approve",
        req["id"].as_str().unwrap(),
        "--officer",
        "bob",
        "--key",
        bob_key.to_str().unwrap(),
    ]);
    assert_eq!(done["result"], "destroyed vbank/recording/v1");
    let (s, _) = node
        .api(
            Service::Recorder,
            "/v1/dek/open",
            json!({"purpose": "recording", "envelope": envelope, "context": "rec-1"}),
        )
        .await;
    assert!(s.is_client_error(), "{s}");
    let (_, v) = node
        .api(Service::Recorder, "/v1/dek/open", json!({"purpose": "recording", "id": id, "context": "rec-1"}))
        .await;
    assert_eq!(v["key"].as_str(), Some(key.as_str()));
    let listing = node.pkcs11_tool_objects();
    assert!(object_block(&listing, "Secret Key Object", "vbank/recording/v1").is_none(), "v1 is gone from the token");
    let v2 = object_block(&listing, "Secret Key Object", "vbank/recording/v2").expect("v2 on the token");
    assert!(v2.contains("Access:     sensitive, always sensitive, never extractable"), "{v2}");

    // An SM2 evidence seal made by keyd verifies with stock OpenSSL and the exported public key.
    let manifest = b"recording rec-1 manifest: segment hashes ...";
    let (s, seal) = node
        .api(Service::Recorder, "/v1/sign", json!({"purpose": "evidence-seal", "data": vbank_crypto::to_hex(manifest)}))
        .await;
    assert_eq!(s, StatusCode::OK, "{seal}");
    let dir = node.data.join("evidence");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("manifest"), manifest).unwrap();
    std::fs::write(dir.join("manifest.sig"), vbank_crypto::from_hex(seal["signature"].as_str().unwrap()).unwrap())
        .unwrap();
    let out = node.vbank(&[
        "hsm",
        "keys",
        "export-public",
        seal["key"].as_str().unwrap(),
        "--out",
        dir.join("seal.pem").to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(common::openssl_sm2_verifies(
        &dir.join("seal.pem"),
        &dir.join("manifest.sig"),
        &dir.join("manifest"),
        seal["id"].as_str().unwrap()
    ));
    let (s, _) = node.api(Service::Cli, "/v1/sign", json!({"purpose": "evidence-seal", "data": "00"})).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "the console does not sign evidence");

    // The audit log: seal now, export, verify offline; then change one byte of one entry and be told which.
    let tls = vbank_tls::service_client_config(&node.cfg.tls, Service::Cli).unwrap();
    let name = vbank_tls::service_dns_name(Service::Keyd);
    client::call(tls, node.cfg.keyd.listen, &name, Method::POST, "/v1/admin/audit/seal", None, Duration::from_secs(10))
        .await
        .unwrap();
    let log = node.data.join("audit.jsonl");
    assert!(node.vbank(&["hsm", "audit", "export", "--out", log.to_str().unwrap()]).status.success());
    let pem = node.data.join("audit-seal.pem");
    assert!(
        node.vbank(&["hsm", "keys", "export-public", "vbank/audit-seal/v1", "--out", pem.to_str().unwrap()])
            .status
            .success()
    );
    let verify = |p: &Path| {
        Command::new(VBANK)
            .args(["audit", "verify"])
            .arg(p)
            .args(["--public-key", &format!("vbank/audit-seal/v1={}", pem.display())])
            .output()
            .unwrap()
    };
    let ok = verify(&log);
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stdout));
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("\"action\":\"dek.open\"")
            && text.contains("\"outcome\":\"denied\"")
            && text.contains("key.destroy")
    );
    assert!(!text.contains(&key), "no key material in the audit log");
    assert!(
        text.lines().any(|l| l.contains("\"actor\":\"gateway\",\"action\":\"request\"") && l.contains("\"outcome\":\"denied\"")),
        "every request is audited, refused ones included"
    );
    let lines: Vec<&str> = text.lines().collect();
    let (victim, _) = lines.iter().enumerate().find(|(_, l)| l.contains("\"action\":\"dek.create\"")).unwrap();
    let mut changed: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
    changed[victim] = changed[victim].replacen("\"actor\":\"recorder\"", "\"actor\":\"recordex\"", 1);
    let bad_log = node.data.join("audit-changed.jsonl");
    std::fs::write(&bad_log, changed.join("\n") + "\n").unwrap();
    let bad = verify(&bad_log);
    assert!(!bad.status.success());
    let seq: Value = serde_json::from_str(lines[victim]).unwrap();
    assert!(
        String::from_utf8_lossy(&bad.stdout).contains(&format!("FAILED at entry {}", seq["seq"])),
        "{}",
        String::from_utf8_lossy(&bad.stdout)
    );

    // The HSM vanishes: keyd stays up, answers 503 fast, and recovers by itself.
    let tokens = node.data.join("softhsm/tokens");
    let away = node.data.join("softhsm/tokens-away");
    std::fs::rename(&tokens, &away).unwrap();
    let t = Instant::now();
    let (s, v) =
        node.api(Service::Recorder, "/v1/dek/create", json!({"purpose": "recording", "context": "rec-3"})).await;
    assert_eq!((s, v["error"].as_str()), (StatusCode::SERVICE_UNAVAILABLE, Some("hsm_unavailable")), "{v}");
    assert!(t.elapsed() < Duration::from_secs(3));
    std::fs::rename(&away, &tokens).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (s, _) =
            node.api(Service::Recorder, "/v1/dek/create", json!({"purpose": "recording", "context": "rec-3"})).await;
        if s == StatusCode::OK {
            break;
        }
        assert!(Instant::now() < deadline, "keyd did not recover after the token returned");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
