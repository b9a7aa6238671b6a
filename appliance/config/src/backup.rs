//! `[backup]`: where `vbank backup` keeps its restic repository, the repository's password, and retention.

use std::path::PathBuf;

use crate::SecretRef;
use crate::reader::Section;
use crate::schema::secret;

/// `[backup]`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupConfig {
    /// The restic repository: an absolute path (a mounted backup volume) or a restic URL (`sftp:…`, `s3:…`,
    /// `rest:…`).
    pub repository: String,
    /// The repository's password (a systemd credential or a root-only file); required by every `vbank backup`
    /// command.
    pub password: Option<SecretRef>,
    /// Where a backup is assembled before restic reads it (erased afterwards).
    pub staging_dir: PathBuf,
    /// Daily snapshots kept by `vbank backup create --prune`.
    pub keep_daily: u32,
    /// Weekly snapshots kept.
    pub keep_weekly: u32,
    /// Monthly snapshots kept.
    pub keep_monthly: u32,
    /// node_exporter's textfile-collector file for the `vbank_backup_*` figures (written only when its directory
    /// exists).
    pub metrics_file: PathBuf,
}

const REPO_HINT: &str =
    "write an absolute path such as \"/srv/backup/vbank\" or a restic URL such as \"sftp:backup@10.0.0.9:/vbank\"";

pub(crate) fn read_backup(s: &Section<'_, '_>, data_dir: &std::path::Path) -> BackupConfig {
    let repository = s.string("repository", "/var/backups/vbank", REPO_HINT);
    let is_url = ["sftp:", "s3:", "rest:", "swift:", "b2:", "azure:", "gs:", "rclone:"]
        .iter()
        .any(|scheme| repository.starts_with(scheme));
    if !is_url && !repository.starts_with('/') {
        s.error("repository", None, format!("{repository:?} is neither an absolute path nor a restic URL"), REPO_HINT);
    }
    let cfg = BackupConfig {
        repository,
        password: secret(s, "password"),
        staging_dir: crate::schema::path_in(s, "staging_dir", data_dir.join("backup-staging")),
        keep_daily: s.integer("keep_daily", 7, 0, 3650) as u32,
        keep_weekly: s.integer("keep_weekly", 5, 0, 520) as u32,
        keep_monthly: s.integer("keep_monthly", 12, 0, 1200) as u32,
        metrics_file: crate::schema::path_in(
            s,
            "metrics_file",
            PathBuf::from("/var/lib/prometheus/node-exporter/vbank_backup.prom"),
        ),
    };
    s.finish();
    cfg
}
