//! `/ws`: JSON signalling over WebSocket (TLS: the public listener).
//!
//! Client → server: `{"type":"join","room":R,"role":"customer|teller|specialist|observer","sdp":OFFER}`, then
//! `{"type":"answer","sdp":ANSWER}` to each renegotiation offer. Server → client: `{"type":"answer","sdp":…}` to the
//! join, `{"type":"offer","sdp":…}` when tracks come or go, `{"type":"error","code":…,"message":…}`.
//! Messages over 64 KiB are refused. A join carries a call token signed by keyd (`"token"`), checked against the
//! keys fetched from keyd; only development mode admits a join without one.

use axum::extract::State;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::response::Response;
use serde::Deserialize;
use serde_json::json;
use tokio::sync::{mpsc, oneshot};
use vbank_gateway_core::{ParticipantId, Role};

use crate::AppState;
use crate::media::{Command, ToPeer};

/// Largest signalling message accepted.
pub const MAX_MESSAGE: usize = 64 * 1024;

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
enum In {
    Join {
        room: String,
        role: String,
        sdp: String,
        #[serde(default)]
        token: Option<String>,
    },
    Answer {
        sdp: String,
    },
}

/// Check a call token for `room` and `role`; development mode alone admits a request without one.
pub fn authorize(s: &AppState, token: Option<&str>, room: &str, role: &str) -> Result<(), String> {
    match token {
        Some(t) => {
            let keys = s.token_keys.read().unwrap_or_else(|p| p.into_inner()).clone();
            let now =
                std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
            vbank_token::verify(t, &keys, now)
                .and_then(|c| c.require(room, role))
                .map_err(|e| format!("{e}: ask for a new call token"))
        }
        // Development mode (vbank up) lets its pages join without a token; no production node does.
        None if s.dev => Ok(()),
        None => Err("joining needs a call token (from `vbank token` or the call service)".into()),
    }
}

/// The WebSocket upgrade.
pub async fn ws(State(s): State<AppState>, upgrade: WebSocketUpgrade) -> Response {
    upgrade.max_message_size(MAX_MESSAGE).max_frame_size(MAX_MESSAGE).on_upgrade(move |socket| session(s, socket))
}

fn error(code: &str, message: impl Into<String>) -> Message {
    Message::Text(json!({"type": "error", "code": code, "message": message.into()}).to_string().into())
}

async fn session(s: AppState, mut socket: WebSocket) {
    let (events_tx, mut events) = mpsc::unbounded_channel();
    let mut me: Option<ParticipantId> = None;
    loop {
        tokio::select! {
            msg = socket.recv() => {
                let Some(Ok(msg)) = msg else { break };
                let text = match msg {
                    Message::Text(t) => t.to_string(),
                    Message::Close(_) => break,
                    Message::Ping(_) | Message::Pong(_) => continue,
                    Message::Binary(_) => {
                        let _ = socket.send(error("bad_message", "send JSON text messages")).await;
                        continue;
                    }
                };
                let reply = match serde_json::from_str::<In>(&text) {
                    Err(e) => Some(error("bad_message", format!("not a signalling message: {e}"))),
                    Ok(In::Join { .. }) if me.is_some() => Some(error("already_joined", "this connection has joined already")),
                    Ok(In::Join { room, role, sdp, token }) => {
                        Some(join(&s, &room, &role, sdp, token.as_deref(), &events_tx, &mut me).await)
                    }
                    Ok(In::Answer { sdp }) => match me {
                        Some(id) => {
                            s.media.send(Command::Answer(id, sdp));
                            None
                        }
                        None => Some(error("not_joined", "join first")),
                    },
                };
                if let Some(r) = reply
                    && socket.send(r).await.is_err()
                {
                    break;
                }
            }
            ev = events.recv() => match ev {
                Some(ToPeer::Offer(sdp)) => {
                    if socket.send(Message::Text(json!({"type": "offer", "sdp": sdp}).to_string().into())).await.is_err() {
                        break;
                    }
                }
                Some(ToPeer::Left) | None => {
                    let _ = socket.send(Message::Text(json!({"type": "left"}).to_string().into())).await;
                    me = None;
                    break;
                }
            }
        }
    }
    if let Some(id) = me {
        s.media.send(Command::Leave(id));
    }
}

async fn join(
    s: &AppState,
    room: &str,
    role: &str,
    sdp: String,
    token: Option<&str>,
    events: &mpsc::UnboundedSender<ToPeer>,
    me: &mut Option<ParticipantId>,
) -> Message {
    match token {
        Some(t) => {
            let keys = s.token_keys.read().unwrap_or_else(|p| p.into_inner()).clone();
            let now =
                std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
            if let Err(e) = vbank_token::verify(t, &keys, now).and_then(|c| c.require(room, role)) {
                return error("unauthorized", format!("{e}: ask for a new call token"));
            }
        }
        // Development mode (vbank up) lets its pages join without a token; no production node does.
        None if s.dev => {}
        None => return error("unauthorized", "joining needs a call token (from `vbank token` or the call service)"),
    }
    let Some(role) = Role::from_name(role).filter(|r| *r != Role::Recorder) else {
        return error("bad_role", "role must be customer, teller, specialist or observer");
    };
    if room.is_empty() || room.len() > 64 || !room.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
        return error("bad_room", "room: 1-64 letters, digits, - or _");
    }
    let (reply_tx, reply_rx) = oneshot::channel();
    let cmd = Command::Join {
        room: room.to_string(),
        role,
        offer: sdp,
        events: events.clone(),
        reply: reply_tx,
        fixed: false,
    };
    if !s.media.send(cmd) {
        return error("unavailable", "the media service is not running");
    }
    match reply_rx.await {
        Ok(Ok((id, answer))) => {
            *me = Some(id);
            Message::Text(json!({"type": "answer", "sdp": answer, "participant": id.0}).to_string().into())
        }
        Ok(Err(e)) => error("join_refused", e),
        Err(_) => error("unavailable", "the media service stopped"),
    }
}
