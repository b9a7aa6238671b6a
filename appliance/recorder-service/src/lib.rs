//! `vbank recorder`: the gateway opens a recording before a call starts (`POST /v1/recordings` with the call and a
//! recorder call token); the recorder gets the recording's data key from keyd, joins the call through the gateway's
//! WHEP endpoint as the hidden recorder, and writes every track it receives. When the call ends the gateway closes
//! it (`POST /v1/recordings/{id}/finish`): the recorder writes the manifest and has keyd seal it (SM2). If any step
//! of opening fails, the answer is an error and the gateway must refuse the call: no banking call goes unrecorded.

pub mod capture;
pub mod continuity;
pub mod media_keys;
pub mod playback;
mod rejoin;
pub mod still;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
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
    /// Recordings on disk being opened (capture still joining) or closed: not orphans.
    busy: Arc<std::sync::Mutex<HashSet<String>>>,
    /// Recordings whose capture stopped by itself and that could not be closed yet (full disk), with the reason the
    /// gap will carry when the sweep closes them.
    stopped: Arc<std::sync::Mutex<HashMap<String, String>>>,
    /// The media keys of end-to-end encrypted calls being recorded (for stills).
    live_keys: media_keys::LiveKeys,
}

impl ApiState {
    /// Take a live capture out to close it, marking the recording busy in the same step so the sweep never sees it
    /// as an orphan.
    async fn take_live(&self, id: &str) -> Option<Capture> {
        let mut live = self.live.lock().await;
        let c = live.remove(id)?;
        self.busy.lock().expect("not poisoned").insert(id.to_string());
        Some(c)
    }
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
    /// The gateway node the call was on, when it was lost and the call moved to this node.
    #[serde(default)]
    moved_from: Option<String>,
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
    if let Some(old) = r.continues.as_deref()
        && let Some(capture) = rejoin::take_lost(s, old, &r.call).await
    {
        // Still capturing, but the gateway dropped our session (we went silent: a stall, a network cut).
        let rejoined = rejoin::rejoin(s, r, old, capture).await;
        s.busy.lock().expect("not poisoned").remove(old);
        rejoined?;
        log::warn!("recording {old} of call {} continues after its session was lost", r.call);
        return Ok(old.to_string());
    }
    if let Some(old) = r.continues.as_deref().filter(|old| rejoin::resumable(s, old, &r.call)) {
        s.busy.lock().expect("not poisoned").insert(old.to_string());
        let resumed = rejoin::resume_recording(s, r, old).await;
        s.busy.lock().expect("not poisoned").remove(old);
        match resumed {
            Ok(()) => {
                match &r.moved_from {
                    Some(node) => {
                        log::warn!("recording {old} of call {} continues: the call moved from {node}", r.call)
                    }
                    None => log::info!("recording {old} of call {} continues after the recorder restarted", r.call),
                }
                return Ok(old.to_string());
            }
            Err(e) => log::warn!("recording {old} cannot be continued ({e}); the call goes on in a new recording"),
        }
    }
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
    let envelope = dek["envelope"].as_str().unwrap_or_default();
    let mut header = RecordingHeader::new(&id, &r.call, &key, envelope, now_us());
    header.continues.clone_from(&r.continues);
    let policy =
        Policy { roll_every: Duration::from_secs(u64::from(cfg.recorder.segment_seconds)), ..Policy::default() };
    // Created before joining, so a full disk refuses the call before it starts.
    let dir = cfg.recorder.dir.join(&id);
    s.busy.lock().expect("not poisoned").insert(id.clone());
    let joined = match Recording::create(&dir, header, key, policy) {
        Ok(recording) => join(cfg, r, recording).await,
        Err(e) => Err(RecorderServiceError::Recording(e.to_string())),
    };
    let result = match joined {
        Ok(capture) => {
            s.live.lock().await.insert(id.clone(), capture);
            log::info!("recording {id} of call {} started", r.call);
            Ok(id.clone())
        }
        Err(e) => {
            // Nothing was recorded: leave no empty recording behind.
            let _ = std::fs::remove_dir_all(&dir);
            Err(e)
        }
    };
    s.busy.lock().expect("not poisoned").remove(&id);
    result
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
    let (status, headers, body) = conn
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
    let (mut recording, mut bound) = (recording, Vec::new());
    if r.continues.is_some() {
        let location = headers.get("location").and_then(|l| l.to_str().ok()).unwrap_or_default().to_string();
        (recording, bound) = rejoin::take_backlog(&mut conn, &location, &bearer, recording).await;
    }
    Capture::start(offered, &String::from_utf8_lossy(&body), recording, bound)
}

#[derive(Deserialize)]
struct EventsIn {
    events: Vec<Value>,
}

/// Call events from the gateway (joins, leaves, whose track is on which m-line), into the recording.
async fn events(State(s): State<ApiState>, Path(id): Path<String>, Json(r): Json<EventsIn>) -> Response {
    let well_formed = |e: &Value| {
        e["kind"]
            .as_str()
            .is_some_and(|k| (1..=32).contains(&k.len()) && k.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'))
            && e.to_string().len() <= 16 * 1024
    };
    if r.events.len() > 64 || !r.events.iter().all(well_formed) {
        return problem(
            StatusCode::BAD_REQUEST,
            "events: at most 64, each a JSON object with a lowercase \"kind\" and at most 16 KiB".into(),
        );
    }
    let live = s.live.lock().await;
    let Some(capture) = live.get(&id) else {
        return problem(StatusCode::NOT_FOUND, format!("no recording {id} in progress"));
    };
    let n = r.events.len();
    let keys: Vec<Value> = r.events.iter().filter(|e| e["kind"] == "media_key").cloned().collect();
    if !r.events.into_iter().all(|e| capture.event(e)) {
        return problem(StatusCode::CONFLICT, format!("recording {id} has stopped"));
    }
    drop(live);
    for k in &keys {
        s.live_keys.note(&s.cfg, &id, k).await;
    }
    Json(json!({"recorded": n})).into_response()
}

#[derive(Deserialize)]
struct StillIn {
    /// The track's label, e.g. `customer/camera`.
    track: String,
}

/// A PNG of what the track shows now (for KYC: the ID card held to the camera, the face in frame).
async fn still(State(s): State<ApiState>, Path(id): Path<String>, Json(r): Json<StillIn>) -> Response {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let sent = match s.live.lock().await.get(&id) {
        Some(capture) => capture.still(still::StillRequest { label: r.track.clone(), reply: tx }),
        None => return problem(StatusCode::NOT_FOUND, format!("no recording {id} in progress")),
    };
    if !sent {
        return problem(StatusCode::CONFLICT, format!("recording {id} has stopped"));
    }
    let keyframe = match tokio::time::timeout(still::WAIT + Duration::from_secs(1), rx).await {
        Ok(Ok(Ok(mut k))) => match s.live_keys.open_still(&id, &mut k) {
            Ok(()) => k,
            Err(why) => return problem(StatusCode::CONFLICT, why),
        },
        Ok(Ok(Err(why))) => return problem(StatusCode::CONFLICT, why),
        _ => return problem(StatusCode::GATEWAY_TIMEOUT, format!("recording {id}: no picture of {}", r.track)),
    };
    match tokio::task::spawn_blocking(move || still::to_png(&keyframe)).await {
        Ok(Ok(png)) => {
            log::info!("recording {id}: still of {} ({} bytes) for kyc", r.track, png.len());
            ([(axum::http::header::CONTENT_TYPE, "image/png")], png).into_response()
        }
        Ok(Err(e)) => problem(StatusCode::INTERNAL_SERVER_ERROR, e),
        Err(e) => problem(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

async fn finish(State(s): State<ApiState>, Path(id): Path<String>) -> Response {
    let Some(capture) = s.take_live(&id).await else {
        return problem(StatusCode::NOT_FOUND, format!("no recording {id} in progress"));
    };
    match finish_recording(&s, &id, capture).await {
        Ok(v) => Json(v).into_response(),
        Err(e) => {
            log::error!("recording {id}: closing failed: {e}");
            problem(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
        }
    }
}

/// Close a recording: normally when its capture was running, or, when capture had stopped by itself (a full disk),
/// like after a crash: every track cut back to its last whole record and the gap listed with the reason. Then seal.
/// A close the disk refuses is left to the sweep, which tries again until there is space.
async fn finish_recording(s: &ApiState, id: &str, capture: Capture) -> Result<Value, RecorderServiceError> {
    s.live_keys.forget(id);
    let result = close_and_seal(s, id, capture).await;
    s.busy.lock().expect("not poisoned").remove(id);
    result
}

async fn close_and_seal(s: &ApiState, id: &str, capture: Capture) -> Result<Value, RecorderServiceError> {
    let cfg = &s.cfg;
    let ended = tokio::task::spawn_blocking(move || capture.stop())
        .await
        .map_err(|e| RecorderServiceError::Media(e.to_string()))??;
    let dir = cfg.recorder.dir.join(id);
    let manifest = match ended.error {
        None => ended.recording.finish(now_us()),
        Some(why) => {
            drop(ended.recording);
            let reason = format!("recording stopped: {why}");
            let closed = vbank_recorder::recording::close_after_crash(&dir, now_us(), &reason);
            if closed.is_err() {
                s.stopped.lock().expect("not poisoned").insert(id.to_string(), reason);
            }
            closed
        }
    }
    .map_err(|e| RecorderServiceError::Recording(format!("{e} (the sweep closes it once the disk has space)")))?;
    let seal = seal(cfg, &dir, &manifest).await?;
    log::info!("recording {id} closed and sealed: {} segments", manifest.segments.len());
    Ok(json!({"id": id, "segments": manifest.segments.len(), "tracks": manifest.tracks.len(),
              "chain_head": manifest.chain_head, "seal_key": seal["key"]}))
}

/// The API: the gateway (and operators' CLI) open and close recordings; only operators search and export them.
pub fn router(state: ApiState) -> Router {
    let policy = Arc::new(
        AccessPolicy::new()
            .allow("/v1/recordings", &[Service::Gateway, Service::Cli])
            .allow("/v1/stills", &[Service::Kyc]),
    );
    Router::new()
        .route("/v1/recordings", post(open).get(playback::search))
        .route("/v1/recordings/{id}", get(playback::show))
        .route("/v1/recordings/{id}/finish", post(finish))
        .route("/v1/recordings/{id}/events", post(events).get(playback::events))
        .route("/v1/recordings/{id}/export", post(playback::export))
        .route("/v1/stills/{id}", post(still))
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

/// Recordings left open that no capture writes (a previous run was killed, or closing failed on a full disk): close
/// each without its key — cut every track back to its last whole record, list the gap, write the manifest — and have
/// keyd seal it. One a crash left open first waits for the gateway to ask for it to be continued (`continuity`).
/// `busy`: recordings being written; `reasons`: why a recording stopped, when known. Returns the recordings closed.
async fn close_orphans(cfg: &Config, busy: &HashSet<String>, reasons: &HashMap<String, String>) -> Vec<String> {
    let mut closed = Vec::new();
    let Ok(entries) = std::fs::read_dir(&cfg.recorder.dir) else { return closed };
    for dir in entries.flatten().map(|e| e.path()) {
        let name = dir.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        if busy.contains(name) || !dir.join("recording.json").exists() || dir.join("manifest.json").exists() {
            continue;
        }
        let reason = match reasons.get(name) {
            Some(r) => r.as_str(),
            None if continuity::awaiting_resume(&dir) => continue,
            None => "the recorder stopped (crash or kill) and the call did not come back to it",
        };
        match vbank_recorder::recording::close_after_crash(&dir, now_us(), reason) {
            Ok(m) => {
                closed.push(name.to_string());
                log::warn!(
                    "closed {}, which no capture was writing ({reason}): {} segments, {} gap(s)",
                    m.recording,
                    m.segments.len(),
                    m.gaps.len()
                );
                if let Err(e) = seal(cfg, &dir, &m).await {
                    log::error!("{} is closed but not sealed: {e}", m.recording);
                }
            }
            Err(e) => log::error!("could not close {} yet (tried again every 5 s): {e}", dir.display()),
        }
    }
    closed
}

/// Every second, close the recordings whose capture stopped by itself (a full disk): what was written is kept and
/// sealed, and the gateway, seeing the recorder gone, asks for a new recording (refused until there is space). Every
/// five seconds, refresh the storage check on /readyz and close recordings nobody writes any more.
async fn watch(s: ApiState) {
    let mut shutdown = s.ctx.shutdown();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    for n in 0u64.. {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => return,
        }
        let stopped: Vec<String> =
            s.live.lock().await.iter().filter(|(_, c)| c.has_stopped()).map(|(id, _)| id.clone()).collect();
        for id in stopped {
            let Some(capture) = s.take_live(&id).await else { continue };
            match finish_recording(&s, &id, capture).await {
                Ok(_) => log::warn!("recording {id} stopped during the call; what it holds is closed and sealed"),
                Err(e) => log::error!("recording {id} stopped during the call and cannot be closed yet: {e}"),
            }
        }
        if n % 5 == 4 {
            let _ = check_space(&s);
            let mut busy: HashSet<String> = s.live.lock().await.keys().cloned().collect();
            busy.extend(s.busy.lock().expect("not poisoned").iter().cloned());
            let reasons = s.stopped.lock().expect("not poisoned").clone();
            for id in close_orphans(&s.cfg, &busy, &reasons).await {
                s.stopped.lock().expect("not poisoned").remove(&id);
            }
        }
    }
}

/// Run the recorder until SIGTERM/SIGINT; recordings still open are closed and sealed first.
pub async fn run(cfg: Config) -> Result<(), RecorderServiceError> {
    let ctx = Context::new("recorder", &cfg.node.name, &["storage"]);
    ctx.stop_on_signals();
    std::fs::create_dir_all(&cfg.recorder.dir)
        .map_err(|e| RecorderServiceError::Config(format!("recorder.dir {}: {e}", cfg.recorder.dir.display())))?;
    close_orphans(&cfg, &HashSet::new(), &HashMap::new()).await;
    ctx.health.set("storage", Check::Ok);
    let api_listener = vbank_service::bind(cfg.recorder.listen, "recorder.listen").await?;
    let admin_listener = vbank_service::bind(cfg.recorder.admin_listen, "recorder.admin_listen").await?;
    let api_tls =
        vbank_tls::service_server_tls(&cfg.tls, Service::Recorder, ClientAuth::Required).map_err(ServiceError::from)?;
    let admin_tls =
        vbank_tls::service_server_tls(&cfg.tls, Service::Recorder, ClientAuth::Optional).map_err(ServiceError::from)?;
    let cfg = Arc::new(cfg);
    let state = ApiState {
        cfg: cfg.clone(),
        ctx: ctx.clone(),
        live: Arc::default(),
        busy: Arc::default(),
        stopped: Arc::default(),
        live_keys: Default::default(),
    };
    tokio::spawn(watch(state.clone()));
    let api_task =
        tokio::spawn(serve_tls(api_listener, api_tls, ctx.observed(router(state.clone()), "api"), ctx.shutdown()));
    let admin_app = ctx.observed(admin::router(ctx.health.clone(), ctx.metrics.clone()), "admin");
    let admin_task = tokio::spawn(serve_tls(admin_listener, admin_tls, admin_app, ctx.shutdown()));
    ctx.notify_systemd();
    log::info!(listen = cfg.recorder.listen.to_string().as_str(); "recorder started");
    let _ = api_task.await;
    let _ = admin_task.await;
    let open: Vec<String> = state.live.lock().await.keys().cloned().collect();
    for id in open {
        let Some(capture) = state.take_live(&id).await else { continue };
        if let Err(e) = finish_recording(&state, &id, capture).await {
            log::error!("recording {id}: closing at stop failed: {e}");
        }
    }
    log::info!("recorder stopped");
    Ok(())
}
