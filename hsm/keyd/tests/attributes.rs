//! keyd refuses to work with a registered key whose HSM attributes are wrong. pkcs11-tool plants an extractable,
//! non-sensitive AES key under a label keyd has on record; the start-up check must name it.
//! One test function: a PKCS#11 module is initialized once per process and SOFTHSM2_CONF is read then.

// set_var is unsafe in edition 2024; this binary runs one test, which sets it before any other thread exists.
#![allow(unsafe_code)]

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use vbank_crypto::sm2sig::Sm2PrivateKey;
use vbank_crypto::to_hex;
use vbank_hsm::{KeyAlg, KeyBackend, KeyLabel, Pkcs11Backend, Profile, Purpose};
use vbank_keyd::KeydError;
use vbank_keyd::approvals::ceremony_message;
use vbank_keyd::ceremony::{OfficerIn, Witness};
use vbank_keyd::keys::{KeyRecord, KeyService, KeyState};
use vbank_store::{Expect, RedbStore, Store, Table};

const MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";
const PIN: &str = "424242";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_extractable_kek_on_record_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("tokens")).unwrap();
    let conf = dir.path().join("softhsm2.conf");
    std::fs::write(&conf, format!("directories.tokendir = {}/tokens\n", dir.path().display())).unwrap();
    unsafe { std::env::set_var("SOFTHSM2_CONF", &conf) };
    let init = Command::new("softhsm2-util")
        .args(["--init-token", "--free", "--label", "at", "--pin", PIN, "--so-pin", "13579"])
        .output()
        .unwrap();
    assert!(init.status.success(), "{}", String::from_utf8_lossy(&init.stderr));

    let backend: Arc<dyn KeyBackend> = Arc::new(Pkcs11Backend::new(
        vbank_hsm::load_module(Path::new(MODULE)).unwrap(),
        Path::new(MODULE),
        "at",
        PIN,
        Profile::builtin("softhsm").unwrap(),
    ));
    let store: Arc<dyn Store> = Arc::new(RedbStore::open(&dir.path().join("keyd.redb")).unwrap());
    let keys = KeyService::new(backend, store.clone()).await.unwrap();

    let a = Sm2PrivateKey::generate().unwrap();
    let b = Sm2PrivateKey::generate().unwrap();
    let officers = vec![
        OfficerIn { name: "a".into(), public_pem: a.public_key().to_pem() },
        OfficerIn { name: "b".into(), public_pem: b.public_key().to_pem() },
    ];
    let msg = ceremony_message("at", &["a".to_string(), "b".to_string()]);
    let witnesses = vec![
        Witness { officer: "a".into(), signature: to_hex(&a.sign_der("a", &msg).unwrap()) },
        Witness { officer: "b".into(), signature: to_hex(&b.sign_der("b", &msg).unwrap()) },
    ];
    keys.ceremony("at", &officers, &witnesses, 2).await.unwrap();
    keys.check_attributes().await.unwrap();

    // A key made outside keyd, readable in plaintext, under a label keyd is told is its backup KEK v2.
    let out = Command::new("pkcs11-tool")
        .args([
            "--module",
            MODULE,
            "--token-label",
            "at",
            "--login",
            "--pin",
            PIN,
            "--keygen",
            "--key-type",
            "AES:32",
            "--label",
            "vbank/backup/v2",
            "--extractable",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let planted = KeyRecord {
        label: KeyLabel::new(Purpose::Backup, 2),
        alg: KeyAlg::Aes256,
        state: KeyState::Active,
        location: "hsm".into(),
        created: "2026-01-01T00:00:00Z".into(),
        changed: "2026-01-01T00:00:00Z".into(),
        kcv: None,
    };
    store.put(Table::Keys, "vbank/backup/v2", &serde_json::to_vec(&planted).unwrap(), Expect::Absent).await.unwrap();

    let e = keys.check_attributes().await.unwrap_err();
    assert!(matches!(e, KeydError::Refused(_)), "{e}");
    let text = e.to_string();
    assert!(text.contains("vbank/backup/v2") && text.contains("extractable"), "{text}");
    assert_eq!(e.exit_code(), vbank_service::exit::CONFIG, "keyd stops rather than serve with it");
}
