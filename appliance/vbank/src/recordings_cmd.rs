//! `vbank recordings …`. Offline, on a recording directory: `verify` (what an auditor runs on a copy) and `recover`
//! (close a recording whose recorder died after its call ended). Online, through the recorder's API as the operator,
//! each audited under the viewer's name: `list`, `show` and `export` (a fused, watermarked MP4).

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, Result, bail};
use clap::Subcommand;
use serde_json::{Value, json};
use std::os::unix::fs::OpenOptionsExt as _;
use vbank_config::Service;
use vbank_crypto::sm2sig::Sm2PublicKey;
use vbank_recorder::manifest::Manifest;
use vbank_service::client::{self, Method, encode_query_value as encode};

/// The SM2 user ID of evidence seals (keyd's `vbank/evidence-seal` key).
const EVIDENCE_ID: &str = "vbank-evidence";

/// Recording tools.
#[derive(Debug, Subcommand)]
pub enum RecordingsCmd {
    /// Search recordings (newest first), through the recorder; audited.
    List {
        /// Only this call.
        #[arg(long)]
        call: Option<String>,
        /// Only the last N hours.
        #[arg(long)]
        hours: Option<u64>,
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// Who is looking (default: the login name).
        #[arg(long)]
        viewer: Option<String>,
    },
    /// One recording: tracks, gaps, whether it verifies; through the recorder; audited.
    Show {
        /// The recording id (rec-…).
        id: String,
        /// Who is looking (default: the login name).
        #[arg(long)]
        viewer: Option<String>,
    },
    /// The call's events (joins, leaves, consent, …) in order, decrypted through the recorder; audited.
    Events {
        /// The recording id (rec-…).
        id: String,
        /// Who is looking (default: the login name).
        #[arg(long)]
        viewer: Option<String>,
    },
    /// Export a recording as one MP4 (both cameras, mixed audio, capture-time overlay, a watermark naming the viewer);
    /// the data key is opened through keyd under the viewer's name and reason, and both go to the audit log.
    Export {
        /// The recording id (rec-…).
        id: String,
        /// Why (audited), e.g. "complaint 2026-1127-04 review".
        #[arg(long)]
        reason: String,
        /// The MP4 to write (must not exist).
        #[arg(long)]
        out: PathBuf,
        /// Who will watch it (default: the login name).
        #[arg(long)]
        viewer: Option<String>,
        /// The customer's declared location, when the call recorded none.
        #[arg(long)]
        location: Option<String>,
    },
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
    /// Put a recording under legal hold (`legal-hold.json` in its directory): decommissioning refuses to erase it
    /// until the hold is released; `--release` lifts it.
    Hold {
        /// The recording's directory.
        dir: PathBuf,
        /// Why (a case number, the authority that asked).
        #[arg(long, required_unless_present = "release")]
        reason: Option<String>,
        /// Who decided.
        #[arg(long, required_unless_present = "release")]
        by: Option<String>,
        /// Lift the hold instead.
        #[arg(long)]
        release: bool,
    },
}

/// Run a recordings command; the process exit code. Online commands read the configuration at `config`.
pub fn run(cmd: RecordingsCmd, config: &Path, json_out: bool) -> Result<i32> {
    match cmd {
        RecordingsCmd::List { call, hours, limit, viewer } => {
            let viewer = viewer_or_login(viewer)?;
            let mut q = format!("/v1/recordings?viewer={}&limit={limit}", encode(&viewer));
            if let Some(c) = call {
                q.push_str(&format!("&call={}", encode(&c)));
            }
            if let Some(h) = hours {
                let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_micros() as u64;
                q.push_str(&format!("&since_us={}", now.saturating_sub(h * 3_600_000_000)));
            }
            let v = online(config, Method::GET, &q, None, Duration::from_secs(30))?;
            let v: Value = serde_json::from_slice(&v)?;
            if json_out {
                println!("{v}");
                return Ok(0);
            }
            let list = v["recordings"].as_array().cloned().unwrap_or_default();
            println!(
                "{:<20} {:<24} {:<26} {:>8} {:>6} {:>4} {:<9}",
                "ID", "CALL", "STARTED", "MINUTES", "TRACKS", "GAPS", "STATE"
            );
            for r in &list {
                let start = r["started_us"].as_u64().unwrap_or(0);
                let minutes = r["ended_us"].as_u64().map(|e| format!("{:.1}", e.saturating_sub(start) as f64 / 6e7));
                println!(
                    "{:<20} {:<24} {:<26} {:>8} {:>6} {:>4} {:<9}",
                    r["id"].as_str().unwrap_or(""),
                    r["call"].as_str().unwrap_or(""),
                    vbank_fusion::display_time(start, 480),
                    minutes.unwrap_or_else(|| "-".into()),
                    r["tracks"],
                    r["gaps"],
                    r["state"].as_str().unwrap_or("")
                );
            }
            println!("{} recording(s)", list.len());
            Ok(0)
        }
        RecordingsCmd::Show { id, viewer } => {
            let viewer = viewer_or_login(viewer)?;
            let path = format!("/v1/recordings/{}?viewer={}", encode(&id), encode(&viewer));
            let v: Value = serde_json::from_slice(&online(config, Method::GET, &path, None, Duration::from_secs(60))?)?;
            if json_out {
                println!("{v}");
            } else {
                println!("{}", serde_json::to_string_pretty(&v)?);
            }
            Ok(if v["verifies"] == Value::Bool(false) { 1 } else { 0 })
        }
        RecordingsCmd::Events { id, viewer } => {
            let viewer = viewer_or_login(viewer)?;
            let path = format!("/v1/recordings/{}/events?viewer={}", encode(&id), encode(&viewer));
            let v: Value = serde_json::from_slice(&online(config, Method::GET, &path, None, Duration::from_secs(60))?)?;
            if json_out {
                println!("{v}");
            } else {
                for e in v["events"].as_array().into_iter().flatten() {
                    let at = e["recorded_us"].as_u64().unwrap_or(0);
                    println!("{}  {}", vbank_fusion::display_time(at, 480), e);
                }
            }
            Ok(0)
        }
        RecordingsCmd::Export { id, reason, out, viewer, location } => {
            let viewer = viewer_or_login(viewer)?;
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&out)
                .with_context(|| format!("{} (exports never overwrite a file)", out.display()))?;
            let body = json!({"viewer": viewer, "reason": reason, "location": location});
            let path = format!("/v1/recordings/{}/export", encode(&id));
            let mp4 = match online(config, Method::POST, &path, Some(body), Duration::from_secs(3600)) {
                Ok(b) => b,
                Err(e) => {
                    let _ = std::fs::remove_file(&out);
                    return Err(e);
                }
            };
            file.write_all(&mp4).and_then(|()| file.sync_all()).with_context(|| format!("{}", out.display()))?;
            if json_out {
                println!("{}", json!({"recording": id, "out": out, "bytes": mp4.len(), "viewer": viewer}));
            } else {
                println!(
                    "{id}: exported to {} ({} bytes), watermarked for {viewer}; the export is in the audit log",
                    out.display(),
                    mp4.len()
                );
            }
            Ok(0)
        }
        RecordingsCmd::Verify { dir, public_key } => verify(dir, public_key, json_out),
        RecordingsCmd::Hold { dir, reason, by, release } => hold(&dir, reason, by, release, json_out),
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

/// The viewer named, or the login name of whoever runs the command.
fn viewer_or_login(viewer: Option<String>) -> Result<String> {
    viewer
        .or_else(|| std::env::var("SUDO_USER").ok())
        .or_else(|| std::env::var("USER").ok())
        .or_else(|| std::env::var("LOGNAME").ok())
        .filter(|v| !v.trim().is_empty())
        .ok_or_else(|| anyhow::anyhow!("name the viewer with --viewer"))
}

/// One request to the recorder's API as the operator; the body of a successful answer.
fn online(config: &Path, method: Method, path: &str, body: Option<Value>, timeout: Duration) -> Result<Vec<u8>> {
    let (cfg, _) = vbank_config::load(config).map_err(|e| anyhow::anyhow!("{e}"))?;
    let tls = vbank_tls::internal_client_config(&cfg.tls, Service::Cli)
        .context("loading the operator certificate (tls.cli)")?;
    let name = vbank_tls::service_dns_name(Service::Recorder);
    let addr = cfg.recorder.listen;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let (status, bytes) = rt
        .block_on(client::call(tls, addr, &name, method, path, body.map(|b| b.to_string().into()), timeout))
        .with_context(|| format!("the recorder at {addr} (is it running? `vbank recorder`)"))?;
    if !status.is_success() {
        let v: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        let why =
            v["error"].as_str().map(str::to_string).unwrap_or_else(|| String::from_utf8_lossy(&bytes).into_owned());
        bail!("the recorder refused ({status}): {why}");
    }
    Ok(bytes.to_vec())
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

fn hold(dir: &Path, reason: Option<String>, by: Option<String>, release: bool, json_out: bool) -> Result<i32> {
    if !dir.join("recording.json").exists() {
        bail!("{} is not a recording's directory (no recording.json)", dir.display());
    }
    let path = dir.join(crate::decommission::LEGAL_HOLD);
    let state = if release {
        match std::fs::remove_file(&path) {
            Ok(()) => "released",
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => "not held",
            Err(e) => return Err(e).with_context(|| format!("removing {}", path.display())),
        }
    } else {
        let since = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
        let record = json!({"reason": reason, "by": by, "since_unix": since});
        std::fs::write(&path, serde_json::to_vec_pretty(&record)?)
            .with_context(|| format!("writing {}", path.display()))?;
        "held"
    };
    log::info!(recording = dir.display().to_string().as_str(); "legal hold {state}");
    if json_out {
        println!("{}", json!({"recording": dir, "hold": state}));
    } else {
        println!("{}: {state}", dir.display());
    }
    Ok(0)
}
