//! KYC steps a teller runs during a call, through the KYC service (`vbank kyc`, mTLS). The gateway passes the
//! teller's request on with the call and its recording, shows the teller only what the KYC service masked, and writes
//! the sealed attestation into the call's recording. Pictures never pass through the gateway: the KYC service takes
//! its still from the recorder.
//!
//! - `POST /api/kyc/id-card` `{customer, side}`: read the ID card the customer holds to the camera (front or back).
//! - `POST /api/kyc/face-in-frame` `{customer}`: exactly one whole face in the customer's camera now?
//! - `POST /api/kyc/face-compare` `{customer}`: the live face against the portrait of the card read (advisory).
//! - `POST /api/kyc/credit-code` `{customer, code}`: a company's unified social credit code (corporate accounts).
//! - `POST /api/kyc/identity` `{customer, name, id_number}` or `{customer, from_card: true}`: 联网核查 through the
//!   configured vendor, with what the teller typed or what was read from the card.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use std::time::Duration;
use vbank_accounts::Role as StaffRole;
use vbank_config::Service;
use vbank_service::client;

use super::problem;
use crate::AppState;

#[derive(Deserialize)]
struct FaceIn {
    customer: String,
}

#[derive(Deserialize)]
struct CardIn {
    customer: String,
    side: String,
}

#[derive(Deserialize)]
struct CreditCodeIn {
    customer: String,
    code: String,
}

#[derive(Deserialize)]
struct IdentityIn {
    customer: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    id_number: String,
    #[serde(default)]
    from_card: bool,
}

/// The teller's call with `customer` and its recording, or the answer that refuses the request.
async fn call_of(s: &AppState, headers: &HeaderMap, customer: &str) -> Result<(String, String), Response> {
    let name = match s.desk.session(headers).await {
        Some((name, StaffRole::Teller)) => name,
        Some(_) => return Err(problem(StatusCode::FORBIDDEN, "only the teller in the call runs identity checks")),
        None => return Err(problem(StatusCode::UNAUTHORIZED, "log in first (POST /api/login)")),
    };
    let Some(room) = s.desk.teller_room(&name, customer).await else {
        return Err(problem(StatusCode::FORBIDDEN, "you are not in a call with this customer"));
    };
    let Some(recording) = s.calls.recording_of(&room).await else {
        return Err(problem(
            StatusCode::CONFLICT,
            "this call is not being recorded, so no identity check can be attested: wait for the recording or end the call",
        ));
    };
    Ok((room, recording))
}

/// Ask the KYC service; on success record the sealed attestation and answer with what the teller may see.
async fn check(s: &AppState, room: &str, path: &str, body: Value) -> Response {
    let Some(cfg) = s.desk.cfg.clone() else {
        return problem(StatusCode::SERVICE_UNAVAILABLE, "no KYC service on this node");
    };
    let answer = client::post_service_answer(
        &cfg.tls,
        Service::Gateway,
        Service::Kyc,
        cfg.kyc.listen,
        path,
        &body,
        Duration::from_secs(20),
    )
    .await;
    match answer {
        Ok((status, mut answer)) if status.is_success() => {
            let attestation = answer.get_mut("attestation").map(Value::take).unwrap_or(Value::Null);
            if attestation.is_object() {
                s.calls.record(room, attestation).await;
            }
            if let Some(a) = answer.as_object_mut() {
                a.remove("attestation");
            }
            Json(answer).into_response()
        }
        // The KYC service's own refusal (read the card first; the engines are loading) is for the teller as it is.
        Ok((status, answer)) => {
            let why = answer["error"].as_str().unwrap_or("the KYC service refused the check").to_string();
            log::warn!(room = room; "KYC check refused: {status} {why}");
            let status = if status.is_client_error() { status } else { StatusCode::SERVICE_UNAVAILABLE };
            problem(status, why)
        }
        Err(e) => {
            log::warn!(room = room; "KYC check failed: {e}");
            problem(StatusCode::SERVICE_UNAVAILABLE, format!("the identity check could not run: {e}"))
        }
    }
}

async fn face_in_frame(State(s): State<AppState>, headers: HeaderMap, Json(r): Json<FaceIn>) -> Response {
    on_camera(&s, &headers, &r.customer, "/v1/face-in-frame").await
}

async fn face_compare(State(s): State<AppState>, headers: HeaderMap, Json(r): Json<FaceIn>) -> Response {
    on_camera(&s, &headers, &r.customer, "/v1/face-compare").await
}

/// A check on the customer's camera now: the KYC service takes the still from the recording.
async fn on_camera(s: &AppState, headers: &HeaderMap, customer: &str, path: &str) -> Response {
    match call_of(s, headers, customer).await {
        Ok((room, recording)) => check(s, &room, path, json!({"call": room, "recording": recording})).await,
        Err(refused) => refused,
    }
}

async fn id_card(State(s): State<AppState>, headers: HeaderMap, Json(r): Json<CardIn>) -> Response {
    match call_of(&s, &headers, &r.customer).await {
        Ok((room, recording)) => {
            check(&s, &room, "/v1/id-card", json!({"call": room, "recording": recording, "side": r.side})).await
        }
        Err(refused) => refused,
    }
}

async fn credit_code(State(s): State<AppState>, headers: HeaderMap, Json(r): Json<CreditCodeIn>) -> Response {
    match call_of(&s, &headers, &r.customer).await {
        Ok((room, _)) => check(&s, &room, "/v1/credit-code", json!({"call": room, "code": r.code})).await,
        Err(refused) => refused,
    }
}

async fn identity(State(s): State<AppState>, headers: HeaderMap, Json(r): Json<IdentityIn>) -> Response {
    match call_of(&s, &headers, &r.customer).await {
        Ok((room, _)) => {
            let body = json!({"call": room, "name": r.name, "id_number": r.id_number, "from_card": r.from_card});
            check(&s, &room, "/v1/identity", body).await
        }
        Err(refused) => refused,
    }
}

/// The KYC routes.
pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/kyc/id-card", axum::routing::post(id_card))
        .route("/api/kyc/face-in-frame", axum::routing::post(face_in_frame))
        .route("/api/kyc/face-compare", axum::routing::post(face_compare))
        .route("/api/kyc/identity", axum::routing::post(identity))
        .route("/api/kyc/credit-code", axum::routing::post(credit_code))
}
