//! `/ws`: JSON signalling over WebSocket (TLS: the public listener).
//!
//! Client → server: `{"type":"join","room":R,"role":"customer|teller|specialist|observer","sdp":OFFER}`, then
//! `{"type":"answer","sdp":ANSWER}` to each renegotiation offer. Server → client: `{"type":"answer","sdp":…}` to the
//! join, `{"type":"offer","sdp":…}` when tracks come or go, `{"type":"error","code":…,"message":…}`.
//! `{"type":"restart","sdp":OFFER}` restarts ICE within the session (answered like a join, with `"restart":true`).
//! After joining, `{"type":"message","body":{"kind":…}}` sends a chat, link, document or whiteboard message to the
//! room (see [`crate::room_messages`]); everyone, the sender too, receives it with its sequence number.
//! Messages over 64 KiB are refused. A join carries a call token signed by keyd (`"token"`), checked against the
//! keys fetched from keyd; only development mode admits a join without one.
//!
//! In an end-to-end encrypted call (`[e2ee]`, [`crate::e2ee`]) the join must carry `"e2ee":{"public_key":HEX}` (the
//! page's worker's P-256 key; a page without frame encryption is refused with `e2ee_required`), the answer names the
//! suite (`"e2ee":"aes-256-gcm"`), and on every join and leave each page gets
//! `{"type":"media-key","suite","epoch","slot","senders","key","context"}`: the epoch's key, encrypted to its worker.

use axum::extract::State;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::response::Response;
use serde::Deserialize;
use serde_json::json;
use tokio::sync::{broadcast, mpsc, oneshot};
use vbank_gateway_core::{ParticipantId, Role, SfuError};

use crate::AppState;
use crate::media::{Command, ToPeer};
use crate::room_messages::{Body, RateLimit, Refused};

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
        /// The page's frame-encryption worker: its key for the call's media keys.
        #[serde(default)]
        e2ee: Option<E2eeJoin>,
    },
    Answer {
        sdp: String,
    },
    Message {
        body: Body,
    },
    Restart {
        sdp: String,
    },
    /// The page checks that its gateway is still there (a node that died closes nothing): answered at once.
    Ping,
}

/// What a page able to encrypt frames sends with its join.
#[derive(Deserialize)]
struct E2eeJoin {
    /// Its worker's P-256 public key, SEC1 uncompressed, hex.
    public_key: String,
}

/// The joined participant behind a connection.
struct Joined {
    id: ParticipantId,
    room: String,
    role: Role,
    messages: broadcast::Receiver<std::sync::Arc<str>>,
}

/// The next room message, or never when not joined.
async fn next_message(j: &mut Option<Joined>) -> Result<std::sync::Arc<str>, broadcast::error::RecvError> {
    match j {
        Some(j) => j.messages.recv().await,
        None => std::future::pending().await,
    }
}

/// A call message from `j` to its room: checked (a document push against the call's documents), recorded, relayed;
/// the refusal to send back, if any.
async fn relay(s: &AppState, j: &Joined, body: Body) -> Option<Message> {
    let body = match s.desk.check_push(&j.room, j.role.name(), body).await {
        Ok(body) => body,
        Err(why) => return Some(error("bad_message", why)),
    };
    match s.rooms.send(s.store.as_ref(), &s.calls, &j.room, j.id.0, j.role.name(), body).await {
        Ok(_) => None,
        Err(Refused::Invalid(why)) => Some(error("bad_message", why)),
        Err(e @ Refused::NotRecorded(_)) => {
            log::error!(room = j.room.as_str(); "call message refused: {e}");
            Some(error("not_recorded", e.to_string()))
        }
    }
}

/// Verify a call token against the keys fetched from keyd; the error tells the caller what to do.
pub fn verify_token(s: &AppState, token: &str) -> Result<vbank_token::Claims, String> {
    let keys = s.token_keys.read().unwrap_or_else(|p| p.into_inner()).clone();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    vbank_token::verify(token, &keys, now).map_err(|e| format!("{e}: ask for a new call token"))
}

/// Check a call token for `room` and `role`; development mode alone admits a request without one. The token's
/// claims, when there is one.
pub fn authorize(
    s: &AppState,
    token: Option<&str>,
    room: &str,
    role: &str,
) -> Result<Option<vbank_token::Claims>, String> {
    match token {
        Some(t) => {
            let claims = verify_token(s, t)?;
            claims.require(room, role).map_err(|e| format!("{e}: ask for a new call token"))?;
            Ok(Some(claims))
        }
        // Development mode (vbank up) lets its pages join without a token; no production node does.
        None if s.dev => Ok(None),
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
    let mut me: Option<Joined> = None;
    let mut limit = RateLimit::new(std::time::Instant::now());
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
                    Ok(In::Join { room, role, sdp, token, e2ee }) => {
                        let e2ee = e2ee.map(|e| e.public_key);
                        let asked = Asked { room: &room, role: &role, sdp, token: token.as_deref(), e2ee };
                        Some(join(&s, asked, &events_tx, &mut me).await)
                    }
                    Ok(In::Answer { sdp }) => match &me {
                        Some(j) => {
                            s.media.send(Command::Answer(j.id, sdp));
                            None
                        }
                        None => Some(error("not_joined", "join first")),
                    },
                    Ok(In::Ping) => Some(Message::Text(r#"{"type":"pong"}"#.into())),
                    Ok(In::Restart { sdp }) => match &me {
                        Some(j) => Some(restart(&s, j.id, sdp).await),
                        None => Some(error("not_joined", "join first")),
                    },
                    Ok(In::Message { body }) => match &me {
                        None => Some(error("not_joined", "join first")),
                        Some(j) if !j.role.publishes() => Some(error("read_only", "observers receive messages but send none")),
                        Some(_) if !limit.allow(std::time::Instant::now()) => {
                            Some(error("rate_limited", "more than 30 messages a second; send fewer"))
                        }
                        Some(j) => relay(&s, j, body).await,
                    },
                };
                if let Some(r) = reply
                    && socket.send(r).await.is_err()
                {
                    break;
                }
            }
            m = next_message(&mut me) => {
                let out = match m {
                    Ok(text) => Message::Text(text.to_string().into()),
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        error("missed_messages", format!("{n} room messages were dropped because this connection was slow"))
                    }
                    Err(broadcast::error::RecvError::Closed) => continue,
                };
                if socket.send(out).await.is_err() {
                    break;
                }
            }
            ev = events.recv() => match ev {
                Some(ToPeer::Offer(sdp)) => {
                    if socket.send(Message::Text(json!({"type": "offer", "sdp": sdp}).to_string().into())).await.is_err() {
                        break;
                    }
                }
                Some(ToPeer::MediaKey(msg)) => {
                    if socket.send(Message::Text(msg.into())).await.is_err() {
                        break;
                    }
                }
                Some(ToPeer::Left) | None => {
                    let _ = socket.send(Message::Text(json!({"type": "left"}).to_string().into())).await;
                    if let Some(j) = me.take() {
                        drop(j.messages);
                        s.rooms.release(&j.room);
                        s.calls.e2ee.left(&s.calls, &j.room, j.id.0).await;
                    }
                    break;
                }
            }
        }
    }
    if let Some(j) = me {
        s.media.send(Command::Leave(j.id));
        drop(j.messages);
        s.rooms.release(&j.room);
        s.calls.e2ee.left(&s.calls, &j.room, j.id.0).await;
    }
}

/// A join as the page asked for it.
struct Asked<'a> {
    room: &'a str,
    role: &'a str,
    sdp: String,
    token: Option<&'a str>,
    /// The worker's public key, when the page can encrypt frames.
    e2ee: Option<String>,
}

async fn restart(s: &AppState, id: ParticipantId, sdp: String) -> Message {
    let (reply_tx, reply_rx) = oneshot::channel();
    if !s.media.send(Command::Restart(id, sdp, reply_tx)) {
        return error("unavailable", "the media service is not running");
    }
    match reply_rx.await {
        Ok(Ok(answer)) => Message::Text(json!({"type": "answer", "sdp": answer, "restart": true}).to_string().into()),
        Ok(Err(e)) => error("restart_refused", format!("{e}; rejoin the call")),
        Err(_) => error("unavailable", "the media service stopped"),
    }
}

async fn join(
    s: &AppState,
    asked: Asked<'_>,
    events: &mpsc::UnboundedSender<ToPeer>,
    me: &mut Option<Joined>,
) -> Message {
    let Asked { room, role, sdp, token, e2ee } = asked;
    let claims = match authorize(s, token, room, role) {
        Ok(c) => c,
        Err(e) => return error("unauthorized", e),
    };
    let Some(role) = Role::from_name(role).filter(|r| *r != Role::Recorder) else {
        return error("bad_role", "role must be customer, teller, specialist or observer");
    };
    if room.is_empty() || room.len() > 64 || !room.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
        return error("bad_room", "room: 1-64 letters, digits, - or _");
    }
    let suite = s.calls.e2ee.suite_of(room, claims.is_some_and(|c| c.e2ee)).map(str::to_string);
    let public_key = match (&suite, e2ee) {
        (None, _) => None,
        (Some(_), None) => {
            return error(
                "e2ee_required",
                "this call is end-to-end encrypted, and this browser cannot encrypt video frames (it lacks \
                 RTCRtpScriptTransform): join from a current Chrome, Edge, Firefox or Safari, or from the bank's app",
            );
        }
        (Some(_), Some(k)) if !crate::e2ee::valid_public_key(&k) => {
            return error("bad_message", "e2ee.public_key: the worker's P-256 public key, uncompressed, in hex");
        }
        (Some(_), Some(k)) => Some(k),
    };
    if let Err(why) = s.calls.admit(room, role).await {
        return error("recording_unavailable", why);
    }
    // Subscribed before joining, so no message sent once the join is answered is missed.
    let messages = s.rooms.subscribe(room);
    let (reply_tx, reply_rx) = oneshot::channel();
    let cmd = Command::Join {
        room: room.to_string(),
        role,
        offer: sdp,
        events: events.clone(),
        reply: reply_tx,
        fixed: false,
    };
    let refused = async |m: Message| {
        s.rooms.release(room);
        s.calls.left(room, role).await;
        m
    };
    if !s.media.send(cmd) {
        drop(messages);
        return refused(error("unavailable", "the media service is not running")).await;
    }
    match reply_rx.await {
        Ok(Ok((id, answer))) => {
            if let Some(k) = public_key
                && let Err(e) = s.calls.e2ee.joined(&s.calls, room, id.0, k, events.clone()).await
            {
                s.media.send(Command::Leave(id));
                drop(messages);
                log::error!(room = room; "join refused: {e}");
                return refused(error("e2ee_unavailable", format!("{e}: try again in a minute"))).await;
            }
            *me = Some(Joined { id, room: room.to_string(), role, messages });
            let answer = json!({"type": "answer", "sdp": answer, "participant": id.0, "e2ee": suite});
            Message::Text(answer.to_string().into())
        }
        Ok(Err(e)) => {
            drop(messages);
            let code = if matches!(e, SfuError::NodeFull(_)) { "node_full" } else { "join_refused" };
            refused(error(code, e.to_string())).await
        }
        Err(_) => {
            drop(messages);
            refused(error("unavailable", "the media service stopped")).await
        }
    }
}
