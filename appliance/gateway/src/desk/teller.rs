//! The teller console's socket (`GET /api/teller/ws`, a teller's session) and its view of the queues
//! (`GET /api/teller/queues`: waiting customers and the longest wait, for the teller's own business types).

use axum::Json;
use axum::extract::State;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use tokio::sync::mpsc;
use vbank_accounts::Role as StaffRole;
use vbank_routing::TellerState;

use super::{Desk, now_ms, problem};
use crate::AppState;

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub(super) enum TellerIn {
    State {
        state: TellerState,
    },
    Answer {
        customer: String,
    },
    Decline {
        customer: String,
    },
    Hangup {
        customer: String,
        /// How the business ended: `completed`, `incomplete`, `referred`, `customer-declined`.
        #[serde(default)]
        outcome: Option<String>,
        #[serde(default)]
        notes: Option<String>,
    },
    Transfer {
        customer: String,
        to: Option<String>,
        business: Option<String>,
    },
    #[serde(rename = "screen_request")]
    ScreenRequest {
        customer: String,
    },
    #[serde(rename = "sign_request")]
    SignRequest {
        customer: String,
        title: String,
        text: String,
    },
}

pub(super) async fn teller_ws(State(s): State<AppState>, headers: HeaderMap, upgrade: WebSocketUpgrade) -> Response {
    match s.desk.session(&headers).await {
        Some((name, StaffRole::Teller)) => upgrade.on_upgrade(move |ws| teller_session(s.desk.clone(), name, ws)),
        Some(_) => problem(StatusCode::FORBIDDEN, "only tellers take calls"),
        None => problem(StatusCode::UNAUTHORIZED, "log in first (POST /api/login)"),
    }
}

async fn teller_session(desk: Desk, name: String, mut ws: WebSocket) {
    let (tx, mut rx) = mpsc::unbounded_channel();
    desk.inner.lock().expect("not poisoned").tellers.insert(name.clone(), tx);
    let state = desk.router.lock().await.teller_state(&name);
    let _ = ws.send(Message::Text(json!({"type": "state", "state": state}).to_string().into())).await;
    loop {
        tokio::select! {
            out = rx.recv() => {
                let Some(v) = out else { break };
                if ws.send(Message::Text(v.to_string().into())).await.is_err() { break }
            }
            msg = ws.recv() => {
                let text = match msg {
                    Some(Ok(Message::Text(t))) => t.to_string(),
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                    _ => break,
                };
                let result = match serde_json::from_str::<TellerIn>(&text) {
                    Err(e) => Err(format!("not a desk message: {e}")),
                    Ok(TellerIn::State { state }) => desk.apply(|q, now| q.set(now, &name, state)).await.map_err(|e| e.to_string()),
                    Ok(TellerIn::Answer { customer }) => desk.apply(|q, now| q.answer(now, &name, &customer)).await.map_err(|e| e.to_string()),
                    Ok(TellerIn::Decline { customer }) => desk.apply(|q, now| q.decline(now, &name, &customer)).await.map_err(|e| e.to_string()),
                    Ok(TellerIn::Hangup { customer, outcome, notes }) => match desk.outcome(&name, &customer, outcome, notes).await {
                        Err(e) => Err(e),
                        Ok(()) => desk.apply(|q, now| q.hang_up(now, &name, &customer)).await.map_err(|e| e.to_string()),
                    },
                    Ok(TellerIn::Transfer { customer, to: Some(to), .. }) => {
                        let r = desk.apply(|q, now| q.transfer_to_teller(now, &name, &customer, &to)).await.map_err(|e| e.to_string());
                        desk.note_transfer(&name, &customer, r, json!({"to": to})).await
                    }
                    Ok(TellerIn::Transfer { customer, business: Some(b), .. }) => {
                        let r = desk.apply(|q, now| q.transfer_to_queue(now, &name, &customer, &b)).await.map_err(|e| e.to_string());
                        desk.note_transfer(&name, &customer, r, json!({"business": b})).await
                    }
                    Ok(TellerIn::Transfer { .. }) => Err("a transfer names a teller (\"to\") or a queue (\"business\")".into()),
                    Ok(TellerIn::ScreenRequest { customer }) => desk.request_screen(&name, &customer).await,
                    Ok(TellerIn::SignRequest { customer, title, text }) => desk.request_signature(&name, &customer, &title, &text).await,
                };
                if let Err(e) = result {
                    let _ = ws.send(Message::Text(json!({"type": "error", "message": e}).to_string().into())).await;
                }
            }
        }
    }
    desk.inner.lock().expect("not poisoned").tellers.remove(&name);
    // A console that closes is a teller who is not at the desk: no more rings until they come back.
    desk.apply(|q, now| q.set(now, &name, TellerState::Away)).await.ok();
}

/// `GET /api/teller/queues`: the queues of the business types this teller may take.
pub(super) async fn queues(State(s): State<AppState>, headers: HeaderMap) -> Response {
    let name = match s.desk.session(&headers).await {
        Some((name, StaffRole::Teller)) => name,
        Some(_) => return problem(StatusCode::FORBIDDEN, "tellers only"),
        None => return problem(StatusCode::UNAUTHORIZED, "log in first (POST /api/login)"),
    };
    let o = s.desk.router.lock().await.overview(now_ms());
    let mine: Vec<String> = o["tellers"]
        .as_array()
        .and_then(|ts| ts.iter().find(|t| t["name"] == name.as_str()))
        .and_then(|t| t["businesses"].as_array())
        .map(|bs| bs.iter().filter_map(|b| b.as_str().map(str::to_string)).collect())
        .unwrap_or_default();
    let queues: Vec<&serde_json::Value> = o["queues"]
        .as_array()
        .map(|qs| qs.iter().filter(|q| q["business"].as_str().is_some_and(|b| mine.iter().any(|m| m == b))).collect())
        .unwrap_or_default();
    Json(json!({"queues": queues})).into_response()
}
