//! What every vbank service process shares.
//!
//! A service builds a [`Context`] from the configuration, adds its readiness checks to [`Health`] and its metrics to
//! [`Metrics`], then serves its routers with [`serve_tls`] until [`Context::shutdown`] fires (SIGTERM or Ctrl-C).
//! Every service also serves the admin routes ([`admin::router`]) on its `admin_listen` address.
//!
//! Internal APIs are guarded by [`require_peer`]: the caller's mTLS identity must be allowed by an
//! [`vbank_tls::AccessPolicy`] for the requested path.

pub mod admin;
pub mod backup;
pub mod client;
mod health;
mod metrics;
pub mod notify;
mod serve;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio::sync::watch;
use vbank_tls::{AccessPolicy, Peer};

pub use health::{Check, Health, Report};
pub use metrics::{Listener, Metrics, observe};
pub use serve::{RemoteAddr, bind, serve_tls};

/// Exit codes, so a supervisor can tell "fix the configuration" from "try again".
pub mod exit {
    /// The configuration or the files it names are wrong: restarting will not help (EX_CONFIG).
    pub const CONFIG: i32 = 78;
    /// A dependency is unavailable (EX_UNAVAILABLE).
    pub const UNAVAILABLE: i32 = 69;
    /// Anything else (EX_SOFTWARE).
    pub const SOFTWARE: i32 = 70;
}

/// Why a service could not start or keep running.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServiceError {
    /// A listener could not be bound.
    #[error("cannot listen on {addr} ({key}): {source} (hint: {hint})")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The configuration key that names it.
        key: String,
        /// The OS error.
        source: std::io::Error,
        /// How to fix it.
        hint: String,
    },
    /// TLS material could not be loaded.
    #[error(transparent)]
    Tls(#[from] vbank_tls::TlsError),
}

impl ServiceError {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> i32 {
        match self {
            ServiceError::Bind { .. } | ServiceError::Tls(_) => exit::CONFIG,
        }
    }
}

/// The shared parts of one running service.
#[derive(Debug, Clone)]
pub struct Context {
    /// Service name (`gateway`, `keyd`, …).
    pub service: &'static str,
    /// Readiness.
    pub health: Arc<Health>,
    /// Metrics.
    pub metrics: Metrics,
    shutdown_tx: Arc<watch::Sender<bool>>,
}

impl Context {
    /// A context for `service` on `node`, with the given readiness checks pending.
    pub fn new(service: &'static str, node: &str, checks: &[&str]) -> Context {
        let (tx, _) = watch::channel(false);
        Context {
            service,
            health: Arc::new(Health::new(checks)),
            metrics: Metrics::new(service, node),
            shutdown_tx: Arc::new(tx),
        }
    }

    /// A receiver that changes to `true` when the service should stop.
    pub fn shutdown(&self) -> watch::Receiver<bool> {
        self.shutdown_tx.subscribe()
    }

    /// Ask every task of the service to stop.
    pub fn stop(&self) {
        let _ = self.shutdown_tx.send(true);
    }

    /// Stop when SIGTERM or SIGINT arrives.
    pub fn stop_on_signals(&self) {
        let ctx = self.clone();
        tokio::spawn(async move {
            let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => {
                    log::error!("cannot watch SIGTERM: {e}");
                    return;
                }
            };
            tokio::select! {
                _ = term.recv() => log::info!("SIGTERM: stopping"),
                _ = tokio::signal::ctrl_c() => log::info!("SIGINT: stopping"),
            }
            ctx.stop();
        });
    }

    /// Tell systemd (when it started this process) that the service serves, keep its watchdog fed and its status
    /// line current with the readiness checks, and say when it stops. Call once the listeners are bound.
    pub fn notify_systemd(&self) {
        if !notify::notify("READY=1\nSTATUS=starting") {
            return;
        }
        let ctx = self.clone();
        tokio::spawn(async move {
            let every = notify::watchdog_interval().unwrap_or(Duration::from_secs(5)).min(Duration::from_secs(5));
            let mut shutdown = ctx.shutdown();
            let mut last = String::new();
            loop {
                let status = notify::status(&ctx.health.report());
                let mut msg = String::new();
                if notify::watchdog_interval().is_some() {
                    msg.push_str("WATCHDOG=1\n");
                }
                if status != last {
                    msg.push_str(&format!("STATUS={status}\n"));
                    last = status;
                }
                if !msg.is_empty() {
                    notify::notify(msg.trim_end());
                }
                tokio::select! {
                    _ = tokio::time::sleep(every) => {}
                    _ = shutdown.changed() => {
                        notify::notify("STOPPING=1");
                        return;
                    }
                }
            }
        });
    }

    /// Wrap a router with metrics and access logging for `listener`.
    pub fn observed(&self, router: axum::Router, listener: &'static str) -> axum::Router {
        router.layer(axum::middleware::from_fn_with_state((self.metrics.clone(), Listener(listener)), observe))
    }
}

/// Middleware: refuse a request unless the caller's mTLS identity may call this path.
///
/// Use with `axum::middleware::from_fn_with_state(Arc::new(policy), require_peer)`.
pub async fn require_peer(State(policy): State<Arc<AccessPolicy>>, req: Request, next: Next) -> Response {
    let peer = req.extensions().get::<Peer>().cloned().unwrap_or(Peer::Anonymous);
    let path = req.uri().path().to_string();
    if policy.permits(&peer, &path) {
        next.run(req).await
    } else {
        log::warn!(peer = peer.describe().as_str(); "refused {path}: caller not permitted");
        (
            StatusCode::FORBIDDEN,
            axum::Json(serde_json::json!({
                "error": "forbidden",
                "message": format!("{} may not call {path}", peer.describe()),
            })),
        )
            .into_response()
    }
}

#[cfg(test)]
mod tests;
