//! Search, show and export of recordings for the bank's own viewers (operators' CLI, and supervisors through the
//! gateway's supervisor console). Each request names the person it is for; each is written to keyd's hash-chained
//! audit log before anything is answered, and an export also opens the recording's data key through keyd under that
//! person's name and stated reason. An export is composed from the encrypted segments on the fly (`vbank-fusion`), carries a visible
//! watermark with the viewer and the time, and is streamed: the plaintext MP4 never lands on the recorder's disk.

use std::io::Write;
use std::path::PathBuf;

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use vbank_config::{Config, Service};
use vbank_crypto::aead::AeadAlg;
use vbank_crypto::{SecretBytes, from_hex};
use vbank_recorder::format::DataKey;
use vbank_recorder::manifest::Manifest;
use vbank_recorder::recording::RecordingHeader;
use vbank_tls::Peer;

use crate::{ApiState, RecorderServiceError, keyd, now_us, problem};

/// One recording as listed.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// Recording id.
    pub id: String,
    /// The call recorded.
    pub call: String,
    /// When recording started, Unix µs.
    pub started_us: u64,
    /// The last packet, Unix µs (closed recordings).
    pub ended_us: Option<u64>,
    /// `recording`, `closed` (manifest written) or `sealed` (and signed by keyd).
    pub state: &'static str,
    /// Tracks.
    pub tracks: usize,
    /// Segments (closed recordings).
    pub segments: usize,
    /// Gaps listed.
    pub gaps: usize,
    /// The recording of the same call it continues.
    pub continues: Option<String>,
}

fn valid_id(id: &str) -> bool {
    id.strip_prefix("rec-").is_some_and(|h| h.len() == 16 && h.bytes().all(|b| b.is_ascii_hexdigit()))
}

fn read_header(dir: &std::path::Path) -> Option<RecordingHeader> {
    serde_json::from_slice(&std::fs::read(dir.join("recording.json")).ok()?).ok()
}

fn read_manifest(dir: &std::path::Path) -> Option<Manifest> {
    serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).ok()?).ok()
}

fn summary(dir: &std::path::Path) -> Option<Summary> {
    let h = read_header(dir)?;
    let m = read_manifest(dir);
    let state = match (&m, dir.join("manifest.sig").exists()) {
        (None, _) => "recording",
        (Some(_), false) => "closed",
        (Some(_), true) => "sealed",
    };
    Some(Summary {
        id: h.recording,
        call: h.call,
        started_us: h.started_us,
        ended_us: m.as_ref().and_then(|m| m.segments.iter().filter_map(|s| s.last_us).max()),
        state,
        tracks: h.tracks.len(),
        segments: m.as_ref().map_or(0, |m| m.segments.len()),
        gaps: m.as_ref().map_or(h.gaps.len(), |m| m.gaps.len()),
        continues: h.continues,
    })
}

/// Every recording under `dir` matching the filters, newest first.
pub fn search_dir(dir: &std::path::Path, q: &SearchIn) -> Vec<Summary> {
    let mut found: Vec<Summary> =
        std::fs::read_dir(dir).map(|it| it.flatten().filter_map(|e| summary(&e.path())).collect()).unwrap_or_default();
    found.retain(|s| {
        q.call.as_ref().is_none_or(|c| &s.call == c)
            && q.since_us.is_none_or(|t| s.started_us >= t)
            && q.until_us.is_none_or(|t| s.started_us < t)
    });
    found.sort_by(|a, b| b.started_us.cmp(&a.started_us).then(a.id.cmp(&b.id)));
    found.truncate(q.limit.unwrap_or(100).min(1000));
    found
}

/// Search filters.
#[derive(Debug, Deserialize)]
pub struct SearchIn {
    /// Who is searching (audited).
    pub viewer: String,
    /// Only this call.
    pub call: Option<String>,
    /// Started at or after (Unix µs).
    pub since_us: Option<u64>,
    /// Started before (Unix µs).
    pub until_us: Option<u64>,
    /// At most this many (default 100).
    pub limit: Option<usize>,
}

/// A request turned down, with the status and the reason given to the caller.
struct Refusal(StatusCode, String);

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        problem(self.0, self.1)
    }
}

/// Only operators' CLI and the gateway (for the supervisor it logged in, named as the viewer) look at recordings.
fn viewer_service(peer: &Peer) -> Result<(), Refusal> {
    match peer {
        // Operators' CLI, and the gateway for a supervisor it has logged in (the supervisor console).
        Peer::Service(Service::Cli | Service::Gateway) => Ok(()),
        other => Err(Refusal(StatusCode::FORBIDDEN, format!("{} may not look at recordings", other.describe()))),
    }
}

fn named(viewer: &str) -> Result<(), Refusal> {
    let ok = !viewer.trim().is_empty() && viewer.len() <= 64 && !viewer.chars().any(char::is_control);
    if ok {
        Ok(())
    } else {
        Err(Refusal(StatusCode::BAD_REQUEST, "name the viewer (1–64 printable characters)".into()))
    }
}

/// Write an audit entry in keyd's log; access is refused when it cannot be written.
async fn audit(cfg: &Config, viewer: &str, action: &str, target: &str, detail: String) -> Result<(), Refusal> {
    keyd(cfg, "/v1/audit/append", json!({"action": action, "target": target, "detail": detail, "on_behalf": viewer}))
        .await
        .map(|_| ())
        .map_err(|e| {
            log::error!("{action} refused: the audit log cannot be written: {e}");
            Refusal(StatusCode::SERVICE_UNAVAILABLE, format!("refused: the audit log cannot be written ({e})"))
        })
}

/// `GET /v1/recordings?viewer=…&call=…&since_us=…&until_us=…&limit=…`
pub async fn search(
    State(s): State<ApiState>,
    Extension(peer): Extension<Peer>,
    Query(q): Query<SearchIn>,
) -> Response {
    if let Err(r) = viewer_service(&peer).and_then(|()| named(&q.viewer)) {
        return r.into_response();
    }
    let detail = format!("call={:?} since_us={:?} until_us={:?}", q.call, q.since_us, q.until_us);
    if let Err(r) = audit(&s.cfg, &q.viewer, "recording.search", "recordings", detail).await {
        return r.into_response();
    }
    let dir = s.cfg.recorder.dir.clone();
    let found = tokio::task::spawn_blocking(move || search_dir(&dir, &q)).await.unwrap_or_default();
    Json(json!({"recordings": found})).into_response()
}

/// Who asks.
#[derive(Debug, Deserialize)]
pub struct ViewerIn {
    /// Who is looking (audited).
    pub viewer: String,
}

/// A viewer's request about recording `id`: an operator, a named viewer, a recording that exists, and an audit entry
/// for `action` written first. The recording's directory.
async fn admitted(
    s: &ApiState,
    peer: &Peer,
    id: &str,
    viewer: &str,
    action: &str,
    detail: String,
) -> Result<PathBuf, Refusal> {
    viewer_service(peer)?;
    named(viewer)?;
    let dir = s.cfg.recorder.dir.join(id);
    if !valid_id(id) || !dir.join("recording.json").exists() {
        return Err(Refusal(StatusCode::NOT_FOUND, format!("no recording {id}")));
    }
    audit(&s.cfg, viewer, action, id, detail).await?;
    Ok(dir)
}

/// `GET /v1/recordings/{id}?viewer=…`: the header, the manifest's tracks and gaps, and whether it verifies.
pub async fn show(
    State(s): State<ApiState>,
    Extension(peer): Extension<Peer>,
    Path(id): Path<String>,
    Query(q): Query<ViewerIn>,
) -> Response {
    let dir = match admitted(&s, &peer, &id, &q.viewer, "recording.show", String::new()).await {
        Ok(d) => d,
        Err(r) => return r.into_response(),
    };
    let answer = tokio::task::spawn_blocking(move || {
        let m = read_manifest(&dir);
        let problems = m.as_ref().map(|m| m.verify(&dir).unwrap_or_else(|e| vec![e.to_string()]));
        json!({"summary": summary(&dir), "tracks": read_header(&dir).map(|h| h.tracks), "gaps": m.as_ref().map(|m| &m.gaps),
               "chain_head": m.as_ref().map(|m| &m.chain_head), "verifies": problems.as_ref().map(Vec::is_empty),
               "problems": problems})
    })
    .await
    .unwrap_or_default();
    Json(answer).into_response()
}

/// `GET /v1/recordings/{id}/events?viewer=…`: the call's events (joins, leaves, consent, …), decrypted; audited.
pub async fn events(
    State(s): State<ApiState>,
    Extension(peer): Extension<Peer>,
    Path(id): Path<String>,
    Query(q): Query<ViewerIn>,
) -> Response {
    let dir = match admitted(&s, &peer, &id, &q.viewer, "recording.events", String::new()).await {
        Ok(d) => d,
        Err(r) => return r.into_response(),
    };
    let (Some(h), Some(m)) = (read_header(&dir), read_manifest(&dir)) else {
        return problem(
            StatusCode::CONFLICT,
            format!("{id} is still being recorded: its events are read once it is closed"),
        );
    };
    let key = match open_key(&s.cfg, &h, &q.viewer, "read the call's event list").await {
        Ok(k) => k,
        Err(e) => {
            return problem(StatusCode::SERVICE_UNAVAILABLE, format!("the recording's key cannot be opened: {e}"));
        }
    };
    let read = tokio::task::spawn_blocking(move || vbank_recorder::recording::read_events(&dir, &m, &key)).await;
    match read {
        Ok(Ok(list)) => {
            let events: Vec<Value> = list
                .into_iter()
                .map(|(at, bytes)| {
                    let mut v: Value = serde_json::from_slice(&bytes).unwrap_or_else(|_| json!({"kind": "unreadable"}));
                    v["recorded_us"] = at.into();
                    v
                })
                .collect();
            Json(json!({"recording": id, "events": events})).into_response()
        }
        Ok(Err(e)) => problem(StatusCode::CONFLICT, format!("{id}: {e}")),
        Err(e) => problem(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// An export request.
#[derive(Debug, Deserialize)]
pub struct ExportIn {
    /// Who will watch it (audited, and written across the picture).
    pub viewer: String,
    /// Why (audited).
    pub reason: String,
    /// The customer's declared location to show, when the call recorded none.
    #[serde(default)]
    pub location: Option<String>,
}

/// Hands the MP4 to the HTTP body as ffmpeg writes it.
struct ToBody(mpsc::Sender<Result<Bytes, std::io::Error>>);

impl Write for ToBody {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .blocking_send(Ok(Bytes::copy_from_slice(buf)))
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the viewer went away"))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

pub(crate) async fn open_key(
    cfg: &Config,
    h: &RecordingHeader,
    viewer: &str,
    reason: &str,
) -> Result<DataKey, RecorderServiceError> {
    let alg = AeadAlg::from_name(&h.alg).ok_or_else(|| RecorderServiceError::Recording(format!("alg {:?}", h.alg)))?;
    let v = keyd(
        cfg,
        "/v1/dek/open",
        json!({"purpose": "recording", "envelope": h.key_envelope, "context": h.recording,
               "on_behalf": viewer, "reason": reason}),
    )
    .await?;
    let hex = v["key"].as_str().ok_or_else(|| RecorderServiceError::Keyd("keyd gave no key".into()))?;
    let key = from_hex(hex).map_err(|e| RecorderServiceError::Keyd(format!("keyd's key: {e}")))?;
    Ok(DataKey { id: h.key_id.clone(), alg, key: SecretBytes::new(key) })
}

/// The epoch keys of an end-to-end encrypted call, from the media_key events its recording holds (each opened by
/// keyd for `viewer`, audited like the recording's own key); `None` for a call that was not encrypted.
async fn media_keys(
    cfg: &Config,
    dir: &std::path::Path,
    manifest: &Manifest,
    key: &std::sync::Arc<DataKey>,
    viewer: &str,
    reason: &str,
) -> Result<Option<vbank_sframe::EpochKeys>, RecorderServiceError> {
    let (dir, m, k) = (dir.to_path_buf(), manifest.clone(), key.clone());
    let events = tokio::task::spawn_blocking(move || vbank_recorder::recording::read_events(&dir, &m, &k))
        .await
        .map_err(|e| RecorderServiceError::Recording(e.to_string()))?
        .map_err(|e| RecorderServiceError::Recording(e.to_string()))?;
    let events: Vec<Value> = events.into_iter().filter_map(|(_, b)| serde_json::from_slice(&b).ok()).collect();
    crate::media_keys::open_all(cfg, &events, viewer, reason).await
}

/// `POST /v1/recordings/{id}/export`: the fused, watermarked MP4.
pub async fn export(
    State(s): State<ApiState>,
    Extension(peer): Extension<Peer>,
    Path(id): Path<String>,
    Json(r): Json<ExportIn>,
) -> Response {
    if r.reason.trim().chars().count() < 4 {
        return problem(StatusCode::BAD_REQUEST, "state the reason for the export (at least 4 characters)".into());
    }
    let detail = format!("reason={:?}", r.reason);
    let dir = match admitted(&s, &peer, &id, &r.viewer, "recording.export", detail).await {
        Ok(d) => d,
        Err(resp) => return resp.into_response(),
    };
    let Some(h) = read_header(&dir) else { return problem(StatusCode::NOT_FOUND, format!("no recording {id}")) };
    // Checked before the answer starts: a recording that does not verify is refused with the reason, not cut off.
    let check = dir.clone();
    let manifest = match tokio::task::spawn_blocking(move || vbank_fusion::verified_manifest(&check)).await {
        Ok(Ok(m)) => m,
        Ok(Err(e)) => return problem(StatusCode::CONFLICT, format!("{id} cannot be exported: {e}")),
        Err(e) => return problem(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    let key = match open_key(&s.cfg, &h, &r.viewer, &r.reason).await {
        Ok(k) => k,
        Err(e) => {
            return problem(StatusCode::SERVICE_UNAVAILABLE, format!("the recording's key cannot be opened: {e}"));
        }
    };
    let key = std::sync::Arc::new(key);
    let e2ee = match media_keys(&s.cfg, &dir, &manifest, &key, &r.viewer, &r.reason).await {
        Ok(k) => k,
        Err(e) => {
            return problem(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("the end-to-end encrypted call's media keys cannot be opened: {e}"),
            );
        }
    };
    let opts = vbank_fusion::Options {
        e2ee,
        location: r.location.clone(),
        watermark: Some(format!(
            "{} · {} · 仅限行内 in-bank only",
            r.viewer,
            vbank_fusion::display_time(now_us(), 480)
        )),
        ..Default::default()
    };
    let (tx, mut rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(16);
    let viewer = r.viewer.clone();
    tokio::task::spawn_blocking(move || {
        let mut sink = ToBody(tx.clone());
        match vbank_fusion::fuse_verified(&dir, &manifest, &key, &opts, &mut sink) {
            Ok(f) => log::info!(
                "recording {id} exported for {viewer}: {:.1} s, {} video and {} audio tracks, {} bytes",
                f.duration_s,
                f.video_tracks,
                f.audio_tracks,
                f.bytes
            ),
            Err(e) => {
                log::error!("recording {id}: export failed: {e}");
                let _ = tx.blocking_send(Err(std::io::Error::other(e.to_string())));
            }
        }
    });
    let stream = futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx));
    ([(header::CONTENT_TYPE, "video/mp4")], Body::from_stream(stream)).into_response()
}
