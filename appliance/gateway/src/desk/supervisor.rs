//! The supervisor's view of the desk: `GET /api/supervisor/overview` (tellers' states, queues and their waits, live
//! calls) and `GET /api/supervisor/ratings` (the customers' latest ratings, newest first). Supervisors' sessions only.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use vbank_accounts::Role as StaffRole;
use vbank_store::Table;

use super::{Desk, now_ms, problem};
use crate::AppState;

/// Ratings listed at most.
const RATINGS: usize = 200;

/// Why the request is refused, unless it comes from a supervisor's session.
fn not_supervisor(desk: &Desk, headers: &HeaderMap) -> Option<Response> {
    match desk.session(headers) {
        Some((_, StaffRole::Supervisor)) => None,
        Some(_) => Some(problem(StatusCode::FORBIDDEN, "supervisors only")),
        None => Some(problem(StatusCode::UNAUTHORIZED, "log in first (POST /api/login)")),
    }
}

async fn overview(State(s): State<AppState>, headers: HeaderMap) -> Response {
    if let Some(refused) = not_supervisor(&s.desk, &headers) {
        return refused;
    }
    Json(s.desk.router.lock().await.overview(now_ms())).into_response()
}

async fn ratings(State(s): State<AppState>, headers: HeaderMap) -> Response {
    if let Some(refused) = not_supervisor(&s.desk, &headers) {
        return refused;
    }
    let Some(store) = &s.desk.store else { return Json(serde_json::json!({"ratings": []})).into_response() };
    match store.list(Table::Calls, "rating/", 10_000).await {
        Ok(rows) => {
            let mut list: Vec<Value> = rows.iter().filter_map(|(_, v)| serde_json::from_slice(&v.value).ok()).collect();
            list.sort_by_key(|r: &Value| std::cmp::Reverse(r["at_ms"].as_u64().unwrap_or(0)));
            list.truncate(RATINGS);
            Json(serde_json::json!({"ratings": list})).into_response()
        }
        Err(e) => problem(StatusCode::SERVICE_UNAVAILABLE, format!("the ratings could not be read: {e}")),
    }
}

/// The supervisor routes.
pub(super) fn routes() -> axum::Router<AppState> {
    axum::Router::new()
        .route("/api/supervisor/overview", axum::routing::get(overview))
        .route("/api/supervisor/ratings", axum::routing::get(ratings))
}
