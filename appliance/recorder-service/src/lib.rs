//! `vbank recorder`: the gateway opens a recording before a call starts (`POST /v1/recordings` with the call and a
//! recorder call token); the recorder gets the recording's data key from keyd, joins the call through the gateway's
//! WHEP endpoint as the hidden recorder, and writes every track it receives. When the call ends the gateway closes
//! it (`POST /v1/recordings/{id}/finish`): the recorder writes the manifest and has keyd seal it (SM2). If any step
//! of opening fails, the answer is an error and the gateway must refuse the call: no banking call goes unrecorded.

pub mod capture;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::Mutex;
use vbank_config::{Config, Service};
use vbank_crypto::aead::AeadAlg;
use vbank_crypto::{SecretBytes, from_hex, to_hex};
use vbank_recorder::format::DataKey;
use vbank_recorder::manifest::Manifest;
use vbank_recorder::recording::{Recording, RecordingHeader};
use vbank_recorder::segmenter::Policy;
use vbank_service::client::{self, Method};
use vbank_service::{Check, Context, ServiceError, admin, exit, serve_tls};
use vbank_tls::{AccessPolicy, ClientAuth};

use crate::capture::Capture;

/// Why the recorder failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RecorderServiceError {
    /// A listener or TLS failure.
    #[error(transparent)]
    Service(#[from] ServiceError),
    /// keyd refused or could not be reached.
    #[error("{0}")]
    Keyd(String),
    /// The gateway refused the recorder's join, or the media session failed.
    #[error("media: {0}")]
    Media(String),
    /// Writing the recording failed (full disk, permissions).
    #[error("recording: {0}")]
    Recording(String),
    /// The configuration lacks something.
    #[error("{0}")]
    Config(String),
}

impl RecorderServiceError {
    /// The process exit code for a start-up failure.
    pub fn exit_code(&self) -> i32 {
        match self {
            RecorderServiceError::Service(e) => e.exit_code(),
            RecorderServiceError::Config(_) => exit::CONFIG,
            _ => exit::UNAVAILABLE,
        }
    }
}

/// What the API handlers share.
#[derive(Clone)]
pub struct ApiState {
    cfg: Arc<Config>,
    ctx: Context,
    live: Arc<Mutex<HashMap<String, Capture>>>,
}

fn problem(status: StatusCode, message: String) -> Response {
    (status, Json(json!({"error": message}))).into_response()
}

/// POST to keyd's API as the recorder.
async fn keyd(cfg: &Config, path: &str, body: Value) -> Result<Value, RecorderServiceError> {
    client::post_service(
        &cfg.tls,
        Service::Recorder,
        Service::Keyd,
        cfg.keyd.listen,
        path,
        &body,
        Duration::from_secs(10),
    )
    .await
    .map_err(RecorderServiceError::Keyd)
}

fn now_us() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros() as u64)
}

#[derive(Deserialize)]
struct OpenIn {
    call: String,
    token: String,
    /// The call's previous recording, when this one replaces it mid-call.
    #[serde(default)]
    continues: Option<String>,
}

async fn open(State(s): State<ApiState>, Json(r): Json<OpenIn>) -> Response {
    match open_recording(&s, &r).await {
        Ok(id) => (StatusCode::CREATED, Json(json!({"id": id}))).into_response(),
        Err(e) => {
            log::error!("cannot record call {}: {e}", r.call);
            problem(StatusCode::SERVICE_UNAVAILABLE, format!("cannot record this call, so it must not start: {e}"))
        }
    }
}

/// Free space on the recordings disk, in MiB.
fn free_mib(dir: &std::path::Path) -> Result<u64, RecorderServiceError> {
    let st = nix::sys::statvfs::statvfs(dir)
        .map_err(|e| RecorderServiceError::Recording(format!("{}: {e}", dir.display())))?;
    Ok(st.blocks_available() as u64 * st.fragment_size() as u64 / (1024 * 1024))
}

/// Refuse to start a recording the disk may not hold (and say so on /readyz).
fn check_space(s: &ApiState) -> Result<(), RecorderServiceError> {
    let (dir, min) = (&s.cfg.recorder.dir, s.cfg.recorder.min_free_mb);
    let free = free_mib(dir)?;
    if free < min {
        let why = format!(
            "the recordings disk ({}) has {free} MiB free, below [recorder] min_free_mb = {min}: free space or add storage",
            dir.display()
        );
        s.ctx.health.set("storage", Check::Failing(why.clone()));
        return Err(RecorderServiceError::Recording(why));
    }
    s.ctx.health.set("storage", Check::Ok);
    Ok(())
}

async fn open_recording(s: &ApiState, r: &OpenIn) -> Result<String, RecorderServiceError> {
    let cfg = &s.cfg;
    check_space(s)?;
    let mut raw = [0u8; 8];
    vbank_crypto::random(&mut raw).map_err(|e| RecorderServiceError::Recording(e.to_string()))?;
    let id = format!("rec-{}", to_hex(&raw));
    let alg =
        AeadAlg::from_name(&cfg.recorder.alg).ok_or_else(|| RecorderServiceError::Config("recorder.alg".into()))?;
    let dek = keyd(cfg, "/v1/dek/create", json!({"purpose": "recording", "alg": alg.name(), "context": id})).await?;
    let key_hex =
        dek["key"].as_str().ok_or_else(|| RecorderServiceError::Keyd("keyd gave no key in its answer".into()))?;
    let key = DataKey {
        id: dek["id"].as_str().unwrap_or_default().to_string(),
        alg,
        key: SecretBytes::new(from_hex(key_hex).map_err(|e| RecorderServiceError::Keyd(format!("keyd's key: {e}")))?),
    };
    let header = RecordingHeader {
        format: "vbank-recording/1".into(),
        recording: id.clone(),
        call: r.call.clone(),
        key_id: key.id.clone(),
        key_envelope: dek["envelope"].as_str().unwrap_or_default().to_string(),
        alg: alg.name().into(),
        started_us: now_us(),
        tracks: vec![],
        gaps: vec![],
        continues: r.continues.clone(),
    };
    let policy =
        Policy { roll_every: Duration::from_secs(u64::from(cfg.recorder.segment_seconds)), ..Policy::default() };
    // Created before joining, so a full disk refuses the call before it starts.
    let dir = cfg.recorder.dir.join(&id);
    let recording =
        Recording::create(&dir, header, key, policy).map_err(|e| RecorderServiceError::Recording(e.to_string()))?;
    match join(cfg, r, recording).await {
        Ok(capture) => {
            s.live.lock().await.insert(id.clone(), capture);
            log::info!("recording {id} of call {} started", r.call);
            Ok(id)
        }
        Err(e) => {
            // Nothing was recorded: leave no empty recording behind.
            let _ = std::fs::remove_dir_all(&dir);
            Err(e)
        }
    }
}

/// Join the call through the gateway's WHEP endpoint with the recorder token and start capturing into `recording`.
async fn join(cfg: &Config, r: &OpenIn, recording: Recording) -> Result<Capture, RecorderServiceError> {
    let offered = capture::offer(cfg.recorder.media_ip)?;
    let tls = vbank_tls::anonymous_client_config(&cfg.tls).map_err(|e| RecorderServiceError::Media(e.to_string()))?;
    let mut conn =
        client::Connection::open(tls, capture::gateway_addr(cfg.gateway.listen), "localhost", Duration::from_secs(10))
            .await
            .map_err(|e| RecorderServiceError::Media(format!("gateway: {e}")))?;
    let bearer = format!("Bearer {}", r.token);
    let (status, _, body) = conn
        .request_with(
            Method::POST,
            &format!("/whep/{}", r.call),
            &[("content-type", "application/sdp"), ("authorization", &bearer)],
            Some(offered.sdp.clone().into()),
        )
        .await
        .map_err(|e| RecorderServiceError::Media(format!("gateway: {e}")))?;
    if status != StatusCode::CREATED {
        return Err(RecorderServiceError::Media(format!(
            "the gateway refused the recorder: {status} {}",
            String::from_utf8_lossy(&body).trim()
        )));
    }
    Capture::start(offered, &String::from_utf8_lossy(&body), recording)
}

async fn finish(State(s): State<ApiState>, Path(id): Path<String>) -> Response {
    let Some(capture) = s.live.lock().await.remove(&id) else {
        return problem(StatusCode::NOT_FOUND, format!("no recording {id} in progress"));
    };
    match finish_recording(&s.cfg, &id, capture).await {
        Ok(v) => Json(v).into_response(),
        Err(e) => {
            log::error!("recording {id}: closing failed: {e}");
            problem(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
        }
    }
}

async fn finish_recording(cfg: &Config, id: &str, capture: Capture) -> Result<Value, RecorderServiceError> {
    let recording = tokio::task::spawn_blocking(move || capture.stop())
        .await
        .map_err(|e| RecorderServiceError::Media(e.to_string()))??;
    let manifest = recording.finish(now_us()).map_err(|e| RecorderServiceError::Recording(e.to_string()))?;
    let seal = seal(cfg, &cfg.recorder.dir.join(id), &manifest).await?;
    log::info!("recording {id} closed and sealed: {} segments", manifest.segments.len());
    Ok(json!({"id": id, "segments": manifest.segments.len(), "tracks": manifest.tracks.len(),
              "chain_head": manifest.chain_head, "seal_key": seal["key"]}))
}

/// The API: only the gateway (and operators' CLI) may open and close recordings.
pub fn router(state: ApiState) -> Router {
    let policy = Arc::new(AccessPolicy::new().allow("/v1/recordings", &[Service::Gateway, Service::Cli]));
    Router::new()
        .route("/v1/recordings", post(open))
        .route("/v1/recordings/{id}/finish", post(finish))
        .layer(axum::middleware::from_fn_with_state(policy, vbank_service::require_peer))
        .with_state(state)
}

/// Have keyd seal `manifest` (SM2, evidence-seal key) and write `manifest.sig` into `dir`; keyd's answer.
async fn seal(cfg: &Config, dir: &std::path::Path, manifest: &Manifest) -> Result<Value, RecorderServiceError> {
    let seal = keyd(cfg, "/v1/sign", json!({"purpose": "evidence-seal", "data": to_hex(&manifest.to_bytes())})).await?;
    let sig = from_hex(seal["signature"].as_str().unwrap_or_default())
        .map_err(|e| RecorderServiceError::Keyd(format!("keyd's seal: {e}")))?;
    let path = dir.join("manifest.sig");
    std::fs::write(&path, sig).map_err(|e| RecorderServiceError::Recording(format!("{}: {e}", path.display())))?;
    Ok(seal)
}

/// Recordings a previous run left open (it was killed): close each without its key — cut every track back to its last
/// whole record, list the gap, write the manifest — and have keyd seal it. The gateway opens a new recording for a
/// call that goes on.
async fn close_orphans(cfg: &Config) {
    let Ok(entries) = std::fs::read_dir(&cfg.recorder.dir) else { return };
    for dir in entries.flatten().map(|e| e.path()) {
        if !dir.join("recording.json").exists() || dir.join("manifest.json").exists() {
            continue;
        }
        match vbank_recorder::recording::close_after_crash(
            &dir,
            now_us(),
            "the recorder stopped (crash or kill); the call went on in a new recording",
        ) {
            Ok(m) => {
                log::warn!(
                    "closed {} left open by the previous run: {} segments, {} gap(s)",
                    m.recording,
                    m.segments.len(),
                    m.gaps.len()
                );
                if let Err(e) = seal(cfg, &dir, &m).await {
                    log::error!("{} is closed but not sealed: {e}", m.recording);
                }
            }
            Err(e) => log::error!("could not close {} left open by the previous run: {e}", dir.display()),
        }
    }
}

/// Run the recorder until SIGTERM/SIGINT; recordings still open are closed and sealed first.
pub async fn run(cfg: Config) -> Result<(), RecorderServiceError> {
    let ctx = Context::new("recorder", &cfg.node.name, &["storage"]);
    ctx.stop_on_signals();
    std::fs::create_dir_all(&cfg.recorder.dir)
        .map_err(|e| RecorderServiceError::Config(format!("recorder.dir {}: {e}", cfg.recorder.dir.display())))?;
    close_orphans(&cfg).await;
    ctx.health.set("storage", Check::Ok);
    let api_listener = vbank_service::bind(cfg.recorder.listen, "recorder.listen").await?;
    let admin_listener = vbank_service::bind(cfg.recorder.admin_listen, "recorder.admin_listen").await?;
    let api_tls =
        vbank_tls::service_server_tls(&cfg.tls, Service::Recorder, ClientAuth::Required).map_err(ServiceError::from)?;
    let admin_tls =
        vbank_tls::service_server_tls(&cfg.tls, Service::Recorder, ClientAuth::Optional).map_err(ServiceError::from)?;
    let cfg = Arc::new(cfg);
    let state = ApiState { cfg: cfg.clone(), ctx: ctx.clone(), live: Arc::default() };
    let api_task =
        tokio::spawn(serve_tls(api_listener, api_tls, ctx.observed(router(state.clone()), "api"), ctx.shutdown()));
    let admin_app = ctx.observed(admin::router(ctx.health.clone(), ctx.metrics.clone()), "admin");
    let admin_task = tokio::spawn(serve_tls(admin_listener, admin_tls, admin_app, ctx.shutdown()));
    log::info!(listen = cfg.recorder.listen.to_string().as_str(); "recorder started");
    let _ = api_task.await;
    let _ = admin_task.await;
    let open: Vec<(String, Capture)> = state.live.lock().await.drain().collect();
    for (id, capture) in open {
        if let Err(e) = finish_recording(&cfg, &id, capture).await {
            log::error!("recording {id}: closing at stop failed: {e}");
        }
    }
    log::info!("recorder stopped");
    Ok(())
}
