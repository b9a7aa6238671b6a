//! keyd: the only vbank process that talks to the bank's HSM.
//!
//! - Services reach it over mTLS on `[keyd] listen` ([`api`]); a path policy and a per-purpose policy say which
//!   service may do what: the recorder gets recording data keys, the gateway media keys, seals come from the
//!   evidence-seal key, and only the operator CLI (the HSM console) manages keys.
//! - Keys live in the HSM behind [`vbank_hsm::KeyBackend`]; [`keys::KeyService`] keeps their versions and states,
//!   issues and opens data keys, rewraps, seals. Destroy, rotate and retire need M-of-N officer approvals
//!   ([`approvals`]).
//! - Every request is written to a hash-chained, SM2-sealed audit log ([`audit`]), verifiable offline.
//! - `/readyz` follows the HSM: it fails while the token is unreachable and recovers by itself; a wrong PIN stops
//!   the retries.

pub mod api;
pub mod approvals;
pub mod audit;
mod audit_log;
pub mod ceremony;
pub mod keys;
mod media;

use std::sync::Arc;
use std::time::Duration;

use vbank_config::{Config, Service};
use vbank_hsm::{HsmError, KeyBackend, Pkcs11Backend, Profile, Purpose};
use vbank_service::{Check, Context, ServiceError, admin, exit, serve_tls};
use vbank_tls::ClientAuth;

/// Why keyd or one of its operations failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeydError {
    /// From the HSM.
    #[error(transparent)]
    Hsm(#[from] HsmError),
    /// From the store.
    #[error(transparent)]
    Store(#[from] vbank_store::StoreError),
    /// The request is valid but not allowed in the current state.
    #[error("{0}")]
    Refused(String),
    /// The request is malformed.
    #[error("{0}")]
    BadRequest(String),
    /// The caller or signer may not do this.
    #[error("{0}")]
    Forbidden(String),
    /// No usable key of that purpose exists.
    #[error("no active {} key: hold the key ceremony first (`vbank hsm ceremony`)", .0.name())]
    NoKey(Purpose),
    /// The configuration lacks something keyd needs.
    #[error("{0}")]
    Config(String),
    /// A listener or TLS failure.
    #[error(transparent)]
    Service(#[from] ServiceError),
    /// A bug or an unexpected state; details go to the log, not to callers.
    #[error("internal: {0}")]
    Internal(String),
}

impl KeydError {
    /// The process exit code for a start-up failure.
    pub fn exit_code(&self) -> i32 {
        match self {
            KeydError::Service(e) => e.exit_code(),
            KeydError::Config(_)
            | KeydError::Refused(_)
            | KeydError::Hsm(
                HsmError::Module { .. } | HsmError::PinIncorrect | HsmError::PinLocked | HsmError::Profile { .. },
            ) => exit::CONFIG,
            _ => exit::UNAVAILABLE,
        }
    }
}

fn profile(cfg: &Config) -> Result<Profile, KeydError> {
    let p = &cfg.hsm.profile;
    if p.starts_with('/') {
        let text = std::fs::read_to_string(p).map_err(|e| KeydError::Config(format!("HSM profile {p}: {e}")))?;
        Ok(Profile::parse(p, &text)?)
    } else {
        Ok(Profile::builtin(p)?)
    }
}

/// Run keyd until SIGTERM/SIGINT.
pub async fn run(cfg: Config) -> Result<(), KeydError> {
    let ctx = Context::new("keyd", &cfg.node.name, &["hsm", "store"]);
    ctx.stop_on_signals();
    let pin_ref =
        cfg.hsm.pin.clone().ok_or_else(|| {
            KeydError::Config("no PIN reference: add pin = \"credential:hsm-pin\" under [hsm]".into())
        })?;
    let pin = pin_ref.load().map_err(|e| KeydError::Config(e.to_string()))?;
    let pin = pin.expose_str().map_err(|e| KeydError::Config(e.to_string()))?.to_string();
    let profile = profile(&cfg)?;
    let backend: Arc<dyn KeyBackend> = {
        let (m, token) = (cfg.hsm.module.clone(), cfg.hsm.token_label.clone());
        let b = tokio::task::spawn_blocking(move || {
            vbank_hsm::load_module(&m).map(|c| Pkcs11Backend::new(c, &m, &token, &pin, profile))
        })
        .await
        .map_err(|e| KeydError::Internal(e.to_string()))??;
        Arc::new(b)
    };
    let store = vbank_store::open(&cfg, "keyd").await?;
    ctx.health.set("store", Check::Ok);
    let keys = Arc::new(keys::KeyService::new(backend.clone(), store.clone()).await?);
    let (sealer, due) = (keys.clone(), keys.audit.seal_due());
    tokio::spawn(async move {
        loop {
            due.notified().await;
            if let Err(e) = sealer.audit.seal(&sealer).await {
                log::error!("cannot seal the audit log (the next appends will try again): {e}");
            }
        }
    });
    // Refuse to serve with keys whose protection is wrong; an unreachable HSM is reported by /readyz instead.
    match keys.check_attributes().await {
        Err(KeydError::Hsm(HsmError::Unavailable(_) | HsmError::TokenNotFound { .. })) | Ok(()) => {}
        Err(e) => return Err(e),
    }

    let api_listener = vbank_service::bind(cfg.keyd.listen, "keyd.listen").await?;
    let admin_listener = vbank_service::bind(cfg.keyd.admin_listen, "keyd.admin_listen").await?;
    let api_tls =
        vbank_tls::service_server_tls(&cfg.tls, Service::Keyd, ClientAuth::Required).map_err(ServiceError::from)?;
    let admin_tls =
        vbank_tls::service_server_tls(&cfg.tls, Service::Keyd, ClientAuth::Optional).map_err(ServiceError::from)?;

    let state =
        api::ApiState { keys: keys.clone(), required: cfg.keyd.approvals_required, token: cfg.hsm.token_label.clone() };
    let watcher = tokio::spawn(watch_hsm(backend, ctx.clone()));
    let api_task =
        tokio::spawn(serve_tls(api_listener, api_tls, ctx.observed(api::router(state), "api"), ctx.shutdown()));
    let admin_routes =
        admin::router(ctx.health.clone(), ctx.metrics.clone()).merge(vbank_service::backup::router(store.clone()));
    let admin_app = ctx.observed(admin_routes, "admin");
    let admin_task = tokio::spawn(serve_tls(admin_listener, admin_tls, admin_app, ctx.shutdown()));
    ctx.notify_systemd();
    log::info!(listen = cfg.keyd.listen.to_string().as_str(); "keyd started");
    let _ = api_task.await;
    let _ = admin_task.await;
    watcher.abort();
    if let Err(e) = keys.audit.seal(&keys).await {
        log::error!("could not seal the audit log at stop: {e}");
    }
    log::info!("keyd stopped");
    Ok(())
}

/// Keep the `hsm` readiness check true to the HSM's state.
async fn watch_hsm(backend: Arc<dyn KeyBackend>, ctx: Context) {
    let mut shutdown = ctx.shutdown();
    loop {
        let b = backend.clone();
        let r = tokio::task::spawn_blocking(move || b.ping())
            .await
            .unwrap_or_else(|e| Err(HsmError::Unavailable(e.to_string())));
        let stop_retrying = matches!(r, Err(HsmError::PinIncorrect | HsmError::PinLocked));
        if let Err(e) = &r {
            log::error!("{e}");
        }
        ctx.health.set_result("hsm", &r);
        if stop_retrying {
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(3)) => {}
            _ = shutdown.changed() => return,
        }
    }
}
