//! The drills beyond backup-restore (`tests/backup.rs`), one after another as an operator would run them: each
//! must meet every objective and leave a report whose seal verifies; what each objective measured is checked here
//! too, so a drill that stopped measuring would fail.

mod common;

use std::process::Command;

use common::VBANK;
use serde_json::Value;

fn run_drill(name: &str, key: &std::path::Path, reports: &std::path::Path) -> Value {
    let out = Command::new(VBANK)
        .args(["--json", "drill", "run", name, "--time-limit", "600", "--signer", "duty-officer", "--signer-key"])
        .arg(key)
        .arg("--report-dir")
        .arg(reports)
        .output()
        .unwrap();
    let said: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    assert!(out.status.success(), "drill {name}: {said}\n{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&std::fs::read(said["report"].as_str().unwrap()).unwrap()).unwrap()
}

fn objective<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["objectives"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["name"] == name)
        .unwrap_or_else(|| panic!("{name}: {report}"))
}

#[test]
fn key_compromise_hsm_outage_disk_full_recorder_crash_db_and_gateway_failover_drills_pass() {
    let tmp = tempfile::tempdir().unwrap();
    let out = Command::new(VBANK)
        .args(["hsm", "officer-keygen", "--name", "duty-officer", "--out"])
        .arg(tmp.path())
        .output()
        .unwrap();
    assert!(out.status.success());
    let key = tmp.path().join("duty-officer.key");
    let reports = tmp.path().join("reports");

    let r = run_drill("key-compromise", &key, &reports);
    assert_eq!(objective(&r, "data keys rewrapped under the new KEK version")["value"], 24.0, "{r}");
    assert!(
        objective(&r, "old KEK version destroyed in the HSM")["measured"]
            .as_str()
            .unwrap()
            .contains("pkcs11-tool: v1 absent, v2 present")
    );
    assert_eq!(objective(&r, "destruction under dual control")["value"], 2.0);
    assert_eq!(objective(&r, "old wrapped keys dead")["value"], 24.0);

    let r = run_drill("hsm-outage", &key, &reports);
    assert!(
        objective(&r, "key operations refused fast and clearly")["measured"]
            .as_str()
            .unwrap()
            .starts_with("503 hsm_unavailable")
    );
    assert_eq!(objective(&r, "no restart needed")["met"], true);
    assert_eq!(objective(&r, "keys issued before the outage still open")["value"], 8.0);

    let r = run_drill("disk-full", &key, &reports);
    assert!(
        objective(&r, "new calls refused, naming the disk and the fix")["measured"]
            .as_str()
            .unwrap()
            .contains("min_free_mb")
    );
    assert!(objective(&r, "recovered by itself")["value"].as_f64().unwrap() >= 0.0);

    let r = run_drill("recorder-crash", &key, &reports);
    let lost = objective(&r, "media lost on a recorder crash");
    let ms = lost["value"].as_f64().unwrap();
    assert!((0.0..=1000.0).contains(&ms), "{lost}");
    assert!(lost["measured"].as_str().unwrap().contains("over 2 track(s)"), "audio and video: {lost}");
    assert_eq!(objective(&r, "the call stays in one recording")["value"], 1.0);
    assert_eq!(objective(&r, "the recording is sealed and verifies")["met"], true);

    let r = run_drill("db-failover", &key, &reports);
    let rpo = objective(&r, "confirmed commits lost (RPO)");
    assert_eq!(rpo["value"], 0.0, "{r}");
    assert!(rpo["measured"].as_str().unwrap().starts_with("0 of "), "{rpo}");
    assert_eq!(objective(&r, "the synchronous standby took over, one leader")["met"], true);

    let r = run_drill("gateway-failover", &key, &reports);
    let cut = objective(&r, "interruption of the call");
    let ms = cut["value"].as_f64().unwrap();
    assert!((0.0..3000.0).contains(&ms), "{cut}");
    assert!(cut["measured"].as_str().unwrap().contains("a picture after"), "{cut}");
    assert_eq!(objective(&r, "the VIP moved to the surviving node")["measured"], "node-b");
    assert_eq!(objective(&r, "the call stays in one recording")["value"], 1.0);
    assert_eq!(objective(&r, "the recording is sealed and verifies")["met"], true);
    let gap = objective(&r, "the recording notes the failover's gap");
    assert!(gap["measured"].as_str().unwrap().contains("over 2 track(s)"), "audio and video: {gap}");
    assert!(objective(&r, "the audit log stays one chain across both nodes' keyd")["value"].as_f64().unwrap() > 5.0);

    let list = Command::new(VBANK).args(["--json", "drill", "list"]).output().unwrap();
    let names: Value = serde_json::from_slice(&list.stdout).unwrap();
    assert_eq!(names.as_array().unwrap().len(), 7, "{names}");
    assert_eq!(std::fs::read_dir(&reports).unwrap().count(), 18, "a JSON, a markdown and a seal per drill");
}
