//! WHIP (RFC 9725) and WHEP: `POST /whip/{room}` publishes, `POST /whep/{room}` plays, each with an SDP offer
//! (`Content-Type: application/sdp`) and `Authorization: Bearer <call token>`; `201 Created` carries the SDP answer
//! and a `Location`; `DELETE` on it leaves. These clients cannot renegotiate: WHIP publishes what it offered, WHEP
//! receives the room's tracks on the receiving m-lines of its offer, by kind. An end-to-end encrypted call takes no
//! WHIP publisher (it could not encrypt); a WHEP player of one receives frames it cannot open.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tokio::sync::{mpsc, oneshot};
use vbank_gateway_core::{ParticipantId, Role, SfuError};

use crate::AppState;
use crate::media::Command;
use crate::signalling::{authorize, verify_token};

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers.get(header::AUTHORIZATION)?.to_str().ok()?.strip_prefix("Bearer ").map(str::trim)
}

fn problem(status: StatusCode, message: impl Into<String>) -> Response {
    (status, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], message.into() + "\n").into_response()
}

/// The role a token grants (or the development default), and whether it says the call is end-to-end encrypted.
fn role_of(
    s: &AppState,
    token: Option<&str>,
    room: &str,
    default: &str,
) -> Result<(String, bool), (StatusCode, String)> {
    let unauthorized = |e: String| (StatusCode::UNAUTHORIZED, e);
    match token {
        // The role is whatever the token names; the token must be for this room.
        Some(t) => {
            let claims = verify_token(s, t).map_err(unauthorized)?;
            claims.require(room, &claims.role).map_err(|e| unauthorized(format!("{e}: ask for a new call token")))?;
            Ok((claims.role, claims.e2ee))
        }
        None => authorize(s, None, room, default).map(|_| (default.to_string(), false)).map_err(unauthorized),
    }
}

async fn join(s: AppState, kind: &str, room: String, headers: HeaderMap, body: Bytes) -> Response {
    let is_sdp = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/sdp"));
    if !is_sdp {
        return problem(StatusCode::UNSUPPORTED_MEDIA_TYPE, "send the SDP offer as Content-Type: application/sdp");
    }
    if room.is_empty() || room.len() > 64 || !room.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
        return problem(StatusCode::BAD_REQUEST, "room: 1-64 letters, digits, - or _");
    }
    let default = if kind == "whip" { "customer" } else { "observer" };
    let (role_name, e2ee) = match role_of(&s, bearer(&headers), &room, default) {
        Ok(r) => r,
        Err((status, why)) => return problem(status, why),
    };
    let Some(role) = Role::from_name(&role_name) else {
        return problem(StatusCode::FORBIDDEN, "the token's role cannot join");
    };
    if kind == "whip" && !role.publishes() {
        return problem(StatusCode::FORBIDDEN, format!("a {role_name} token cannot publish"));
    }
    if kind == "whip" && s.calls.e2ee.suite_of(&room, e2ee).is_some() {
        return problem(
            StatusCode::FORBIDDEN,
            "this call is end-to-end encrypted and a WHIP publisher cannot encrypt frames: join from the call page",
        );
    }
    let Ok(offer) = String::from_utf8(body.to_vec()) else {
        return problem(StatusCode::BAD_REQUEST, "the SDP offer is not UTF-8");
    };
    if let Err(why) = s.calls.admit(&room, role).await {
        return problem(StatusCode::SERVICE_UNAVAILABLE, why);
    }
    let (events, _) = mpsc::unbounded_channel();
    let (reply, answer) = oneshot::channel();
    if !s.media.send(Command::Join { room: room.clone(), role, offer, events, reply, fixed: true }) {
        s.calls.left(&room, role).await;
        return problem(StatusCode::SERVICE_UNAVAILABLE, "the media service is not running");
    }
    let answer = answer.await;
    if !matches!(answer, Ok(Ok(_))) {
        s.calls.left(&room, role).await;
    }
    match answer {
        Ok(Ok((id, sdp))) => {
            let location = format!("/{kind}/{room}/{}", id.0);
            let mut resp = (StatusCode::CREATED, sdp).into_response();
            let h = resp.headers_mut();
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/sdp"));
            h.insert(header::LOCATION, HeaderValue::from_str(&location).expect("ASCII path"));
            resp
        }
        Ok(Err(e @ SfuError::NodeFull(_))) => problem(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
        Ok(Err(e)) => problem(StatusCode::BAD_REQUEST, format!("offer refused: {e}")),
        Err(_) => problem(StatusCode::SERVICE_UNAVAILABLE, "the media service stopped"),
    }
}

/// `POST /whip/{room}`
pub async fn whip(State(s): State<AppState>, Path(room): Path<String>, headers: HeaderMap, body: Bytes) -> Response {
    join(s, "whip", room, headers, body).await
}

/// `POST /whep/{room}`
pub async fn whep(State(s): State<AppState>, Path(room): Path<String>, headers: HeaderMap, body: Bytes) -> Response {
    join(s, "whep", room, headers, body).await
}

/// `GET /whep/{room}/{id}/backlog`: a recorder continuing the call (it replaced one that was lost) takes the media
/// the gateway kept meanwhile (`vbank_gateway_core::backlog` wire form); live media flows to it from the next frame.
/// Needs the recorder's call token for the room.
pub async fn backlog(State(s): State<AppState>, Path((room, id)): Path<(String, u64)>, headers: HeaderMap) -> Response {
    match role_of(&s, bearer(&headers), &room, "observer") {
        Ok((role, _)) if role == "recorder" => {}
        Ok(_) => return problem(StatusCode::FORBIDDEN, "only the call's recorder takes its backlog"),
        Err((status, why)) => return problem(status, why),
    }
    let (reply, answer) = oneshot::channel();
    if !s.media.send(Command::Backlog(ParticipantId(id), room, reply)) {
        return problem(StatusCode::SERVICE_UNAVAILABLE, "the media service is not running");
    }
    match answer.await {
        Ok(Ok(taken)) => {
            let bound: Vec<_> = taken
                .bound
                .iter()
                .map(|(mid, role, kind)| (mid.clone(), vbank_gateway_core::backlog::label(*role, *kind)))
                .collect();
            let body = tokio::task::spawn_blocking(move || {
                vbank_gateway_core::backlog::encode(&bound, &crate::media::stamped(taken.frames))
            })
            .await
            .unwrap_or_default();
            ([(header::CONTENT_TYPE, "application/octet-stream")], body).into_response()
        }
        Ok(Err(e)) => problem(StatusCode::NOT_FOUND, e.to_string()),
        Err(_) => problem(StatusCode::SERVICE_UNAVAILABLE, "the media service stopped"),
    }
}

/// `DELETE /whip/{room}/{id}` and `DELETE /whep/{room}/{id}`: leave. Needs a token for the room (any role).
pub async fn leave(State(s): State<AppState>, Path((room, id)): Path<(String, u64)>, headers: HeaderMap) -> Response {
    if let Err((status, why)) = role_of(&s, bearer(&headers), &room, "observer") {
        return problem(status, why);
    }
    s.media.send(Command::Leave(ParticipantId(id)));
    StatusCode::OK.into_response()
}
