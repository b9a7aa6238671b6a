//! `vbank decommission` end to end on a `vbank up` node: legal holds respected, recordings erased, every key
//! destroyed in the HSM only after a second officer's approval (OpenSC's view of the token checked), state wiped,
//! and a certificate that stock OpenSSL verifies.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{StopOnDrop, VBANK, free_ports, ok_json_at as ok_json, vbank_at as vbank};
use serde_json::Value;

fn refused(config: &Path, args: &[&str], says: &str) {
    let out = vbank(config, args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains(says), "vbank {args:?} should say {says:?}: {err}");
}

fn fake_recording(dir: &Path, id: &str) {
    let d = dir.join(id);
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join("recording.json"), format!("{{\"recording\":\"{id}\"}}")).unwrap();
    std::fs::write(d.join("manifest.json"), format!("{{\"recording\":\"{id}\",\"segments\":[]}}")).unwrap();
    std::fs::write(d.join("t0.seg"), vec![0x42u8; 4096]).unwrap();
}

fn token_labels(data: &Path) -> String {
    let pin = std::fs::read_to_string(data.join("credentials/hsm-pin")).unwrap();
    let out = Command::new("pkcs11-tool")
        .args(["--module", "/usr/lib/softhsm/libsofthsm2.so", "--token-label", "vbank-dev", "--login", "--pin"])
        .arg(pin.trim())
        .arg("--list-objects")
        .env("SOFTHSM2_CONF", data.join("softhsm/softhsm2.conf"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).lines().filter(|l| l.contains("label:")).collect::<Vec<_>>().join("\n")
}

#[test]
fn decommission_respects_holds_needs_two_officers_and_leaves_a_signed_certificate() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let (public, base) = free_ports();
    let up = StopOnDrop(common::spawn_up(&data, public, base, Stdio::null()).0);
    let config = data.join("vbank.toml");
    let (cfg, _) = vbank_config::load(&config).unwrap();
    let officers = tmp.path().join("officers");
    for o in ["alice", "bob"] {
        ok_json(&config, &["hsm", "officer-keygen", "--name", o, "--out", officers.to_str().unwrap()]);
    }
    let file = |o: &str, ext: &str| officers.join(format!("{o}.{ext}")).display().to_string();
    let ceremony = ok_json(
        &config,
        &[
            "hsm",
            "ceremony",
            "--officer",
            &format!("alice={}", file("alice", "pub.pem")),
            "--officer",
            &format!("bob={}", file("bob", "pub.pem")),
            "--witness",
            &format!("alice={}", file("alice", "key")),
            "--witness",
            &format!("bob={}", file("bob", "key")),
        ],
    );
    let made = ceremony["keys"].as_array().unwrap().len();
    assert!(made >= 7, "{ceremony}");
    fake_recording(&cfg.recorder.dir, "rec-0001");
    fake_recording(&cfg.recorder.dir, "rec-0002");
    let held = cfg.recorder.dir.join("rec-0002");
    ok_json(&config, &["recordings", "hold", held.to_str().unwrap(), "--reason", "case 2026-17", "--by", "legal"]);
    drop(up);

    // keyd alone, as step 1 wants it.
    let keyd = StopOnDrop(
        Command::new(VBANK)
            .arg("--config")
            .arg(&config)
            .arg("keyd")
            .env("CREDENTIALS_DIRECTORY", data.join("credentials"))
            .env("SOFTHSM2_CONF", data.join("softhsm/softhsm2.conf"))
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while !vbank(&config, &["hsm", "status"]).status.success() {
        assert!(Instant::now() < deadline, "keyd did not start");
        std::thread::sleep(Duration::from_millis(200));
    }
    let out = tmp.path().join("decommission");
    let o = out.to_str().unwrap();
    let alice_key = file("alice", "key");
    let start = |confirm: &str| -> Vec<String> {
        ["decommission", "start", "--confirm", confirm, "--officer", "alice", "--key", &alice_key, "--out", o]
            .into_iter()
            .map(String::from)
            .collect()
    };
    let start_other = start("some-other-node");
    refused(&config, &start_other.iter().map(String::as_str).collect::<Vec<_>>(), "is not this node");
    let start_here = start(&cfg.node.name);
    let start_here: Vec<&str> = start_here.iter().map(String::as_str).collect();
    refused(&config, &start_here, "rec-0002");
    assert!(cfg.recorder.dir.join("rec-0001").exists(), "a refused start erases nothing");
    ok_json(&config, &["recordings", "hold", held.to_str().unwrap(), "--release"]);

    let started = ok_json(&config, &start_here);
    let id = started["request"].as_str().unwrap().to_string();
    assert!(!cfg.recorder.dir.join("rec-0001").exists() && !held.exists(), "recordings erased");
    let final_log = std::fs::read_to_string(out.join("audit-final.jsonl")).unwrap();
    let erasures = final_log.lines().filter(|l| l.contains("\"action\":\"operator.recording.erase\"")).count();
    assert_eq!(erasures, 2, "each erasure is in the sealed audit log");
    assert!(final_log.contains("\"action\":\"approval.request\""), "the request precedes the erasure");
    assert!(token_labels(&data).contains("vbank/"), "nothing destroyed on one officer's word");
    refused(
        &config,
        &["decommission", "finish", "--out", o, "--officer", "alice", "--key", &alice_key],
        "every service stopped",
    );

    let approved =
        ok_json(&config, &["hsm", "approvals", "approve", &id, "--officer", "bob", "--key", &file("bob", "key")]);
    assert_eq!(approved["state"], "executed", "{approved}");
    assert!(approved["result"].as_str().unwrap().contains(&format!("destroyed {made} keys")), "{approved}");
    assert!(!token_labels(&data).contains("vbank/"), "every key gone from the token: {}", token_labels(&data));
    drop(keyd);

    // As its systemd unit would run it: the node's credentials where $CREDENTIALS_DIRECTORY says.
    let finish = Command::new(VBANK)
        .args(["--json", "--config", config.to_str().unwrap(), "decommission", "finish", "--out", o])
        .args(["--officer", "alice", "--key", &alice_key])
        .env("CREDENTIALS_DIRECTORY", data.join("credentials"))
        .output()
        .unwrap();
    assert!(finish.status.success(), "{}", String::from_utf8_lossy(&finish.stderr));
    let done: Value = serde_json::from_slice(&finish.stdout).unwrap();
    let cert_path = std::path::PathBuf::from(done["certificate"].as_str().unwrap());
    let cert: Value = serde_json::from_slice(&std::fs::read(&cert_path).unwrap()).unwrap();
    assert_eq!(cert["keys_destroyed"].as_array().unwrap().len(), made, "{cert}");
    assert_eq!(cert["recordings_erased"].as_array().unwrap().len(), 2);
    let approvers: Vec<&str> =
        cert["dual_control"]["approvals"].as_array().unwrap().iter().map(|a| a["officer"].as_str().unwrap()).collect();
    assert_eq!(approvers, ["alice", "bob"]);
    let wiped: Vec<&str> = cert["wiped"].as_array().unwrap().iter().map(|w| w.as_str().unwrap()).collect();
    for gone in [
        data.join("store/keyd.redb"),
        data.join("store/gateway.redb"),
        data.join("credentials/hsm-pin"),
        cfg.tls.public.key.clone(),
    ] {
        assert!(!gone.exists(), "{} still there", gone.display());
        assert!(wiped.contains(&gone.to_str().unwrap()), "{} not in the certificate", gone.display());
    }
    let sig = std::path::PathBuf::from(format!("{}.sig", cert_path.display()));
    assert!(common::openssl_sm2_verifies(Path::new(&file("alice", "pub.pem")), &sig, &cert_path, "vbank-decommission"));
}
