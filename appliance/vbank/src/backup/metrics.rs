//! The backup's figures for Prometheus, through node_exporter's textfile collector (the usual way for a job that
//! is not a server): `vbank_backup_*` gauges in `[backup] metrics_file`, rewritten atomically after each run, so
//! the alert rules can say when backups stop succeeding or go unverified.

use std::collections::BTreeMap;
use std::path::Path;

const HELP: &[(&str, &str)] = &[
    ("vbank_backup_last_success_timestamp_seconds", "When the last backup succeeded"),
    ("vbank_backup_last_failure_timestamp_seconds", "When a backup last failed"),
    ("vbank_backup_last_duration_seconds", "How long the last successful backup took"),
    ("vbank_backup_last_bytes", "Bytes in the last successful backup"),
    ("vbank_backup_last_verify_success_timestamp_seconds", "When a backup last verified"),
    ("vbank_backup_last_verify_failure_timestamp_seconds", "When a verification last failed"),
];

/// Set `values` (metric name → value), keeping the file's other figures. Does nothing when the file's directory
/// does not exist (no node_exporter here); a write failure is logged, never fatal to the backup.
pub fn update(file: &Path, node: &str, values: &[(&str, f64)]) {
    let Some(dir) = file.parent().filter(|d| d.is_dir()) else { return };
    let mut current: BTreeMap<String, f64> = BTreeMap::new();
    if let Ok(text) = std::fs::read_to_string(file) {
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            if let (Some(name), Some(v)) = (line.split('{').next(), line.rsplit(' ').next())
                && let Ok(v) = v.parse()
            {
                current.insert(name.to_string(), v);
            }
        }
    }
    for (name, v) in values {
        current.insert((*name).to_string(), *v);
    }
    let mut out = String::new();
    for (name, help) in HELP {
        if let Some(v) = current.get(*name) {
            out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} gauge\n{name}{{node=\"{node}\"}} {v}\n"));
        }
    }
    let tmp = dir.join(format!(".{}.tmp", file.file_name().and_then(|n| n.to_str()).unwrap_or("vbank_backup.prom")));
    if let Err(e) = std::fs::write(&tmp, out).and_then(|()| std::fs::rename(&tmp, file)) {
        log::warn!("cannot write the backup metrics to {}: {e}", file.display());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_other_figures_and_writes_the_textfile_format() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("vbank_backup.prom");
        update(&f, "a", &[("vbank_backup_last_success_timestamp_seconds", 100.0), ("vbank_backup_last_bytes", 5.0)]);
        update(&f, "a", &[("vbank_backup_last_failure_timestamp_seconds", 200.0)]);
        let text = std::fs::read_to_string(&f).unwrap();
        assert!(text.contains("vbank_backup_last_success_timestamp_seconds{node=\"a\"} 100\n"), "{text}");
        assert!(text.contains("vbank_backup_last_failure_timestamp_seconds{node=\"a\"} 200\n"), "{text}");
        assert!(text.contains("# TYPE vbank_backup_last_bytes gauge\n"), "{text}");
        update(&d.path().join("missing/x.prom"), "a", &[("vbank_backup_last_bytes", 1.0)]);
        assert!(!d.path().join("missing").exists());
    }
}
