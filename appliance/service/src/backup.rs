//! `GET /v1/store/export` on the admin listener: the service's store as one consistent export (one read transaction
//! inside the process that owns it, since copying a redb file while it is written is unsafe), for `vbank backup`.
//! Only the operator certificate may call it.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use vbank_config::Service;
use vbank_store::Store;
use vbank_tls::AccessPolicy;

/// The path of the export.
pub const EXPORT_PATH: &str = "/v1/store/export";

/// The export route, guarded so that only the CLI's identity may read it.
pub fn router(store: Arc<dyn Store>) -> Router {
    let policy = Arc::new(AccessPolicy::new().allow(EXPORT_PATH, &[Service::Cli]));
    Router::new()
        .route(EXPORT_PATH, axum::routing::get(export))
        .layer(axum::middleware::from_fn_with_state(policy, crate::require_peer))
        .with_state(store)
}

async fn export(State(store): State<Arc<dyn Store>>) -> Response {
    match store.export().await {
        Ok(snap) => {
            log::info!(kv = snap.kv.len(), stream_entries = snap.streams.len(); "store exported for a backup");
            ([(header::CONTENT_TYPE, "application/vnd.vbank.store-export")], snap.encode()).into_response()
        }
        Err(e) => {
            log::error!("store export failed: {e}");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                axum::Json(serde_json::json!({"error": "store_unavailable", "message": e.to_string()})),
            )
                .into_response()
        }
    }
}
