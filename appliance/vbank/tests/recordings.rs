//! `vbank recordings verify|recover` on recordings written by the recorder core: a sealed recording verifies with
//! vbank and with stock OpenSSL, a changed byte is named, and a writer killed with SIGKILL mid-recording leaves a
//! recording that `recover` closes with at most the torn record lost and the gap listed.

mod common;

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use vbank_crypto::SecretBytes;
use vbank_crypto::aead::AeadAlg;
use vbank_crypto::sm2sig::Sm2PrivateKey;
use vbank_recorder::format::{DataKey, RecordKind};
use vbank_recorder::recording::{Recording, RecordingHeader};
use vbank_recorder::segmenter::Policy;

fn vbank(args: &[&str]) -> Output {
    Command::new(common::VBANK).args(args).output().unwrap()
}

fn now_us() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_micros() as u64
}

fn start(root: &Path) -> (Recording, u32, u32) {
    let key = DataKey { id: "dek-e2e".into(), alg: AeadAlg::Sm4Gcm, key: SecretBytes::random(16).unwrap() };
    let header = RecordingHeader::new("rec-e2e", "room-e2e", &key, "00", now_us());
    let policy = Policy { roll_every: Duration::from_secs(1), ..Policy::default() };
    let mut r = Recording::create(root, header, key, policy).unwrap();
    let audio = r.add_track("customer/microphone", "audio").unwrap();
    let video = r.add_track("customer/camera", "video").unwrap();
    (r, audio, video)
}

/// Record 20 ms of audio and video per step, in real time, for `steps` steps (or forever).
fn record(r: &mut Recording, audio: u32, video: u32, steps: Option<u64>) {
    let t0 = Instant::now();
    let mut i = 0u64;
    while steps.is_none_or(|n| i < n) {
        let at = t0 + Duration::from_millis(i * 20);
        std::thread::sleep(at.saturating_duration_since(Instant::now()));
        r.packet(audio, at, now_us(), RecordKind::Rtp, &[0x11; 80]).unwrap();
        r.packet(video, at, now_us(), RecordKind::Rtp, &[0x22; 1000]).unwrap();
        r.tick(at).unwrap();
        i += 1;
    }
}

/// The writer a parent test kills: records into VBANK_TEST_RECORDING until it is killed.
#[test]
#[ignore = "run by a_writer_killed_mid_recording_leaves_a_recording_that_recovers"]
fn writer_child() {
    let Ok(root) = std::env::var("VBANK_TEST_RECORDING") else { return };
    let (mut r, audio, video) = start(Path::new(&root));
    record(&mut r, audio, video, None);
}

#[test]
fn a_sealed_recording_verifies_with_vbank_and_openssl_and_a_changed_byte_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("rec");
    let (mut r, audio, video) = start(&root);
    record(&mut r, audio, video, Some(120));
    let m = r.finish(now_us()).unwrap();
    assert!(m.segments.len() >= 4, "2.4 s at a 1 s roll: {} segments", m.segments.len());

    // keyd seals manifests with the evidence-seal key (SM2, ID vbank-evidence); a software SM2 key stands in here.
    let seal_key = Sm2PrivateKey::generate().unwrap();
    let manifest = std::fs::read(root.join("manifest.json")).unwrap();
    std::fs::write(root.join("manifest.sig"), seal_key.sign_der("vbank-evidence", &manifest).unwrap()).unwrap();
    let pem = tmp.path().join("evidence-seal.pem");
    std::fs::write(&pem, seal_key.public_key().to_pem()).unwrap();

    let out = vbank(&["recordings", "verify", root.to_str().unwrap(), "--public-key", pem.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("rec-e2e: OK") && text.contains("seal verified"), "{text}");

    assert!(common::openssl_sm2_verifies(
        &pem,
        &root.join("manifest.sig"),
        &root.join("manifest.json"),
        "vbank-evidence"
    ));

    // One byte of the video track's second segment.
    let seg = root.join("tracks/1/000001.seg");
    let mut b = std::fs::read(&seg).unwrap();
    let mid = b.len() / 2;
    b[mid] ^= 0x40;
    std::fs::write(&seg, b).unwrap();
    let out = vbank(&["--json", "recordings", "verify", root.to_str().unwrap(), "--public-key", pem.to_str().unwrap()]);
    assert!(!out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["ok"], false);
    assert!(v["problems"][0].as_str().unwrap().starts_with("track 1 segment 1: content changed"), "{v}");

    // A changed manifest fails its seal even when its own hashes are made consistent.
    let mut changed = manifest.clone();
    let pos = changed.windows(7).position(|w| w == b"rec-e2e").unwrap();
    changed[pos + 6] = b'X';
    std::fs::write(root.join("manifest.json"), changed).unwrap();
    let out = vbank(&["recordings", "verify", root.to_str().unwrap(), "--public-key", pem.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("seal does not verify"));
}

#[test]
fn a_writer_killed_mid_recording_leaves_a_recording_that_recovers() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("rec");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--ignored", "--exact", "writer_child", "--nocapture"])
        .env("VBANK_TEST_RECORDING", &root)
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(2500));
    let killed_at = now_us();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGKILL).unwrap();
    child.wait().unwrap();
    assert!(root.join("tracks/0").read_dir().unwrap().any(|e| e.unwrap().path().extension().unwrap() == "open"));

    let out = vbank(&["recordings", "verify", root.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("recover"), "{out:?}");

    let out = vbank(&["--json", "recordings", "recover", root.to_str().unwrap(), "--reason", "recorder killed"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = vbank(&["--json", "recordings", "verify", root.to_str().unwrap()]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["ok"], true, "{v}");
    let gaps = v["gaps"].as_array().unwrap();
    assert_eq!(gaps.len(), 2, "{v}");
    for g in gaps {
        let lost_before_kill = killed_at.saturating_sub(g["from_us"].as_u64().unwrap());
        assert!(lost_before_kill < 1_000_000, "the last kept packet is {lost_before_kill} µs before the kill");
        assert_eq!(g["reason"], "recorder killed");
    }
}
