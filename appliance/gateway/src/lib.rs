//! The customer-facing gateway.
//!
//! Today it serves the customer and teller pages and `/api/status` over HTTPS, reports readiness, and records this
//! node's heartbeat in the store (the basis of routing new calls to the least-loaded node). The WebRTC SFU,
//! signalling and queueing live here too as they arrive.

mod accounts_api;
pub mod consent;
pub mod desk;
pub mod e2ee;
pub mod failover;
mod ice_tcp;
pub mod media;
pub mod recording;
pub mod room_messages;
pub mod signalling;
mod web;
mod whip;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use vbank_config::{Config, Service};
use vbank_service::{Context, ServiceError, admin, serve_tls};
use vbank_store::{Expect, Store, Table};
use vbank_tls::ClientAuth;

/// Why the gateway failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GatewayError {
    /// A listener or TLS failure.
    #[error(transparent)]
    Service(#[from] ServiceError),
    /// The store could not be opened at start.
    #[error(transparent)]
    Store(#[from] vbank_store::StoreError),
}

impl GatewayError {
    /// The process exit code.
    pub fn exit_code(&self) -> i32 {
        match self {
            GatewayError::Service(e) => e.exit_code(),
            GatewayError::Store(_) => vbank_service::exit::UNAVAILABLE,
        }
    }
}

/// What the public routes need.
#[derive(Clone)]
pub struct AppState {
    /// The service context (readiness, metrics).
    pub ctx: Context,
    /// This node's name.
    pub node: String,
    /// Development mode.
    pub dev: bool,
    /// The media loop.
    pub media: media::Media,
    /// Public keys that verify call tokens, refreshed from keyd.
    pub token_keys: TokenKeys,
    /// The shared store (node heartbeats for routing); `None` in tests of the router alone.
    pub store: Option<Arc<dyn Store>>,
    /// Chat, link, document and whiteboard messages per room.
    pub rooms: room_messages::Rooms,
    /// The calls and their recordings.
    pub calls: recording::Calls,
    /// Staff login, the customer queue, ringing tellers.
    pub desk: desk::Desk,
}

/// The call-token verification keys (label, key), shared with the refresher.
pub type TokenKeys = Arc<std::sync::RwLock<Vec<(String, vbank_crypto::p256sig::P256PublicKey)>>>;

/// The public router (pages, assets, status), without listeners: tests drive it with `oneshot`.
pub fn app(state: AppState) -> Router {
    Router::new()
        .merge(web::routes())
        .route("/api/status", get(status))
        .route("/api/route", get(route))
        .merge(desk::routes())
        .route("/ws", get(signalling::ws))
        .route("/assets/e2ee/sframe.wasm", get(e2ee::E2ee::wasm))
        .route("/whip/{room}", axum::routing::post(whip::whip))
        .route("/whep/{room}", axum::routing::post(whip::whep))
        .route("/whip/{room}/{id}", axum::routing::delete(whip::leave))
        .route("/whep/{room}/{id}", axum::routing::delete(whip::leave))
        .route("/whep/{room}/{id}/backlog", axum::routing::get(whip::backlog))
        .layer(axum::extract::DefaultBodyLimit::max(signalling::MAX_MESSAGE))
        .fallback(not_found)
        .layer(axum::middleware::from_fn(web::security_headers))
        .with_state(state)
}

async fn status(State(s): State<AppState>) -> Response {
    let report = s.ctx.health.report();
    axum::Json(serde_json::json!({
        "service": "vbank",
        "node": s.node,
        "version": env!("CARGO_PKG_VERSION"),
        "dev": s.dev,
        "ready": report.ready,
        "checks": report.checks,
    }))
    .into_response()
}

/// A heartbeat older than this means the node is not taking calls.
const HEARTBEAT_STALE_S: u64 = 15;

/// The least-loaded healthy gateway node for a new call: fresh heartbeat, fewest calls, then lowest CPU.
pub fn choose_node(records: &[serde_json::Value], now_unix: u64) -> Option<serde_json::Value> {
    records
        .iter()
        .filter(|r| r["heartbeat_unix"].as_u64().is_some_and(|t| now_unix.saturating_sub(t) <= HEARTBEAT_STALE_S))
        .min_by(|a, b| {
            let key = |r: &serde_json::Value| {
                (r["calls"].as_i64().unwrap_or(i64::MAX), r["cpu_percent"].as_f64().unwrap_or(f64::MAX))
            };
            let (ka, kb) = (key(a), key(b));
            ka.0.cmp(&kb.0).then(ka.1.total_cmp(&kb.1))
        })
        .cloned()
}

async fn route(State(s): State<AppState>) -> Response {
    let Some(store) = &s.store else {
        return (StatusCode::SERVICE_UNAVAILABLE, axum::Json(serde_json::json!({"error": "unavailable"})))
            .into_response();
    };
    let records: Vec<serde_json::Value> = match store.list(Table::Nodes, "", 1000).await {
        Ok(rows) => rows.iter().filter_map(|(_, v)| serde_json::from_slice(&v.value).ok()).collect(),
        Err(e) => {
            log::warn!("routing: store unavailable: {e}");
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                axum::Json(
                    serde_json::json!({"error": "unavailable", "message": "routing data unavailable, try again"}),
                ),
            )
                .into_response();
        }
    };
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    match choose_node(&records, now) {
        Some(r) => axum::Json(serde_json::json!({"node": r["node"], "url": r["public_url"]})).into_response(),
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(serde_json::json!({"error": "no_node", "message": "no gateway node is taking calls"})),
        )
            .into_response(),
    }
}

async fn not_found(uri: axum::http::Uri) -> Response {
    (
        StatusCode::NOT_FOUND,
        axum::Json(serde_json::json!({"error": "not_found", "message": format!("no such page: {}", uri.path())})),
    )
        .into_response()
}

/// Run the gateway until SIGTERM/SIGINT.
pub async fn run(cfg: Config) -> Result<(), GatewayError> {
    let checks: &[&str] = if cfg.node.dev_mode { &["store"] } else { &["store", "token_keys"] };
    let ctx = Context::new("gateway", &cfg.node.name, checks);
    ctx.stop_on_signals();
    let public_tls = vbank_tls::public_server_tls(&cfg.tls).map_err(ServiceError::from)?;
    let admin_tls =
        vbank_tls::service_server_tls(&cfg.tls, Service::Gateway, ClientAuth::Optional).map_err(ServiceError::from)?;
    // At start an unreachable store is an error (one line, non-zero exit); later outages only fail /readyz.
    let store = vbank_store::open(&cfg, "gateway").await?;
    let public = vbank_service::bind(cfg.gateway.listen, "gateway.listen").await?;
    let admin_l = vbank_service::bind(cfg.gateway.admin_listen, "gateway.admin_listen").await?;

    let media_metrics = media::MediaMetrics::default();
    ctx.metrics.register(|r| media_metrics.register(r));
    let load_source = media_metrics.clone();
    let (summaries_tx, summaries) = tokio::sync::mpsc::unbounded_channel();
    let registry = failover::Registry::new(store.clone(), &cfg.node.name);
    let calls = recording::Calls::new(cfg.clone()).with_registry(registry);
    // A lease matters only where other nodes share the store; an embedded store is this node's alone.
    let shared = matches!(cfg.store, vbank_config::StoreConfig::Postgres(_));
    let lease =
        shared.then(|| tokio::spawn(failover::keep_lease(store.clone(), cfg.node.name.clone(), ctx.shutdown())));
    let desk = desk::Desk::new(Some(Arc::new(cfg.clone())), Some(store.clone()), calls.clone()).await;
    let desk_tick = tokio::spawn(desk.clone().tick());
    let quality_task = tokio::spawn(record_quality(store.clone(), summaries, calls.clone()));
    let opts = media::MediaOptions {
        listen: cfg.gateway.media_listen,
        advertise: cfg.gateway.media_advertise,
        tcp_advertise: cfg.gateway.media_tcp_advertise,
        max_participants: cfg.gateway.max_participants,
        recorder_backlog: Duration::from_secs(u64::from(cfg.gateway.recorder_backlog_s)),
        recorder_backlog_budget: cfg.gateway.recorder_backlog_mb as usize * (1 << 20),
    };
    let media = media::start(opts, media_metrics, summaries_tx).map_err(|e| ServiceError::Bind {
        addr: cfg.gateway.media_listen,
        key: "gateway.media_listen".into(),
        hint: "another process uses this UDP port: stop it or change gateway.media_listen".into(),
        source: e,
    })?;
    let token_keys = TokenKeys::default();
    let refresher = tokio::spawn(refresh_token_keys(cfg.clone(), token_keys.clone(), ctx.clone()));
    let state = AppState {
        ctx: ctx.clone(),
        node: cfg.node.name.clone(),
        dev: cfg.node.dev_mode,
        media,
        token_keys,
        store: Some(store.clone()),
        rooms: Default::default(),
        calls,
        desk: desk.clone(),
    };
    let heartbeat = tokio::spawn(heartbeat(cfg.clone(), store.clone(), ctx.clone(), load_source.clone()));
    let public_task = tokio::spawn(serve_tls(public, public_tls, ctx.observed(app(state), "public"), ctx.shutdown()));
    let mut admin_routes =
        admin::router(ctx.health.clone(), ctx.metrics.clone()).merge(vbank_service::backup::router(store));
    if let Some(a) = desk.accounts() {
        admin_routes = admin_routes.merge(accounts_api::router(a.clone()));
    }
    let admin_app = ctx.observed(admin_routes, "admin");
    let admin_task = tokio::spawn(serve_tls(admin_l, admin_tls, admin_app, ctx.shutdown()));
    ctx.notify_systemd();
    log::info!(url = cfg.gateway.public_url.as_str(); "gateway started");
    let _ = public_task.await;
    let _ = admin_task.await;
    heartbeat.abort();
    if let Some(lease) = lease {
        lease.abort();
    }
    refresher.abort();
    desk_tick.abort();
    quality_task.abort();
    log::info!("gateway stopped");
    Ok(())
}

/// Fetch the call-token public keys from keyd every 30 s. Outside development mode they are a readiness check: a
/// gateway that cannot verify tokens cannot admit anyone.
async fn refresh_token_keys(cfg: Config, keys: TokenKeys, ctx: Context) {
    let mut shutdown = ctx.shutdown();
    let name = vbank_tls::service_dns_name(Service::Keyd);
    loop {
        let r = async {
            let tls = vbank_tls::internal_client_config(&cfg.tls, Service::Gateway).map_err(|e| e.to_string())?;
            let (s, body) = vbank_service::client::call(
                tls,
                cfg.keyd.listen,
                &name,
                vbank_service::client::Method::GET,
                "/v1/token/keys",
                None,
                Duration::from_secs(5),
            )
            .await
            .map_err(|e| e.to_string())?;
            if !s.is_success() {
                return Err(format!("keyd answered {s}"));
            }
            let v: serde_json::Value = serde_json::from_slice(&body).map_err(|e| e.to_string())?;
            let mut fresh = Vec::new();
            for k in v["keys"].as_array().into_iter().flatten() {
                let pem = k["pem"].as_str().unwrap_or_default();
                let key = vbank_crypto::p256sig::P256PublicKey::from_pem(pem).map_err(|e| e.to_string())?;
                fresh.push((k["kid"].as_str().unwrap_or_default().to_string(), key));
            }
            if fresh.is_empty() {
                return Err("keyd has no call-token key yet (hold the key ceremony)".into());
            }
            Ok(fresh)
        }
        .await;
        match r {
            Ok(fresh) => {
                *keys.write().unwrap_or_else(|p| p.into_inner()) = fresh;
                if !cfg.node.dev_mode {
                    ctx.health.set("token_keys", vbank_service::Check::Ok);
                }
            }
            Err(e) => {
                log::debug!("call-token keys not refreshed: {e}");
                if !cfg.node.dev_mode {
                    ctx.health.set("token_keys", vbank_service::Check::Failing(e));
                }
            }
        }
        // Until the ceremony has made a call-token key, look again soon: tokens work seconds after it.
        let have_keys = !keys.read().unwrap_or_else(|p| p.into_inner()).is_empty();
        let wait = Duration::from_secs(if have_keys { 30 } else { 2 });
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// Keep each departing participant's quality summary with its call (`calls/quality/<room>/<participant>`), and
/// close the call's recording when its last participant has left; tell the recorder whose track each of its m-lines
/// carries.
async fn record_quality(
    store: Arc<dyn Store>,
    mut summaries: tokio::sync::mpsc::UnboundedReceiver<media::CallEvent>,
    calls: recording::Calls,
) {
    while let Some(event) = summaries.recv().await {
        let (id, s) = match event {
            media::CallEvent::Left(id, s) => (id, s),
            media::CallEvent::Bound { room, mid, role, kind } => {
                calls.track_bound(&room, &mid, &vbank_gateway_core::backlog::label(role, kind)).await;
                continue;
            }
        };
        calls.left(&s.room, s.role).await;
        let q = &s.quality;
        let record = serde_json::json!({
            "room": s.room,
            "participant": id.0,
            "role": s.role.name(),
            "left_unix": SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0),
            "rtt_ms": q.rtt_ms,
            "ingress_loss": q.ingress_loss,
            "egress_loss": q.egress_loss,
            "bwe_bps": q.bwe_bps,
            "bytes_rx": q.bytes_rx,
            "bytes_tx": q.bytes_tx,
            "nacks_sent": q.nacks_sent,
            "nacks_received": q.nacks_received,
            "keyframe_requests_sent": q.keyframe_requests_sent,
            "keyframe_requests_received": q.keyframe_requests_received,
            "gaps": q.gaps,
            "jitter_ms": q.jitter_ms,
        });
        let key = format!("quality/{}/{}", s.room, id.0);
        if let Err(e) = store.put(Table::Calls, &key, record.to_string().as_bytes(), Expect::Any).await {
            log::warn!(room = s.room.as_str(); "could not keep the call quality summary: {e}");
        }
    }
}

/// CPU seconds this process has used (user + system), from /proc/self/stat.
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name; utime and stime are the 12th and 13th of those.
    let rest = stat.rsplit(')').next()?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0) // USER_HZ is 100 on Linux
}

/// Record this node's heartbeat and load in the store every few seconds (the basis of routing a new call to the
/// least-loaded healthy node); the store check follows the outcome.
async fn heartbeat(cfg: Config, store: Arc<dyn Store>, ctx: Context, media: media::MediaMetrics) {
    let mut shutdown = ctx.shutdown();
    let mut last = (std::time::Instant::now(), media.load().bytes_out, cpu_seconds().unwrap_or(0.0));
    loop {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        let load = media.load();
        let (t, cpu) = (std::time::Instant::now(), cpu_seconds().unwrap_or(0.0));
        let secs = t.duration_since(last.0).as_secs_f64().max(0.001);
        let egress_bps = (load.bytes_out.saturating_sub(last.1)) as f64 * 8.0 / secs;
        let cpu_percent = (cpu - last.2).max(0.0) / secs * 100.0;
        last = (t, load.bytes_out, cpu);
        let record = serde_json::json!({
            "node": cfg.node.name,
            "public_url": cfg.gateway.public_url,
            "calls": load.rooms,
            "participants": load.participants,
            "egress_bps": egress_bps.round(),
            "cpu_percent": (cpu_percent * 10.0).round() / 10.0,
            "heartbeat_unix": now,
        });
        let r = store.put(Table::Nodes, &cfg.node.name, record.to_string().as_bytes(), Expect::Any).await;
        ctx.health.set_result("store", &r.map(|_| ()));
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(5)) => {}
            _ = shutdown.changed() => return,
        }
    }
}

#[cfg(test)]
mod tests;
