//! The supervisor console's recordings and audit views. The gateway asks the recorder and keyd over mTLS for the
//! supervisor it has logged in, naming them; the recorder and keyd write every search, view, export and audit read
//! into keyd's audit log under that name before answering, as they do for an operator's CLI. A playback is the
//! recorder's export (fused on the fly, watermarked with the supervisor's name) streamed through to the browser.
//!
//! - `GET /api/supervisor/recordings?call=…`: recordings, newest first.
//! - `GET /api/supervisor/recordings/{id}/events`: the call's events.
//! - `GET /api/supervisor/recordings/{id}/video?reason=…`: the MP4 (fragmented, plays as it arrives).
//! - `GET /api/supervisor/audit`: keyd's latest audit entries.

use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;
use serde::Deserialize;
use serde_json::json;
use vbank_config::{Config, Service};
use vbank_service::client::{Connection, encode_query_value as encode};

use super::problem;
use super::supervisor::supervisor;
use crate::AppState;

/// An id or call name as the recorder makes them: letters, digits, `-` and `_`.
fn plain(s: &str) -> bool {
    !s.is_empty() && s.len() <= 64 && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// A request to the recorder or keyd as the gateway; the answer as it arrives.
async fn ask(
    cfg: &Config,
    to: Service,
    method: Method,
    path: &str,
    body: Option<serde_json::Value>,
) -> Result<(StatusCode, HeaderMap, hyper::body::Incoming), String> {
    let tls = vbank_tls::internal_client_config(&cfg.tls, Service::Gateway).map_err(|e| e.to_string())?;
    let addr = if to == Service::Keyd { cfg.keyd.listen } else { cfg.recorder.listen };
    let name = vbank_tls::service_dns_name(to);
    let mut c = Connection::open(tls, addr, &name, Duration::from_secs(10)).await.map_err(|e| e.to_string())?;
    let headers: &[(&str, &str)] = if body.is_some() { &[("content-type", "application/json")] } else { &[] };
    c.request_streaming(method, path, headers, body.map(|b| b.to_string().into())).await.map_err(|e| e.to_string())
}

/// A JSON answer passed through with its status.
async fn json_from(cfg: &Config, to: Service, method: Method, path: &str, body: Option<serde_json::Value>) -> Response {
    match ask(cfg, to, method, path, body).await {
        Ok((status, _, incoming)) => match incoming.collect().await {
            Ok(b) => (status, [(header::CONTENT_TYPE, "application/json")], b.to_bytes()).into_response(),
            Err(e) => problem(StatusCode::BAD_GATEWAY, format!("{} answered badly: {e}", to.name())),
        },
        Err(e) => problem(StatusCode::BAD_GATEWAY, format!("the {} cannot be reached: {e}", to.name())),
    }
}

/// The configuration and the supervisor's name, or the refusal.
async fn admit(s: &AppState, headers: &HeaderMap) -> Result<(std::sync::Arc<Config>, String), Box<Response>> {
    let name = supervisor(&s.desk, headers).await?;
    let cfg = s.desk.cfg.clone().ok_or_else(|| Box::new(problem(StatusCode::SERVICE_UNAVAILABLE, "no recorder")))?;
    Ok((cfg, name))
}

#[derive(Deserialize)]
struct SearchQuery {
    #[serde(default)]
    call: Option<String>,
}

async fn search(State(s): State<AppState>, headers: HeaderMap, Query(q): Query<SearchQuery>) -> Response {
    let (cfg, name) = match admit(&s, &headers).await {
        Ok(v) => v,
        Err(refused) => return *refused,
    };
    let mut path = format!("/v1/recordings?viewer={}&limit=50", encode(&name));
    if let Some(call) = q.call.filter(|c| !c.trim().is_empty()) {
        if !plain(call.trim()) {
            return problem(StatusCode::BAD_REQUEST, "call: the call's name, e.g. call-1a2b3c4d5e6f7a8b");
        }
        path.push_str(&format!("&call={}", call.trim()));
    }
    json_from(&cfg, Service::Recorder, Method::GET, &path, None).await
}

async fn events(State(s): State<AppState>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    let (cfg, name) = match admit(&s, &headers).await {
        Ok(v) => v,
        Err(refused) => return *refused,
    };
    if !plain(&id) {
        return problem(StatusCode::NOT_FOUND, "no such recording");
    }
    let path = format!("/v1/recordings/{id}/events?viewer={}", encode(&name));
    json_from(&cfg, Service::Recorder, Method::GET, &path, None).await
}

#[derive(Deserialize)]
struct VideoQuery {
    #[serde(default)]
    reason: String,
}

async fn video(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<VideoQuery>,
) -> Response {
    let (cfg, name) = match admit(&s, &headers).await {
        Ok(v) => v,
        Err(refused) => return *refused,
    };
    if !plain(&id) {
        return problem(StatusCode::NOT_FOUND, "no such recording");
    }
    let reason = q.reason.trim();
    if reason.is_empty() || reason.chars().count() > 200 {
        return problem(StatusCode::BAD_REQUEST, "give the reason for watching (1-200 characters); it is audited");
    }
    let body = json!({"viewer": name, "reason": reason});
    match ask(&cfg, Service::Recorder, Method::POST, &format!("/v1/recordings/{id}/export"), Some(body)).await {
        Ok((status, _, incoming)) if status.is_success() => {
            ([(header::CONTENT_TYPE, "video/mp4"), (header::CACHE_CONTROL, "private, no-store")], Body::new(incoming))
                .into_response()
        }
        Ok((status, _, incoming)) => {
            let text = incoming.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
            (status, [(header::CONTENT_TYPE, "application/json")], text).into_response()
        }
        Err(e) => problem(StatusCode::BAD_GATEWAY, format!("the recorder cannot be reached: {e}")),
    }
}

async fn audit(State(s): State<AppState>, headers: HeaderMap) -> Response {
    let (cfg, name) = match admit(&s, &headers).await {
        Ok(v) => v,
        Err(refused) => return *refused,
    };
    let body = json!({"on_behalf": name, "limit": 200});
    json_from(&cfg, Service::Keyd, Method::POST, "/v1/audit/recent", Some(body)).await
}

/// The routes.
pub(super) fn routes() -> axum::Router<AppState> {
    axum::Router::new()
        .route("/api/supervisor/recordings", axum::routing::get(search))
        .route("/api/supervisor/recordings/{id}/events", axum::routing::get(events))
        .route("/api/supervisor/recordings/{id}/video", axum::routing::get(video))
        .route("/api/supervisor/audit", axum::routing::get(audit))
}

#[cfg(test)]
mod tests {
    #[test]
    fn names_are_checked_and_values_encoded() {
        assert!(super::plain("call-0a1b") && super::plain("rec_1"));
        assert!(!super::plain("../x") && !super::plain("a&viewer=b") && !super::plain(""));
        assert_eq!(vbank_service::client::encode_query_value("王 五&x"), "%E7%8E%8B%20%E4%BA%94%26x");
    }
}
