//! keyd's PKCS#11 connection against a real SoftHSM2 token created in a temp dir.
//!
//! One test function: a PKCS#11 module may be initialized only once per process (cryptoki#260), and
//! SOFTHSM2_CONF is read at that moment.

// set_var is unsafe in edition 2024; this binary runs one test, which sets it before any other thread exists.
#![allow(unsafe_code)]

use std::path::Path;
use std::process::Command;

use vbank_keyd::{Hsm, KeydError};

const MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";

fn make_token(dir: &Path, label: &str, pin: &str) {
    std::fs::create_dir_all(dir.join("tokens")).unwrap();
    let conf = dir.join("softhsm2.conf");
    std::fs::write(&conf, format!("directories.tokendir = {}/tokens\nobjectstore.backend = file\n", dir.display()))
        .unwrap();
    unsafe { std::env::set_var("SOFTHSM2_CONF", &conf) };
    let out = Command::new("softhsm2-util")
        .args(["--init-token", "--free", "--label", label, "--pin", pin, "--so-pin", "5678"])
        .output()
        .expect("softhsm2-util (Debian softhsm2; tests/run.sh installs it)");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn login_status_and_clear_failures() {
    let dir = tempfile::tempdir().unwrap();
    make_token(dir.path(), "vbank-test", "246810");
    let module = Path::new(MODULE);

    let missing = Hsm::load_module(Path::new("/nonexistent/libp11.so")).unwrap_err();
    assert!(matches!(missing, KeydError::Module { .. }));
    assert!(missing.to_string().contains("[hsm] module"), "{missing}");

    let ctx = Hsm::load_module(module).unwrap();

    let e = Hsm::new(ctx.clone(), module, "no-such-token", "softhsm", "246810").ensure_session().unwrap_err();
    match &e {
        KeydError::TokenNotFound { seen, .. } => {
            assert!(seen.contains(&"vbank-test".to_string()), "{e}")
        }
        other => panic!("{other}"),
    }

    let e = Hsm::new(ctx.clone(), module, "vbank-test", "softhsm", "000000").ensure_session().unwrap_err();
    assert!(matches!(e, KeydError::PinIncorrect), "{e}");
    assert!(!e.to_string().contains("000000"), "the PIN never appears in an error");

    let hsm = Hsm::new(ctx, module, "vbank-test", "softhsm", "246810");
    hsm.ensure_session().unwrap();
    let st = hsm.status().unwrap();
    assert_eq!(st.token_label, "vbank-test");
    assert!(st.library.contains("SoftHSM"), "{st:?}");
    assert!(st.logged_in);
    // A second check reuses the session.
    hsm.ensure_session().unwrap();
}
