//! keyd: the only vbank process that talks to the bank's HSM.
//!
//! Services reach it over mTLS on `[keyd] listen`; an [`AccessPolicy`] says which service may call which endpoint.
//! The HSM connection ([`Hsm`]) is checked every few seconds: `/readyz` fails while the token is unreachable and
//! recovers by itself when it returns; a wrong PIN stops the retries (tokens lock after repeated failures).

mod hsm;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use vbank_config::{Config, Service};
use vbank_service::{Check, Context, ServiceError, admin, exit, require_peer, serve_tls};
use vbank_tls::{AccessPolicy, ClientAuth};

pub use hsm::{Hsm, HsmStatus};

/// Why keyd failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeydError {
    /// The PKCS#11 module could not be loaded or initialized.
    #[error("cannot load PKCS#11 module {}: {detail} (hint: install the HSM vendor's client and set [hsm] module to its library)", path.display())]
    Module {
        /// Module path.
        path: PathBuf,
        /// Loader or C_Initialize error.
        detail: String,
    },
    /// No token with the configured label.
    #[error(
        "no HSM token labelled {label:?} (tokens present: {seen:?}) (hint: set [hsm] token_label, or initialise the token)"
    )]
    TokenNotFound {
        /// Wanted label.
        label: String,
        /// Labels present.
        seen: Vec<String>,
    },
    /// The user PIN was refused.
    #[error(
        "the HSM refused the user PIN (hint: fix the PIN credential named by [hsm] pin and restart keyd; keyd will not retry, as the token locks after repeated failures)"
    )]
    PinIncorrect,
    /// The user PIN is locked.
    #[error("the HSM user PIN is locked (hint: a security officer must unlock it with the SO PIN)")]
    PinLocked,
    /// Any other PKCS#11 failure (device removed, session closed, …).
    #[error("HSM error: {0}")]
    Hsm(String),
    /// The configuration lacks something keyd needs.
    #[error("{0}")]
    Config(String),
    /// A listener or TLS failure.
    #[error(transparent)]
    Service(#[from] ServiceError),
}

impl KeydError {
    /// The process exit code for a start-up failure.
    pub fn exit_code(&self) -> i32 {
        match self {
            KeydError::Service(e) => e.exit_code(),
            KeydError::Module { .. } | KeydError::Config(_) | KeydError::PinIncorrect | KeydError::PinLocked => {
                exit::CONFIG
            }
            _ => exit::UNAVAILABLE,
        }
    }
}

/// Which service may call which keyd endpoint.
pub fn policy() -> AccessPolicy {
    AccessPolicy::new().allow("/v1/hsm/status", &[Service::Gateway, Service::Recorder, Service::Kyc, Service::Cli])
}

#[derive(Clone)]
struct ApiState {
    hsm: Arc<Hsm>,
}

fn api(hsm: Arc<Hsm>) -> Router {
    Router::new()
        .route("/v1/hsm/status", get(status))
        .layer(axum::middleware::from_fn_with_state(Arc::new(policy()), require_peer))
        .with_state(ApiState { hsm })
}

async fn status(State(s): State<ApiState>) -> Response {
    let hsm = s.hsm.clone();
    match tokio::task::spawn_blocking(move || hsm.status()).await {
        Ok(Ok(st)) => axum::Json(st).into_response(),
        Ok(Err(e)) => (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(serde_json::json!({"error": "hsm_unavailable", "message": e.to_string()})),
        )
            .into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

/// Run keyd until SIGTERM/SIGINT.
pub async fn run(cfg: Config) -> Result<(), KeydError> {
    let ctx = Context::new("keyd", &cfg.node.name, &["hsm"]);
    ctx.stop_on_signals();
    let pin_ref =
        cfg.hsm.pin.clone().ok_or_else(|| {
            KeydError::Config("no PIN reference: add pin = \"credential:hsm-pin\" under [hsm]".into())
        })?;
    let pin = pin_ref.load().map_err(|e| KeydError::Config(e.to_string()))?;
    let pin = pin.expose_str().map_err(|e| KeydError::Config(e.to_string()))?.to_string();
    let hsm = {
        let (m, l, p) = (cfg.hsm.module.clone(), cfg.hsm.token_label.clone(), cfg.hsm.profile.clone());
        let h = tokio::task::spawn_blocking(move || Hsm::load_module(&m).map(|ctx| Hsm::new(ctx, &m, &l, &p, &pin)))
            .await
            .map_err(|e| KeydError::Hsm(e.to_string()))??;
        Arc::new(h)
    };

    let api_listener = vbank_service::bind(cfg.keyd.listen, "keyd.listen").await?;
    let admin_listener = vbank_service::bind(cfg.keyd.admin_listen, "keyd.admin_listen").await?;
    let api_tls =
        vbank_tls::service_server_config(&cfg.tls, Service::Keyd, ClientAuth::Required).map_err(ServiceError::from)?;
    let admin_tls =
        vbank_tls::service_server_config(&cfg.tls, Service::Keyd, ClientAuth::Optional).map_err(ServiceError::from)?;

    let watcher = tokio::spawn(watch_hsm(hsm.clone(), ctx.clone()));
    let api_task = tokio::spawn(serve_tls(api_listener, api_tls, ctx.observed(api(hsm), "api"), ctx.shutdown()));
    let admin_app = ctx.observed(admin::router(ctx.health.clone(), ctx.metrics.clone()), "admin");
    let admin_task = tokio::spawn(serve_tls(admin_listener, admin_tls, admin_app, ctx.shutdown()));
    log::info!(listen = cfg.keyd.listen.to_string().as_str(); "keyd started");
    let _ = api_task.await;
    let _ = admin_task.await;
    watcher.abort();
    log::info!("keyd stopped");
    Ok(())
}

/// Keep the readiness check true to the HSM's state.
async fn watch_hsm(hsm: Arc<Hsm>, ctx: Context) {
    let mut shutdown = ctx.shutdown();
    loop {
        let h = hsm.clone();
        let r = tokio::task::spawn_blocking(move || h.ensure_session())
            .await
            .unwrap_or_else(|e| Err(KeydError::Hsm(e.to_string())));
        let stop_retrying = matches!(r, Err(KeydError::PinIncorrect | KeydError::PinLocked));
        if let Err(e) = &r {
            log::error!("{e}");
        }
        ctx.health.set(
            "hsm",
            match r {
                Ok(()) => Check::Ok,
                Err(e) => Check::Failing(e.to_string()),
            },
        );
        if stop_retrying {
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(3)) => {}
            _ = shutdown.changed() => return,
        }
    }
}
