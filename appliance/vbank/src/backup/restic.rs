//! The restic command line (Debian's `restic`), as `vbank backup` uses it: the repository and its password file
//! from `[backup]`, JSON output, no cache (local and LAN repositories do not need one).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use anyhow::{Context as _, Result, bail};
use serde::Deserialize;

/// A repository and how to open it.
pub struct Restic {
    repo: String,
    password_file: PathBuf,
}

/// One snapshot, as `restic snapshots --json` lists it.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
pub struct SnapshotInfo {
    /// Full id.
    pub id: String,
    /// Short id.
    pub short_id: String,
    /// When it was taken (RFC 3339).
    pub time: String,
    /// The node.
    pub hostname: String,
    /// The absolute paths it holds (our staging directory).
    pub paths: Vec<String>,
    /// Tags (`vbank`, `vbank-<version>`).
    #[serde(default)]
    pub tags: Vec<String>,
}

impl Restic {
    /// From the configuration; the password reference must name a readable file.
    pub fn new(cfg: &vbank_config::BackupConfig) -> Result<Restic> {
        let Some(pw) = &cfg.password else {
            bail!(
                "[backup] password is not set (hint: put the repository password in a root-only file or a systemd \
                 credential and set password = \"file:/etc/vbank/credentials/backup\" or \"credential:backup\")"
            );
        };
        let password_file = pw.path().map_err(|e| anyhow::anyhow!("[backup] password: {e}"))?;
        std::fs::metadata(&password_file).with_context(|| {
            format!("[backup] password file {} (hint: create it, readable by root only)", password_file.display())
        })?;
        Ok(Restic { repo: cfg.repository.clone(), password_file })
    }

    fn command(&self) -> Command {
        let mut c = Command::new("restic");
        c.arg("--repo").arg(&self.repo).arg("--password-file").arg(&self.password_file).arg("--no-cache");
        c.env_remove("RESTIC_PASSWORD").env_remove("RESTIC_PASSWORD_COMMAND").env_remove("RESTIC_REPOSITORY");
        c
    }

    fn run(&self, what: &str, args: &[&str]) -> Result<Output> {
        let mut c = self.command();
        c.args(args);
        let out = c.output().map_err(|e| {
            anyhow::anyhow!("cannot run restic ({e}) (hint: install Debian's restic package: apt-get install restic)")
        })?;
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr);
            bail!("restic {what} failed ({}): {}", out.status, err.trim());
        }
        Ok(out)
    }

    /// Create the repository unless it exists.
    pub fn ensure_initialised(&self) -> Result<bool> {
        let exists = if self.repo.starts_with('/') {
            Path::new(&self.repo).join("config").exists()
        } else {
            self.command().args(["cat", "config"]).output().map(|o| o.status.success()).unwrap_or(false)
        };
        if exists {
            return Ok(false);
        }
        self.run("init", &["init"])?;
        Ok(true)
    }

    /// Back up `dir` (an absolute path); returns the snapshot id.
    pub fn backup(&self, dir: &Path, host: &str, tags: &[String]) -> Result<String> {
        let mut args = vec!["backup", "--json", "--host", host];
        for t in tags {
            args.extend(["--tag", t]);
        }
        let d = dir.to_str().context("the staging directory's path is not UTF-8")?;
        args.push(d);
        let out = self.run("backup", &args)?;
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(line)
                && v["message_type"] == "summary"
                && let Some(id) = v["snapshot_id"].as_str()
            {
                // restic 0.14 prints the short id here: return the full one.
                return Ok(self.find(id)?.id);
            }
        }
        bail!("restic backup printed no summary with a snapshot id")
    }

    /// vbank's snapshots, oldest first.
    pub fn snapshots(&self) -> Result<Vec<SnapshotInfo>> {
        let out = self.run("snapshots", &["snapshots", "--json", "--tag", "vbank"])?;
        let list: Option<Vec<SnapshotInfo>> =
            serde_json::from_slice(&out.stdout).context("restic snapshots printed something other than JSON")?;
        Ok(list.unwrap_or_default())
    }

    /// One snapshot by id, short id or `latest`.
    pub fn find(&self, id: &str) -> Result<SnapshotInfo> {
        let all = self.snapshots()?;
        let found = if id == "latest" {
            all.last().cloned()
        } else {
            all.into_iter().find(|s| s.id == id || s.short_id == id || (id.len() >= 4 && s.id.starts_with(id)))
        };
        found.with_context(|| format!("no vbank snapshot {id:?} in {} (hint: vbank backup list)", self.repo))
    }

    /// Restore a snapshot under `target`; returns where its staging directory landed.
    pub fn restore(&self, snap: &SnapshotInfo, target: &Path) -> Result<PathBuf> {
        let t = target.to_str().context("the restore target's path is not UTF-8")?;
        self.run("restore", &["restore", &snap.id, "--target", t])?;
        let staged = snap.paths.first().context("the snapshot holds no path")?;
        Ok(target.join(staged.trim_start_matches('/')))
    }

    /// The repository's structure and, with `read_data`, every data blob read back and checked.
    pub fn check(&self, read_data: bool) -> Result<()> {
        let args: &[&str] = if read_data { &["check", "--read-data"] } else { &["check"] };
        self.run("check", args).map(|_| ())
    }

    /// Apply retention to vbank's snapshots and prune unreferenced data.
    pub fn forget(&self, daily: u32, weekly: u32, monthly: u32) -> Result<()> {
        let (d, w, m) = (daily.to_string(), weekly.to_string(), monthly.to_string());
        let args =
            ["forget", "--prune", "--tag", "vbank", "--keep-daily", &d, "--keep-weekly", &w, "--keep-monthly", &m];
        self.run("forget", &args).map(|_| ())
    }
}
