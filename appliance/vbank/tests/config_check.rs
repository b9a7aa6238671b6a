//! `vbank config check` as an operator runs it.

mod common;

use std::process::Command;

use common::VBANK;

const BROKEN: &str = r#"[node]
name = "a"
dat_dir = "/var/lib/vbank"

[gateway]
listen = "0.0.0.0:99999"

[hsm]
pin = "123456"
"#;

#[test]
fn prints_every_error_with_key_line_and_hint() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("vbank.toml");
    std::fs::write(&path, BROKEN).unwrap();
    let out = Command::new(VBANK).args(["config", "check"]).arg(&path).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("3 error(s)"), "{text}");
    assert!(text.contains("line 3: error: node.dat_dir: unknown key (hint: did you mean `data_dir`?"), "{text}");
    assert!(text.contains("line 6: error: gateway.listen"), "{text}");
    assert!(text.contains("line 9: error: hsm.pin"), "{text}");
    assert!(!text.contains("123456"), "a secret written in place is never echoed");
}

#[test]
fn json_output_is_machine_readable() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("vbank.toml");
    std::fs::write(&path, BROKEN).unwrap();
    let out = Command::new(VBANK).args(["config", "check", "--json", "--config"]).arg(&path).output().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["ok"], false);
    assert_eq!(v["errors"], 3);
    let lines: Vec<u64> = v["diagnostics"].as_array().unwrap().iter().map(|d| d["line"].as_u64().unwrap()).collect();
    assert_eq!(lines, [3, 6, 9]);
}

#[test]
fn a_missing_file_names_the_fix() {
    let out = Command::new(VBANK).args(["config", "check", "/nonexistent/vbank.toml"]).output().unwrap();
    assert_eq!(out.status.code(), Some(78));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--config"));
}

/// Certificates from `openssl x509 -req` without extensions are X.509 v1, which rustls refuses: the check says so
/// before a service fails to start, and passes once they are v3 with their names.
#[test]
fn certificates_the_services_would_refuse_are_found_by_the_check() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let tls = dir.join("tls");
    std::fs::create_dir(&tls).unwrap();
    let openssl = |args: &[&str]| {
        let out = Command::new("openssl").args(args).current_dir(&tls).output().unwrap();
        assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];
    openssl(
        &[&["req", "-x509"][..], &ec, &["-days", "2", "-subj", "/CN=CA", "-keyout", "ca.key", "-out", "ca.crt"]]
            .concat(),
    );
    let issue = |v3: bool| {
        for name in ["public", "gateway", "keyd", "recorder", "kyc", "cli"] {
            let (key, csr, crt) = (format!("{name}.key"), format!("{name}.csr"), format!("{name}.crt"));
            let cn = format!("/CN={name}.vbank.internal");
            openssl(&[&["req", "-new"][..], &ec, &["-subj", &cn, "-keyout", &key, "-out", &csr]].concat());
            let ext = format!("subjectAltName=DNS:{name}.vbank.internal");
            std::fs::write(tls.join("ext.cnf"), &ext).unwrap();
            let mut args =
                vec!["x509", "-req", "-in", &csr, "-CA", "ca.crt", "-CAkey", "ca.key", "-days", "2", "-out", &crt];
            if v3 {
                args.extend(["-extfile", "ext.cnf"]);
            }
            openssl(&args);
        }
    };
    let pin = dir.join("pin");
    std::fs::write(&pin, "1234").unwrap();
    std::fs::set_permissions(&pin, std::os::unix::fs::PermissionsExt::from_mode(0o400)).unwrap();
    let path = dir.join("vbank.toml");
    let config = format!(
        "[node]\nname = \"a\"\ndata_dir = \"{}\"\n\n[tls]\ndir = \"{}\"\n\n[hsm]\nmodule = \"/usr/lib/softhsm/libsofthsm2.so\"\npin = \"file:{}\"\n",
        dir.join("data").display(),
        tls.display(),
        pin.display()
    );
    std::fs::write(&path, config).unwrap();

    issue(false);
    let out = Command::new(VBANK).args(["config", "check"]).arg(&path).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("6 error(s)"), "{text}");
    assert!(text.contains("error: tls.gateway: rustls refuses the certificate or key"), "{text}");
    assert!(text.contains("UnsupportedCertVersion"), "{text}");
    assert!(text.contains("hint: issue X.509 v3 certificates"), "{text}");

    issue(true);
    let out = Command::new(VBANK).args(["config", "check"]).arg(&path).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
}
