//! `vbank backup` against a running `vbank up` and real restic, and `vbank drill backup-restore` end to end: the
//! report's seal checked by vbank and by stock OpenSSL.

mod common;

use std::process::{Command, Output, Stdio};

use common::{StopOnDrop, VBANK, free_ports, ok_json_at as ok_json, vbank_at as vbank};
use serde_json::Value;

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn backup_create_verify_restore_and_what_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let (public, base) = free_ports();
    let _up = StopOnDrop(common::spawn_up(&data, public, base, Stdio::null()).0);
    let config = data.join("vbank.toml");

    let out = vbank(&config, &["backup", "list"]);
    assert!(!out.status.success() && stderr(&out).contains("[backup] password is not set"), "{}", stderr(&out));

    let (repo, pw) = (tmp.path().join("repo"), tmp.path().join("pw"));
    std::fs::write(&pw, "correct horse battery staple\n").unwrap();
    let mut text = std::fs::read_to_string(&config).unwrap();
    let prom = tmp.path().join("textfile/vbank_backup.prom");
    std::fs::create_dir_all(prom.parent().unwrap()).unwrap();
    text.push_str(&format!(
        "\n[backup]\nrepository = \"{}\"\npassword = \"file:{}\"\nmetrics_file = \"{}\"\n",
        repo.display(),
        pw.display(),
        prom.display()
    ));
    std::fs::write(&config, text).unwrap();

    let mut add = Command::new(VBANK)
        .arg("--config")
        .arg(&config)
        .args(["accounts", "add", "li-si", "--business", "loan-signing"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    use std::io::Write as _;
    add.stdin.take().unwrap().write_all(b"Backup-Test-Pass-1!\n").unwrap();
    assert!(add.wait().unwrap().success());

    let created = ok_json(&config, &["backup", "create"]);
    assert_eq!(created["repository_created"], true, "{created}");
    let stores = created["stores"].as_str().unwrap();
    assert!(stores.contains("gateway (") && stores.contains("keyd (") && stores.contains("admin-listener"), "{stores}");
    let id = created["snapshot"].as_str().unwrap().to_string();
    let figures = std::fs::read_to_string(&prom).unwrap();
    assert!(figures.contains("vbank_backup_last_success_timestamp_seconds{node="), "{figures}");
    let listed = ok_json(&config, &["backup", "list"]);
    assert_eq!(listed.as_array().unwrap().len(), 1);
    assert_eq!(listed[0]["id"], id.as_str());

    let verified = ok_json(&config, &["backup", "verify", &id[..8]]);
    assert_eq!(verified["ok"], true, "{verified}");
    assert!(verified["stores"].as_array().unwrap().iter().all(|s| s["reimported_byte_identical"] == true));

    // What restic holds: the manifest, the exports, configuration and certificates; never a private key.
    let plain = tmp.path().join("plain");
    let out = Command::new("restic")
        .args(["--no-cache", "--repo"])
        .arg(&repo)
        .arg("--password-file")
        .arg(&pw)
        .args(["restore", "latest", "--target"])
        .arg(&plain)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let mut seen = 0;
    let mut stack = vec![plain.clone()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            seen += 1;
            let bytes = std::fs::read(&p).unwrap();
            assert!(!String::from_utf8_lossy(&bytes).contains("PRIVATE KEY"), "a private key in the backup: {p:?}");
            assert!(!String::from_utf8_lossy(&bytes).contains("Backup-Test-Pass"), "a password in the backup: {p:?}");
        }
    }
    assert!(seen >= 5, "{seen} files");

    // Restoring under a running service is refused, naming the fix.
    let out = vbank(&config, &["backup", "restore", "latest"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("is running") && stderr(&out).contains("systemctl stop"), "{}", stderr(&out));

    // A damaged repository fails verification.
    let data_dir = repo.join("data");
    let pack = std::fs::read_dir(&data_dir)
        .unwrap()
        .flat_map(|d| std::fs::read_dir(d.unwrap().path()).unwrap())
        .map(|f| f.unwrap().path())
        .max_by_key(|p| std::fs::metadata(p).unwrap().len())
        .unwrap();
    let mut bytes = std::fs::read(&pack).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&pack, bytes).unwrap();
    let out = vbank(&config, &["backup", "verify"]);
    assert!(!out.status.success() && stderr(&out).contains("restic check failed"), "{}", stderr(&out));
    let figures = std::fs::read_to_string(&prom).unwrap();
    assert!(figures.contains("vbank_backup_last_verify_failure_timestamp_seconds{node="), "{figures}");
    assert!(figures.contains("vbank_backup_last_verify_success_timestamp_seconds{node="), "{figures}");
}

#[test]
fn drill_backup_restore_passes_with_a_sealed_report() {
    let tmp = tempfile::tempdir().unwrap();
    let none = tmp.path().join("unused.toml");
    let out = vbank(&none, &["hsm", "officer-keygen", "--name", "duty-officer", "--out", tmp.path().to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let (key, public) = (tmp.path().join("duty-officer.key"), tmp.path().join("duty-officer.pub.pem"));
    let reports = tmp.path().join("reports");

    let out = vbank(&none, &["drill", "run", "no-such-drill", "--signer-key", "k", "--signer", "x"]);
    assert!(!out.status.success() && stderr(&out).contains("vbank drill list"), "{}", stderr(&out));

    let out = Command::new(VBANK)
        .args(["--json", "drill", "run", "backup-restore", "--time-limit", "600", "--signer", "duty-officer"])
        .arg("--signer-key")
        .arg(&key)
        .arg("--report-dir")
        .arg(&reports)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let result: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(result["passed"], true, "{result}");
    let report = std::path::PathBuf::from(result["report"].as_str().unwrap());
    let r: Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    let objective =
        |name: &str| r["objectives"].as_array().unwrap().iter().find(|o| o["name"] == name).unwrap().clone();
    assert_eq!(objective("backup round trip")["met"], true, "{r}");
    assert!(objective("backup round trip")["measured"].as_str().unwrap().starts_with("byte-identical"));
    assert_eq!(objective("accounts after the restore")["measured"], "12 of 12");
    assert!(objective("time to service (RTO)")["value"].as_f64().unwrap() > 0.0);
    assert!(report.with_extension("md").exists());

    let sig = std::path::PathBuf::from(format!("{}.sig", report.display()));
    assert!(common::openssl_sm2_verifies(&public, &sig, &report, "vbank-drill-report"));
    let v = ok_json(&none, &["drill", "verify", report.to_str().unwrap(), "--public-key", public.to_str().unwrap()]);
    assert_eq!((v["seal"].as_str(), v["passed"].as_bool()), (Some("valid"), Some(true)), "{v}");

    let text = std::fs::read_to_string(&report).unwrap().replace("12 of 12\"", "11 of 12\"");
    std::fs::write(&report, text).unwrap();
    let out = vbank(&none, &["drill", "verify", report.to_str().unwrap(), "--public-key", public.to_str().unwrap()]);
    assert!(!out.status.success() && stderr(&out).contains("does not match"), "{}", stderr(&out));
}
