//! The supervisor's view of the desk: `GET /api/supervisor/overview` (tellers' states, queues and their waits, live
//! calls with their media quality), `GET /api/supervisor/ratings` (the customers' latest ratings, newest first) and
//! `POST /api/supervisor/tellers/{name}/state` (set a teller away or offline).
//! Supervisors' sessions only. Recordings and the audit log: `recordings`.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::Value;
use vbank_accounts::Role as StaffRole;
use vbank_routing::TellerState;
use vbank_store::Table;

use super::{Desk, now_ms, problem};
use crate::AppState;

/// Ratings listed at most.
const RATINGS: usize = 200;

/// The supervisor whose session made the request, or the refusal.
pub(super) async fn supervisor(desk: &Desk, headers: &HeaderMap) -> Result<String, Box<Response>> {
    match desk.session(headers).await {
        Some((name, StaffRole::Supervisor)) => Ok(name),
        Some(_) => Err(Box::new(problem(StatusCode::FORBIDDEN, "supervisors only"))),
        None => Err(Box::new(problem(StatusCode::UNAUTHORIZED, "log in first (POST /api/login)"))),
    }
}

async fn overview(State(s): State<AppState>, headers: HeaderMap) -> Response {
    if let Err(refused) = supervisor(&s.desk, &headers).await {
        return *refused;
    }
    let mut o = s.desk.router.lock().await.overview(now_ms());
    // Each live call with its room and its media quality now.
    let rooms = s.desk.inner.lock().expect("not poisoned").rooms.clone();
    if let Some(calls) = o["calls"].as_array_mut() {
        for c in calls {
            let room = c["customer"].as_str().and_then(|id| rooms.get(id)).cloned();
            if let Some(room) = room {
                c["quality"] = serde_json::to_value(s.media.room_quality(&room)).unwrap_or_default();
                c["room"] = room.into();
            }
        }
    }
    Json(o).into_response()
}

async fn ratings(State(s): State<AppState>, headers: HeaderMap) -> Response {
    if let Err(refused) = supervisor(&s.desk, &headers).await {
        return *refused;
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

#[derive(Deserialize)]
struct StateIn {
    state: TellerState,
}

/// `POST /api/supervisor/tellers/{name}/state {"state":"away|offline"}`: take a teller out of the rotation (they left
/// the desk with the console open). Only the teller sets themself available.
async fn teller_state(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(teller): Path<String>,
    Json(r): Json<StateIn>,
) -> Response {
    let name = match supervisor(&s.desk, &headers).await {
        Ok(n) => n,
        Err(refused) => return *refused,
    };
    if !matches!(r.state, TellerState::Away | TellerState::Offline) {
        return problem(
            StatusCode::BAD_REQUEST,
            "a supervisor sets a teller away or offline; tellers make themselves available",
        );
    }
    match s.desk.apply(|q, now| q.set(now, &teller, r.state)).await {
        Ok(()) => {
            log::info!("supervisor {name} set teller {teller} {:?}", r.state);
            Json(serde_json::json!({"teller": teller, "state": r.state})).into_response()
        }
        Err(e) => problem(StatusCode::CONFLICT, e.to_string()),
    }
}

/// The supervisor routes.
pub(super) fn routes() -> axum::Router<AppState> {
    axum::Router::new()
        .route("/api/supervisor/tellers/{name}/state", axum::routing::post(teller_state))
        .route("/api/supervisor/overview", axum::routing::get(overview))
        .route("/api/supervisor/ratings", axum::routing::get(ratings))
}
