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
