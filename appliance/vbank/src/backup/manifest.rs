//! What a backup holds: `MANIFEST.json` at the root of the staged tree, listing every file with its SHA-256, the
//! stores' entry counts, the recordings as they were (protected by their own storage, so listed, not copied), and
//! what was deliberately left out.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};
use serde::{Deserialize, Serialize};

/// The manifest's file name.
pub const MANIFEST: &str = "MANIFEST.json";
/// The format tag.
pub const FORMAT: &str = "vbank-backup/1";

/// One file of the backup.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct FileEntry {
    /// Path inside the backup.
    pub path: String,
    /// Where it came from on the node (absent for store exports, which are made, not copied).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<PathBuf>,
    /// Size.
    pub bytes: u64,
    /// SHA-256, hex.
    pub sha256: String,
}

/// One store export.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct StoreEntry {
    /// `gateway`, `keyd` (redb: one file each) or `shared` (PostgreSQL).
    pub name: String,
    /// Path inside the backup.
    pub path: String,
    /// How it was taken: `admin-listener` (inside the running service), `file` (service stopped) or `postgres`.
    pub taken_by: String,
    /// Schema version.
    pub schema_version: u32,
    /// Table entries.
    pub kv: u64,
    /// Stream entries (call events, the audit log).
    pub stream_entries: u64,
}

/// One recording as it was when the backup was taken.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RecordingEntry {
    /// Its id (directory name).
    pub id: String,
    /// Whether it was closed and sealed (`manifest.sig` present).
    pub sealed: bool,
    /// Bytes on disk.
    pub bytes: u64,
    /// SHA-256 of its `manifest.json`, which hash-chains every segment (absent while open).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest_sha256: Option<String>,
}

/// Something deliberately not in the backup, and why.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Excluded {
    /// What.
    pub what: String,
    /// Why, and where it is protected instead.
    pub why: String,
}

/// `MANIFEST.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Manifest {
    /// [`FORMAT`].
    pub format: String,
    /// Unix seconds.
    pub created: u64,
    /// The node.
    pub node: String,
    /// The vbank version that made it.
    pub vbank_version: String,
    /// `redb` or `postgres`.
    pub store_backend: String,
    /// Every file, stores included.
    pub files: Vec<FileEntry>,
    /// The store exports.
    pub stores: Vec<StoreEntry>,
    /// The recordings.
    pub recordings: Vec<RecordingEntry>,
    /// What is not in it.
    pub excluded: Vec<Excluded>,
}

/// SHA-256 as hex.
pub fn sha256_hex(data: &[u8]) -> String {
    vbank_crypto::hash::sha256(data).iter().map(|b| format!("{b:02x}")).collect()
}

impl Manifest {
    /// Read it from a staged or restored tree.
    pub fn read(root: &Path) -> Result<Manifest> {
        let p = root.join(MANIFEST);
        let m: Manifest =
            serde_json::from_slice(&std::fs::read(&p).with_context(|| format!("reading {}", p.display()))?)
                .with_context(|| format!("{} is not a vbank backup manifest", p.display()))?;
        if m.format != FORMAT {
            bail!(
                "{} has format {:?}; this vbank reads {FORMAT:?} (hint: use a matching vbank)",
                p.display(),
                m.format
            );
        }
        Ok(m)
    }

    /// Every problem of the tree at `root` against this manifest: a listed file missing or different, or a file
    /// present that is not listed. Empty when the tree is exactly what was backed up.
    pub fn check_tree(&self, root: &Path) -> Result<Vec<String>> {
        let mut problems = Vec::new();
        for f in &self.files {
            match std::fs::read(root.join(&f.path)) {
                Err(e) => problems.push(format!("{}: {e}", f.path)),
                Ok(b) if b.len() as u64 != f.bytes || sha256_hex(&b) != f.sha256 => {
                    problems.push(format!("{}: content differs from the manifest", f.path))
                }
                Ok(_) => {}
            }
        }
        let mut present = Vec::new();
        walk(root, root, &mut present)?;
        for p in present {
            if p != MANIFEST && !self.files.iter().any(|f| f.path == p) {
                problems.push(format!("{p}: not listed in the manifest"));
            }
        }
        Ok(problems)
    }
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) -> Result<()> {
    for e in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let e = e?;
        let p = e.path();
        if e.file_type()?.is_dir() {
            walk(root, &p, out)?;
        } else {
            out.push(p.strip_prefix(root).expect("under root").to_string_lossy().into_owned());
        }
    }
    Ok(())
}

/// The recordings under the recorder's directory.
pub fn list_recordings(dir: &Path) -> Vec<RecordingEntry> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else { return out };
    for e in entries.flatten() {
        let p = e.path();
        if !p.join("recording.json").exists() {
            continue;
        }
        let bytes = std::fs::read_dir(&p)
            .map(|d| d.flatten().filter_map(|f| f.metadata().ok()).map(|m| m.len()).sum())
            .unwrap_or(0);
        out.push(RecordingEntry {
            id: e.file_name().to_string_lossy().into_owned(),
            sealed: p.join("manifest.sig").exists(),
            bytes,
            manifest_sha256: std::fs::read(p.join("manifest.json")).ok().map(|b| sha256_hex(&b)),
        });
    }
    out.sort_by(|a, b| a.id.cmp(&b.id));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tree_is_checked_file_by_file() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("store")).unwrap();
        std::fs::write(d.path().join("store/keyd.export"), b"abc").unwrap();
        let m = Manifest {
            format: FORMAT.into(),
            created: 1,
            node: "n".into(),
            vbank_version: "0".into(),
            store_backend: "redb".into(),
            files: vec![FileEntry {
                path: "store/keyd.export".into(),
                from: None,
                bytes: 3,
                sha256: sha256_hex(b"abc"),
            }],
            stores: vec![],
            recordings: vec![],
            excluded: vec![],
        };
        std::fs::write(d.path().join(MANIFEST), serde_json::to_vec(&m).unwrap()).unwrap();
        assert_eq!(Manifest::read(d.path()).unwrap(), m);
        assert!(m.check_tree(d.path()).unwrap().is_empty());
        std::fs::write(d.path().join("store/keyd.export"), b"abd").unwrap();
        std::fs::write(d.path().join("stray"), b"").unwrap();
        let p = m.check_tree(d.path()).unwrap();
        assert_eq!(
            p,
            vec!["store/keyd.export: content differs from the manifest", "stray: not listed in the manifest"]
        );
    }
}
