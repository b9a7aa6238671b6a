//! `vbank bench gateway` end to end at the smallest load: both SFUs (vbank's gateway on a development node, and
//! Debian's Janus) carry one 1:1 call from the str0m load generator with nothing lost, and the ratio is printed. The
//! figures themselves are not asserted: this machine is shared and noisy, and the numbers belong in the README.

mod common;

use std::process::Command;

#[test]
fn the_gateway_benchmark_runs_against_janus_and_loses_nothing() {
    let out = Command::new(common::VBANK)
        .args(["--json", "bench", "gateway", "--calls", "1", "--seconds", "1", "--rounds", "1"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    let results = v["results"].as_array().unwrap();
    assert_eq!(results.len(), 2);
    assert!(results[1]["sfu"].as_str().unwrap().starts_with("Janus 1."), "{v}");
    for r in results {
        assert!(r["units_sent"].as_u64().unwrap() > 100, "{r}");
        assert_eq!(r["units_lost"], 0, "{r}");
        assert!(r["forwarded_pps"].as_f64().unwrap() > 100.0, "{r}");
    }
    assert!(v["packets_per_cpu_second_ratio"].as_f64().unwrap() > 0.0, "{v}");
}
