//! The customer's side of the desk: the privacy notice, joining a queue, the queue socket (place, wait, the call's
//! room), hanging up and the rating.

use axum::Json;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use tokio::sync::mpsc;
use vbank_routing::Priority;

use super::{Customer, Desk, now_ms, problem, random_hex};
use crate::AppState;

#[derive(Deserialize)]
pub(super) struct QueueIn {
    business: String,
    #[serde(default = "normal")]
    priority: Priority,
    /// The privacy notice the customer accepted: its version and SM3.
    consent: Option<ConsentIn>,
}

#[derive(Deserialize)]
pub(super) struct ConsentIn {
    version: String,
    sm3: String,
}

#[derive(Deserialize)]
pub(super) struct ConsentQuery {
    business: String,
}

/// `GET /api/consent?business=…`: the notice to show, its version and SM3.
pub(super) async fn consent_text(Query(q): Query<ConsentQuery>) -> Response {
    match crate::consent::text(&q.business) {
        Some(text) => {
            Json(json!({"business": q.business, "version": crate::consent::VERSION, "sm3": crate::consent::hash(&text),
                                  "retention_years": crate::consent::retention_years(&q.business), "text": text}))
            .into_response()
        }
        None => problem(StatusCode::NOT_FOUND, format!("no business type {:?}", q.business)),
    }
}

fn normal() -> Priority {
    Priority::Normal
}

pub(super) async fn join_queue(
    State(s): State<AppState>,
    addr: Option<axum::Extension<vbank_service::RemoteAddr>>,
    Json(r): Json<QueueIn>,
) -> Response {
    if let Some(refused) = s.desk.over_limit(super::limits::Door::Queue, addr.as_deref()) {
        return refused;
    }
    let Some(text) = crate::consent::text(&r.business) else {
        return problem(StatusCode::BAD_REQUEST, format!("no business type {:?}", r.business));
    };
    let shown = crate::consent::hash(&text);
    match &r.consent {
        None => return problem(StatusCode::BAD_REQUEST, "accept the privacy notice first (GET /api/consent)"),
        Some(c) if c.version != crate::consent::VERSION || c.sm3 != shown => {
            return problem(StatusCode::CONFLICT, "the privacy notice has changed: read it again and accept it");
        }
        Some(_) => {}
    }
    let customer = format!("cust-{}", random_hex(8));
    let secret = random_hex(16);
    let consent = json!({"kind": "consent", "business": r.business, "version": crate::consent::VERSION,
                         "sm3": shown, "accepted_at_ms": now_ms(), "customer": customer});
    s.desk.inner.lock().expect("not poisoned").customers.insert(customer.clone(), Customer::new(&secret, consent));
    match s.desk.apply(|q, now| q.join(now, &customer, &r.business, r.priority, None)).await {
        Ok(()) => Json(json!({"customer": customer, "secret": secret})).into_response(),
        Err(e) => {
            s.desk.inner.lock().expect("not poisoned").customers.remove(&customer);
            problem(StatusCode::BAD_REQUEST, e.to_string())
        }
    }
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub(super) enum CustomerIn {
    Hangup,
    Rating {
        stars: u8,
        #[serde(default)]
        comment: String,
    },
    /// A step of screen sharing (`screen_request` asked for it).
    Screen {
        state: super::screen::ShareState,
    },
    /// The drawn signature (a base64 PNG) for a signature request.
    Signature {
        request: String,
        png: String,
    },
}

#[derive(Deserialize)]
pub(super) struct CustomerWsIn {
    customer: String,
    secret: String,
}

pub(super) async fn customer_ws(
    State(s): State<AppState>,
    Query(q): Query<CustomerWsIn>,
    upgrade: WebSocketUpgrade,
) -> Response {
    let known =
        s.desk.inner.lock().expect("not poisoned").customers.get(&q.customer).is_some_and(|c| c.holds(&q.secret));
    if !known {
        return problem(StatusCode::FORBIDDEN, "unknown customer or wrong secret: join the queue again");
    }
    upgrade.on_upgrade(move |ws| customer_session(s.desk.clone(), q.customer, ws))
}

async fn customer_session(desk: Desk, customer: String, mut ws: WebSocket) {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mine = tx.downgrade();
    if let Some(c) = desk.inner.lock().expect("not poisoned").customers.get_mut(&customer) {
        for v in c.unsent.drain(..) {
            let _ = tx.send(v);
        }
        c.tx = Some(tx);
        c.gone_since_ms = None;
    }
    // Their place now (it may have been told before the page connected).
    let place = desk.router.lock().await.queue_position(&customer);
    if let Some((position, wait_ms)) = place {
        let _ = ws
            .send(Message::Text(
                json!({"type": "position", "position": position, "wait_ms": wait_ms}).to_string().into(),
            ))
            .await;
    }
    loop {
        tokio::select! {
            out = rx.recv() => {
                let Some(v) = out else { break };
                if ws.send(Message::Text(v.to_string().into())).await.is_err() { break }
            }
            msg = ws.recv() => match msg {
                Some(Ok(Message::Text(t))) => {
                    let reply = match serde_json::from_str::<CustomerIn>(&t) {
                        Err(e) => json!({"type": "error", "message": format!("not a queue message: {e}")}),
                        // Hanging up ends the call; the socket stays open for the rating.
                        Ok(CustomerIn::Hangup) => match desk.customer_left(&customer, "the customer hung up").await {
                            Ok(()) => json!({"type": "ended"}),
                            Err(e) => json!({"type": "error", "message": e}),
                        },
                        Ok(CustomerIn::Rating { stars, comment }) => match desk.rate(&customer, stars, &comment).await {
                            Ok(()) => json!({"type": "rated"}),
                            Err(e) => json!({"type": "error", "message": e}),
                        },
                        Ok(CustomerIn::Screen { state }) => match desk.screen(&customer, state).await {
                            Ok(()) => json!({"type": "screen_ok", "state": state.as_str()}),
                            Err(e) => json!({"type": "error", "message": e}),
                        },
                        Ok(CustomerIn::Signature { request, png }) => desk
                            .sign(&customer, &request, &png)
                            .await
                            .unwrap_or_else(|e| json!({"type": "error", "message": e})),
                    };
                    if ws.send(Message::Text(reply.to_string().into())).await.is_err() {
                        break;
                    }
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                _ => break,
            }
        }
    }
    // The page may come back (a network switch): the desk's tick ends the visit after the grace period.
    // Unless a newer socket of the same visit took over (a page that reconnected before this one timed out).
    if let Some(c) = desk.inner.lock().expect("not poisoned").customers.get_mut(&customer)
        && let Some(mine) = mine.upgrade()
        && c.tx.as_ref().is_some_and(|t| t.same_channel(&mine))
    {
        c.tx = None;
        c.gone_since_ms = Some(now_ms());
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::{Customer, Desk};

    #[test]
    fn what_a_page_without_a_socket_is_told_waits_for_it_except_stale_places() {
        let desk = Desk::without_store();
        desk.inner.lock().unwrap().customers.insert("c1".into(), Customer::new("secret", json!({})));
        desk.send_customer("c1", json!({"type": "position", "position": 2, "wait_ms": 1000}));
        desk.send_customer("c1", json!({"type": "connected", "room": "call-1"}));
        let unsent = desk.inner.lock().unwrap().customers["c1"].unsent.clone();
        assert_eq!(unsent, vec![json!({"type": "connected", "room": "call-1"})]);
        for n in 0..100 {
            desk.send_customer("c1", json!({"type": "error", "message": n}));
        }
        assert_eq!(desk.inner.lock().unwrap().customers["c1"].unsent.len(), super::super::UNSENT, "bounded");
    }
}
