//! The release bundle bank IT installs: `vbank-<version>.tar.gz`, one top directory `vbank-<version>/` holding the
//! binary, units, default configuration, runbooks and models, plus:
//! - `SHA256SUMS`: one `<sha256 hex>  <path>` line per file, in `sha256sum` format, sorted;
//! - `SHA256SUMS.sig`: an SM2 signature (DER, user ID `vbank-release`) of `SHA256SUMS` by the release key.
//!
//! [`verify`] accepts a bundle only when the signature verifies under the key the bank pinned, every file is listed
//! with its digest, nothing listed is missing, and no entry is a link, a device or a path that leaves the directory.
//! An auditor can check the same by hand: `sha256sum -c SHA256SUMS` and
//! `openssl pkeyutl -verify -rawin -digest sm3 -pkeyopt distid:vbank-release -pubin -inkey release.pem
//! -sigfile SHA256SUMS.sig -in SHA256SUMS`.

use std::collections::BTreeMap;
use std::io::{Read, Write};

use vbank_crypto::hash::sha256;
use vbank_crypto::sm2sig::{Sm2PrivateKey, Sm2PublicKey};
use vbank_crypto::to_hex;

/// The SM2 user ID release signatures are made for.
pub const SIGNER_ID: &str = "vbank-release";
/// The digest list's name in the bundle.
pub const SUMS: &str = "SHA256SUMS";
/// Its signature's name.
pub const SIG: &str = "SHA256SUMS.sig";

/// Why a bundle could not be made or was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReleaseError {
    /// The bundle is not a readable gzip tarball.
    #[error("not a readable release bundle: {0}")]
    Format(String),
    /// An entry that must not be in a bundle.
    #[error("entry {0:?} is refused: a bundle holds only plain files and directories under its one top directory")]
    Entry(String),
    /// The signature is missing or does not verify under the pinned key.
    #[error("the signature of SHA256SUMS does not verify under the pinned release key: this bundle is not ours")]
    Signature,
    /// A file's digest differs from its line in SHA256SUMS.
    #[error("{0} does not match its SHA-256 in SHA256SUMS: the bundle was altered")]
    Digest(String),
    /// A file not listed, or listed and absent.
    #[error("{0}: the bundle was altered")]
    Contents(String),
    /// Writing or reading failed.
    #[error("{0}")]
    Io(String),
    /// The key could not be used.
    #[error("release key: {0}")]
    Key(String),
}

/// One file to put in a bundle: its path under the top directory, its bytes, and whether it is executable.
pub struct File {
    /// Path inside `vbank-<version>/`, `/`-separated (e.g. `bin/vbank`).
    pub path: String,
    /// Contents.
    pub bytes: Vec<u8>,
    /// Mode 0755 instead of 0644.
    pub executable: bool,
}

/// `SHA256SUMS` for `files` (path → bytes): sorted lines in `sha256sum` format.
pub fn sums(files: &BTreeMap<String, Vec<u8>>) -> String {
    files.iter().map(|(p, b)| format!("{}  {p}\n", to_hex(&sha256(b)))).collect()
}

fn parse_sums(text: &str) -> Result<BTreeMap<String, String>, ReleaseError> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let (hex, path) = line
            .split_once("  ")
            .ok_or_else(|| ReleaseError::Contents(format!("SHA256SUMS line {line:?} is malformed")))?;
        if hex.len() != 64 || out.insert(path.to_string(), hex.to_string()).is_some() {
            return Err(ReleaseError::Contents(format!("SHA256SUMS line {line:?} is malformed or repeated")));
        }
    }
    Ok(out)
}

/// Build `vbank-<version>.tar.gz` from `files`, signed with `key`.
pub fn build(version: &str, files: Vec<File>, key: &Sm2PrivateKey, out: impl Write) -> Result<(), ReleaseError> {
    let io = |e: std::io::Error| ReleaseError::Io(e.to_string());
    if version.is_empty() || !version.chars().all(|c| c.is_ascii_alphanumeric() || ".-+".contains(c)) {
        return Err(ReleaseError::Io(format!("version {version:?}: letters, digits, '.', '-', '+'")));
    }
    let top = format!("vbank-{version}");
    let mut listed = BTreeMap::new();
    for f in &files {
        if !safe(&f.path) {
            return Err(ReleaseError::Entry(f.path.clone()));
        }
        listed.insert(f.path.clone(), f.bytes.clone());
    }
    let text = sums(&listed);
    let sig = key.sign_der(SIGNER_ID, text.as_bytes()).map_err(|e| ReleaseError::Key(e.to_string()))?;
    let gz = flate2::write::GzEncoder::new(out, flate2::Compression::default());
    let mut tar = tar::Builder::new(gz);
    let mut add = |path: &str, bytes: &[u8], mode: u32| {
        let mut h = tar::Header::new_gnu();
        h.set_size(bytes.len() as u64);
        h.set_mode(mode);
        h.set_mtime(0);
        h.set_entry_type(tar::EntryType::Regular);
        tar.append_data(&mut h, format!("{top}/{path}"), bytes)
    };
    for f in &files {
        add(&f.path, &f.bytes, if f.executable { 0o755 } else { 0o644 }).map_err(io)?;
    }
    add(SUMS, text.as_bytes(), 0o644).map_err(io)?;
    add(SIG, &sig, 0o644).map_err(io)?;
    tar.into_inner().map_err(io)?.finish().map_err(io)?;
    Ok(())
}

/// A path inside the bundle: relative, no `..`, no empty or `.` parts.
fn safe(path: &str) -> bool {
    !path.is_empty() && !path.starts_with('/') && path.split('/').all(|p| !p.is_empty() && p != "." && p != "..")
}

/// What a verified bundle holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The top directory (`vbank-<version>`).
    pub top: String,
    /// Every file and its SHA-256 (hex), SHA256SUMS and its signature left out.
    pub files: BTreeMap<String, String>,
}

/// Verify a bundle (gzip tarball) against the pinned release key.
pub fn verify(bundle: impl Read, key: &Sm2PublicKey) -> Result<Verified, ReleaseError> {
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(bundle));
    let fmt = |e: std::io::Error| ReleaseError::Format(e.to_string());
    let mut top: Option<String> = None;
    let mut digests = BTreeMap::new();
    let (mut text, mut sig) = (None, None);
    for entry in tar.entries().map_err(fmt)? {
        let mut entry = entry.map_err(fmt)?;
        // Directory entries may end in '/' (GNU tar writes them so).
        let path = entry.path().map_err(fmt)?.to_string_lossy().trim_end_matches('/').to_string();
        let kind = entry.header().entry_type();
        let (head, rest) = path.split_once('/').unwrap_or((path.as_str(), ""));
        if !safe(&path) || top.as_deref().is_some_and(|t| t != head) {
            return Err(ReleaseError::Entry(path));
        }
        top.get_or_insert_with(|| head.to_string());
        match kind {
            tar::EntryType::Directory => continue,
            tar::EntryType::Regular => {}
            _ => return Err(ReleaseError::Entry(path)),
        }
        if rest.is_empty() {
            return Err(ReleaseError::Entry(path));
        }
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes).map_err(fmt)?;
        match rest {
            SUMS => {
                text = Some(
                    String::from_utf8(bytes).map_err(|_| ReleaseError::Contents("SHA256SUMS is not text".into()))?,
                )
            }
            SIG => sig = Some(bytes),
            _ => {
                if digests.insert(rest.to_string(), to_hex(&sha256(&bytes))).is_some() {
                    return Err(ReleaseError::Contents(format!("{rest} appears twice")));
                }
            }
        }
    }
    let (Some(text), Some(sig)) = (text, sig) else { return Err(ReleaseError::Signature) };
    key.verify(SIGNER_ID, text.as_bytes(), &sig).map_err(|_| ReleaseError::Signature)?;
    let listed = parse_sums(&text)?;
    for (path, hex) in &listed {
        match digests.get(path) {
            None => return Err(ReleaseError::Contents(format!("{path} is listed in SHA256SUMS but missing"))),
            Some(d) if d != hex => return Err(ReleaseError::Digest(path.clone())),
            Some(_) => {}
        }
    }
    if let Some(extra) = digests.keys().find(|p| !listed.contains_key(*p)) {
        return Err(ReleaseError::Contents(format!("{extra} is not listed in SHA256SUMS")));
    }
    Ok(Verified { top: top.unwrap_or_default(), files: digests })
}

#[cfg(test)]
mod tests;
