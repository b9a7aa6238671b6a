//! The release bundle through the CLI, checked with the tools an auditor has: `vbank release keygen` and `build`,
//! `vbank verify-bundle` accepting it and refusing it under another key or altered; `tar`, `sha256sum -c` and
//! OpenSSL (`pkeyutl -verify`, SM2 with the `vbank-release` ID) agreeing with vbank on the same files. The systemd
//! units the bundle carries pass `systemd-analyze security --offline` at exposure ≤ 2.0, and its alert rules pass
//! `promtool` (syntax and their unit tests) and point at runbooks that exist.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::VBANK;
use serde_json::Value;

fn vbank(args: &[&str]) -> Output {
    Command::new(VBANK).args(args).output().expect("vbank runs")
}

fn ok(out: &Output) -> Value {
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("JSON")
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn a_bundle_verifies_with_vbank_sha256sum_and_openssl_and_an_altered_one_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let (keys, other) = (d.join("keys"), d.join("other"));
    std::fs::create_dir_all(&keys).unwrap();
    std::fs::create_dir_all(&other).unwrap();
    ok(&vbank(&["--json", "release", "keygen", "--out", path(&keys)]));
    ok(&vbank(&["--json", "release", "keygen", "--out", path(&other)]));
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(keys.join("release.key")).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600, "the release key is private");
    // A small stand-in binary keeps the test fast; the bundle's layout and checks are the same.
    std::fs::write(d.join("vbank-bin"), b"\x7fELF stand-in").unwrap();
    std::fs::write(d.join("module.wasm"), b"\0asm\x01\0\0\0").unwrap();
    let built = ok(&vbank(&[
        "--json",
        "release",
        "build",
        "--version",
        "1.0.0",
        "--key",
        path(&keys.join("release.key")),
        "--binary",
        path(&d.join("vbank-bin")),
        "--wasm",
        path(&d.join("module.wasm")),
        "--out",
        path(d),
    ]));
    let bundle = d.join("vbank-1.0.0.tar.gz");
    assert_eq!(built["bundle"], path(&bundle));
    let pinned = keys.join("release.pem");
    let v = ok(&vbank(&["--json", "verify-bundle", path(&bundle), "--key", path(&pinned)]));
    assert_eq!(v["top"], "vbank-1.0.0");
    for f in [
        "bin/vbank",
        "lib/vbank_sframe_wasm.wasm",
        "units/vbank-gateway.service",
        "units/vbank-backup.timer",
        "etc/vbank.toml.example",
        "prometheus/vbank-alerts.yml",
    ] {
        assert!(v["files"][f].is_string(), "{f} in {v}");
    }
    let runbooks = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../runbooks");
    for e in std::fs::read_dir(runbooks).unwrap() {
        let f = format!("runbooks/{}", e.unwrap().file_name().to_string_lossy());
        assert!(v["files"][&f].is_string(), "every runbook ships: {f} missing from the bundle");
    }

    // The same files, checked without vbank.
    let unpacked = d.join("unpacked");
    std::fs::create_dir_all(&unpacked).unwrap();
    let tar = Command::new("tar").args(["xzf", path(&bundle), "-C", path(&unpacked)]).status().unwrap();
    assert!(tar.success());
    let top = unpacked.join("vbank-1.0.0");
    let check = Command::new("sha256sum").args(["-c", "--quiet", "SHA256SUMS"]).current_dir(&top).output().unwrap();
    assert!(check.status.success(), "sha256sum -c: {}", String::from_utf8_lossy(&check.stdout));
    let (sums, sig) = (top.join("SHA256SUMS"), top.join("SHA256SUMS.sig"));
    assert!(common::openssl_sm2_verifies(&pinned, &sig, &sums, "vbank-release"), "OpenSSL verifies the signature");

    // Another key, an altered file, a truncated download: refused, with the reason.
    let refused = vbank(&["verify-bundle", path(&bundle), "--key", path(&other.join("release.pem"))]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("does not verify under the pinned release key"));
    std::fs::write(top.join("bin/vbank"), b"\x7fELF with a backdoor").unwrap();
    let repacked = d.join("vbank-1.0.0-altered.tar.gz");
    let tar =
        Command::new("tar").args(["czf", path(&repacked), "-C", path(&unpacked), "vbank-1.0.0"]).status().unwrap();
    assert!(tar.success());
    let altered = vbank(&["--json", "verify-bundle", path(&repacked), "--key", path(&pinned)]);
    assert!(!altered.status.success());
    let said: Value = serde_json::from_slice(&altered.stdout).unwrap();
    assert_eq!(said["ok"], false);
    assert!(said["error"].as_str().unwrap().contains("bin/vbank does not match its SHA-256"), "{said}");
    let bytes = std::fs::read(&bundle).unwrap();
    std::fs::write(d.join("cut.tar.gz"), &bytes[..bytes.len() / 2]).unwrap();
    assert!(!vbank(&["verify-bundle", path(&d.join("cut.tar.gz")), "--key", path(&pinned)]).status.success());
}

#[test]
fn every_unit_passes_the_systemd_analyze_security_gate() {
    let units = Path::new(env!("CARGO_MANIFEST_DIR")).join("dist/units");
    let mut seen = 0;
    for entry in std::fs::read_dir(&units).unwrap() {
        let unit = entry.unwrap().path();
        if unit.extension().is_some_and(|e| e == "timer") {
            continue;
        }
        let out = Command::new("systemd-analyze")
            .args(["security", "--offline=yes", "--threshold=20", "--no-pager"])
            .arg(&unit)
            .output()
            .expect("systemd-analyze (Debian's systemd)");
        let text = String::from_utf8_lossy(&out.stdout);
        let level = text.lines().rev().find(|l| l.contains("Overall exposure level")).unwrap_or_default().to_string();
        println!("{}: {level}", unit.display());
        assert!(
            out.status.success(),
            "{}: exposure above 2.0: {level}\n{}",
            unit.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        seen += 1;
    }
    assert_eq!(seen, 6, "a unit per service, and the backup and its check");
}

#[test]
fn alert_rules_pass_promtool_and_name_runbooks_that_exist() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("dist/prometheus");
    for args in [&["check", "rules", "vbank-alerts.yml"][..], &["test", "rules", "vbank-alerts.test.yml"][..]] {
        let out = Command::new("promtool").args(args).current_dir(&dir).output().expect("promtool (Debian prometheus)");
        assert!(
            out.status.success(),
            "promtool {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let rules = std::fs::read_to_string(dir.join("vbank-alerts.yml")).unwrap();
    let mut named = 0;
    for line in rules.lines().filter_map(|l| l.trim().strip_prefix("runbook: ")) {
        assert!(repo.join(line).is_file(), "an alert names {line}, which does not exist");
        named += 1;
    }
    assert!(named >= 10, "every alert names its runbook ({named})");
    // Every alert the runbooks index names exists in the rules.
    let index = std::fs::read_to_string(repo.join("runbooks/README.md")).unwrap();
    for word in index.split(|c: char| !c.is_ascii_alphanumeric()).filter(|w| w.starts_with("Vbank")) {
        assert!(rules.contains(&format!("alert: {word}\n")), "runbooks/README.md names {word}, not in the rules");
    }
}
