//! `vbank recordings …`: tools on a recording directory that need no service. `verify` is what an auditor runs on a
//! copy; `recover` closes a recording whose recorder died after its call ended.

use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, Result, bail};
use clap::Subcommand;
use serde_json::json;
use vbank_crypto::sm2sig::Sm2PublicKey;
use vbank_recorder::manifest::Manifest;

/// The SM2 user ID of evidence seals (keyd's `vbank/evidence-seal` key).
const EVIDENCE_ID: &str = "vbank-evidence";

/// Recording tools.
#[derive(Debug, Subcommand)]
pub enum RecordingsCmd {
    /// Check a recording against its manifest: every segment's SM3 hash and the hash chain, no segment missing or
    /// added; with --public-key, also the manifest's SM2 seal (manifest.sig).
    Verify {
        /// The recording's directory.
        dir: PathBuf,
        /// The evidence-seal public key (PEM), as `vbank hsm keys export-public vbank/evidence-seal/v1` writes it.
        #[arg(long)]
        public_key: Option<PathBuf>,
    },
    /// Close a recording whose recorder stopped without closing it: cut every track back to its last whole record,
    /// list the gaps, write the manifest.
    Recover {
        /// The recording's directory.
        dir: PathBuf,
        /// Why, as the manifest will list it.
        #[arg(long, default_value = "the recorder stopped without closing the recording")]
        reason: String,
    },
}

/// Run a recordings command; the process exit code.
pub fn run(cmd: RecordingsCmd, json_out: bool) -> Result<i32> {
    match cmd {
        RecordingsCmd::Verify { dir, public_key } => verify(dir, public_key, json_out),
        RecordingsCmd::Recover { dir, reason } => {
            let now_us = SystemTime::now().duration_since(UNIX_EPOCH)?.as_micros() as u64;
            let m = vbank_recorder::recording::close_after_crash(&dir, now_us, &reason)?;
            if json_out {
                println!("{}", json!({"recording": m.recording, "segments": m.segments.len(), "gaps": m.gaps.len()}));
            } else {
                println!(
                    "{}: closed — {} segments, {} gap(s) listed; manifest written (seal it through the recorder or keyd)",
                    m.recording,
                    m.segments.len(),
                    m.gaps.len()
                );
            }
            Ok(0)
        }
    }
}

fn verify(dir: PathBuf, public_key: Option<PathBuf>, json_out: bool) -> Result<i32> {
    let path = dir.join("manifest.json");
    let bytes = std::fs::read(&path).with_context(|| {
        format!("{}: no manifest (an unfinished recording: `vbank recordings recover` it)", path.display())
    })?;
    let manifest: Manifest =
        serde_json::from_slice(&bytes).with_context(|| format!("{} is not a manifest", path.display()))?;
    let mut problems = manifest.verify(&dir)?;
    let seal = match public_key {
        None => "not checked (no --public-key)".to_string(),
        Some(pem_path) => {
            let pem = std::fs::read_to_string(&pem_path).with_context(|| format!("{}", pem_path.display()))?;
            let key = Sm2PublicKey::from_pem(&pem).map_err(|e| anyhow::anyhow!("{}: {e}", pem_path.display()))?;
            match std::fs::read(dir.join("manifest.sig")) {
                Err(_) => {
                    problems.push("manifest.sig is missing: the recording was never sealed".into());
                    "missing".into()
                }
                Ok(sig) if key.verify(EVIDENCE_ID, &bytes, &sig).is_ok() => "verified (SM2, vbank-evidence)".into(),
                Ok(_) => {
                    problems
                        .push("the manifest's seal does not verify with this key (manifest or seal changed)".into());
                    "FAILED".into()
                }
            }
        }
    };
    if json_out {
        println!(
            "{}",
            json!({"recording": manifest.recording, "ok": problems.is_empty(), "problems": problems,
                   "segments": manifest.segments.len(), "tracks": manifest.tracks.len(), "gaps": manifest.gaps,
                   "chain_head": manifest.chain_head, "seal": seal})
        );
    } else if problems.is_empty() {
        println!(
            "{}: OK — {} segments on {} tracks, {} gap(s), chain head {}; seal {seal}",
            manifest.recording,
            manifest.segments.len(),
            manifest.tracks.len(),
            manifest.gaps.len(),
            &manifest.chain_head[..16]
        );
        for g in &manifest.gaps {
            println!("  gap on track {}: {} µs, {}", g.track, g.to_us.saturating_sub(g.from_us), g.reason);
        }
    } else {
        println!("{}: FAILED", manifest.recording);
        for p in &problems {
            println!("  {p}");
        }
    }
    if problems.is_empty() { Ok(0) } else { bail!("{} problem(s)", problems.len()) }
}
