//! The PKCS#11 backend against a real SoftHSM2 token made in a temp dir, cross-checked with OpenSC's pkcs11-tool.
//! One test function: a module is initialized once per process (cryptoki#260) and SOFTHSM2_CONF is read then.

// set_var is unsafe in edition 2024; this binary runs one test, which sets it before any other thread exists.
#![allow(unsafe_code)]

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use vbank_crypto::hash::sha256;
use vbank_crypto::p256sig::P256PublicKey;
use vbank_hsm::{HsmError, KeyAlg, KeyBackend, KeyLabel, Pkcs11Backend, Profile, Purpose, load_module};

const MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";
const PIN: &str = "135790";

fn token(dir: &Path) {
    std::fs::create_dir_all(dir.join("tokens")).unwrap();
    let conf = dir.join("softhsm2.conf");
    std::fs::write(&conf, format!("directories.tokendir = {}/tokens\nobjectstore.backend = file\n", dir.display()))
        .unwrap();
    unsafe { std::env::set_var("SOFTHSM2_CONF", &conf) };
    let out = Command::new("softhsm2-util")
        .args(["--init-token", "--free", "--label", "kt", "--pin", PIN, "--so-pin", "975310"])
        .output()
        .expect("softhsm2-util (Debian softhsm2)");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

fn pkcs11_tool_objects() -> String {
    let out = Command::new("pkcs11-tool")
        .args(["--module", MODULE, "--token-label", "kt", "--login", "--pin", PIN, "--list-objects"])
        .output()
        .expect("pkcs11-tool (Debian opensc)");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The lines pkcs11-tool prints for the object of `kind` (e.g. "Secret Key Object") labelled `label`: a block is a
/// header line ("… Object; …") followed by its indented lines.
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

#[test]
fn key_hierarchy_on_softhsm() {
    let dir = tempfile::tempdir().unwrap();
    token(dir.path());
    let ctx = load_module(Path::new(MODULE)).unwrap();

    // A wrong PIN is refused, remembered, and never retried against the token. (First: PKCS#11 login state is per
    // process, so once the right PIN has logged in, every session of this process is logged in.)
    let wrong =
        Pkcs11Backend::new(ctx.clone(), Path::new(MODULE), "kt", "000000", Profile::builtin("softhsm").unwrap());
    assert_eq!(wrong.status().unwrap_err(), HsmError::PinIncorrect);
    assert_eq!(wrong.random(8).unwrap_err(), HsmError::PinIncorrect);
    assert!(!format!("{:?}", wrong.status()).contains("000000"));
    let hsm = Pkcs11Backend::new(ctx, Path::new(MODULE), "kt", PIN, Profile::builtin("softhsm").unwrap());

    let st = hsm.status().unwrap();
    assert!(st.mechanisms.contains(&"aes-wrap-pad".to_string()) && st.mechanisms.contains(&"ecdsa".to_string()));
    assert!(st.library.contains("SoftHSM"), "{st:?}");

    // KEKs: sensitive, never extractable; one label one key.
    let v1 = KeyLabel::new(Purpose::Recording, 1);
    let info = hsm.create_kek(v1, KeyAlg::Aes256).unwrap();
    assert!(info.sensitive && !info.extractable && info.never_extractable, "{info:?}");
    assert!(matches!(hsm.create_kek(v1, KeyAlg::Aes256), Err(HsmError::Exists(_))));
    assert!(matches!(hsm.create_kek(KeyLabel::new(Purpose::Media, 1), KeyAlg::Sm4), Err(HsmError::Unsupported { .. })));

    // Wrap and unwrap a data key with its binding; tampering is caught.
    let dek = hsm.random(64).unwrap();
    let wrapped = hsm.wrap(v1, dek.expose()).unwrap();
    assert_eq!(hsm.unwrap(v1, &wrapped).unwrap(), dek);
    let mut bad = wrapped.clone();
    bad[10] ^= 0x01;
    assert_eq!(hsm.unwrap(v1, &bad).unwrap_err(), HsmError::Tampered);
    assert_eq!(hsm.unwrap(v1, &wrapped[..wrapped.len() - 8]).unwrap_err(), HsmError::Tampered);

    // Rotate and rewrap inside the HSM; the old KEK no longer opens the new wrap.
    let v2 = KeyLabel::new(Purpose::Recording, 2);
    hsm.create_kek(v2, KeyAlg::Aes256).unwrap();
    let rewrapped = hsm.rewrap(v1, v2, &wrapped).unwrap();
    assert_ne!(rewrapped, wrapped);
    assert_eq!(hsm.unwrap(v2, &rewrapped).unwrap(), dek);
    assert_eq!(hsm.unwrap(v1, &rewrapped).unwrap_err(), HsmError::Tampered);

    // P-256 signing in the HSM, verified in software from the exported public key.
    let seal = KeyLabel::new(Purpose::AuditSeal, 1);
    let sk = hsm.create_p256(seal).unwrap();
    assert!(sk.sensitive && sk.never_extractable && !sk.extractable);
    let digest = sha256(b"audit head");
    let sig = hsm.sign_p256(seal, &digest).unwrap();
    let pk = P256PublicKey::from_sec1(&hsm.public_point(seal).unwrap()).unwrap();
    pk.verify_prehash(&digest, &sig).unwrap();
    assert!(pk.verify_prehash(&sha256(b"other"), &sig).is_err());
    assert!(pk.to_pem().starts_with("-----BEGIN PUBLIC KEY-----"));

    // Data objects for wrapped software keys.
    let ev = KeyLabel::new(Purpose::EvidenceSeal, 1);
    hsm.put_data(ev, "sm2-wrapped", b"blob").unwrap();
    assert_eq!(hsm.get_data(ev, "sm2-wrapped").unwrap(), b"blob");
    assert!(matches!(hsm.put_data(ev, "sm2-wrapped", b"again"), Err(HsmError::Exists(_))));

    // OpenSC's view of the same token agrees on the KEK's protection.
    let listing = pkcs11_tool_objects();
    let kek_block = object_block(&listing, "Secret Key Object", "vbank/recording/v2").expect("KEK listed");
    assert!(kek_block.contains("Access:     sensitive, always sensitive, never extractable"), "{kek_block}");
    assert!(kek_block.contains("Usage:      wrap, unwrap"), "{kek_block}");
    let seal_block = object_block(&listing, "Private Key Object", "vbank/audit-seal/v1").expect("seal key listed");
    assert!(seal_block.contains("never extractable"), "{seal_block}");

    // Destroy a version: its wraps can no longer be opened.
    assert_eq!(hsm.destroy(v1).unwrap(), 1);
    assert!(matches!(hsm.unwrap(v1, &wrapped), Err(HsmError::NotFound(_))));
    assert!(hsm.list().unwrap().iter().all(|k| k.label != v1));

    // The token vanishing: requests fail fast, and work again when it returns.
    let tokens = dir.path().join("tokens");
    let away = dir.path().join("tokens-away");
    std::fs::rename(&tokens, &away).unwrap();
    let t = Instant::now();
    let outage = hsm.unwrap(v2, &rewrapped);
    assert!(matches!(outage, Err(HsmError::Unavailable(_))), "{outage:?}");
    assert!(t.elapsed() < Duration::from_secs(2), "fails fast, not after a timeout");
    std::fs::rename(&away, &tokens).unwrap();
    let mut recovered = false;
    for _ in 0..20 {
        if hsm.unwrap(v2, &rewrapped).ok().as_ref() == Some(&dek) {
            recovered = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(recovered, "the backend recovers by itself when the token returns");
}
