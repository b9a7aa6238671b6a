//! The front desk: staff login, the customer queue, and ringing tellers. This is the glue between the browsers and
//! `vbank-routing`'s state machine; the router's state goes to the store after every change, so a restarted gateway
//! keeps every customer's place.
//!
//! - `POST /api/login {name, password}` sets an HttpOnly, Secure, SameSite=Strict session cookie
//!   (`vbank-accounts`: Argon2id, lockout); `POST /api/logout` ends it.
//! - `GET /api/teller/ws` (the session cookie): the teller console. In: `{"type":"state","state":"available|away|
//!   wrap-up|offline"}`, `{"type":"answer","customer":C}`, `{"type":"decline","customer":C}`,
//!   `{"type":"hangup","customer":C,"outcome":…,"notes":…}` (the outcome code and notes go into the recording),
//!   `{"type":"transfer","customer":C,"to":TELLER}` or `…"business":B}`.
//!   Out: `state`, `ring` (customer, business, until_ms, from), `withdrawn`, `connected` (customer, room, token,
//!   role), `transfer_failed`, `error`.
//! - `GET /api/consent?business=…` is the privacy notice to show; `POST /api/queue {business, priority, consent:
//!   {version, sm3}}` (the notice accepted, by its hash) gives a customer id and secret; `GET /api/queue/ws?customer=…&secret=…`
//!   then tells the customer their `position` and wait, and `connected` (room, token) when a teller answers. In:
//!   `{"type":"hangup"}` ends the call, then `{"type":"rating","stars":1..5,"comment":…}` rates it (once).
//!   Closing it leaves the queue, or ends the call.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::{Mutex, mpsc};
use vbank_accounts::{AccountError, Accounts, Role as StaffRole};
use vbank_config::{Config, Service};
use vbank_routing::{Output, Priority, Router as Queues, TellerState};
use vbank_store::{Expect, Store, Table};
use zeroize::Zeroizing;

use crate::AppState;

/// How long a staff session lasts without activity.
const SESSION_TTL: Duration = Duration::from_secs(10 * 3600);

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

fn random_hex(n: usize) -> String {
    let mut b = vec![0u8; n];
    vbank_crypto::random(&mut b).expect("the OS random source works");
    vbank_crypto::to_hex(&b)
}

struct Session {
    name: String,
    role: StaffRole,
    expires_ms: u64,
}

struct Customer {
    secret: String,
    tx: Option<mpsc::UnboundedSender<Value>>,
    /// The accepted privacy notice: the call's first recorded event.
    consent: Value,
}

#[derive(Default)]
struct Inner {
    sessions: HashMap<String, Session>,
    tellers: HashMap<String, mpsc::UnboundedSender<Value>>,
    customers: HashMap<String, Customer>,
    /// The call room of each connected customer.
    rooms: HashMap<String, String>,
}

/// The desk: accounts, sessions, the queue router and who is connected.
#[derive(Clone)]
pub struct Desk {
    router: Arc<Mutex<Queues>>,
    inner: Arc<std::sync::Mutex<Inner>>,
    accounts: Option<Accounts>,
    store: Option<Arc<dyn Store>>,
    cfg: Option<Arc<Config>>,
    calls: crate::recording::Calls,
}

/// A call to join: who, which room, which role.
struct Join {
    to: Target,
    room: String,
    role: &'static str,
}

enum Target {
    Teller(String),
    Customer(String),
}

impl Desk {
    /// A desk with no store: no accounts, a queue that lives in memory only (tests of other routes).
    pub fn without_store() -> Desk {
        let router = Queues::new(vbank_routing::Config::default());
        Desk {
            router: Arc::new(Mutex::new(router)),
            inner: Arc::default(),
            accounts: None,
            store: None,
            cfg: None,
            calls: crate::recording::Calls::unrecorded(),
        }
    }

    /// A desk over `store` (accounts and the persisted queue); `cfg` reaches keyd for call tokens; `calls` carries
    /// the consent into each call's recording.
    pub async fn new(cfg: Option<Arc<Config>>, store: Option<Arc<dyn Store>>, calls: crate::recording::Calls) -> Desk {
        let routing = vbank_routing::Config::default();
        let mut router = Queues::new(routing.clone());
        if let Some(s) = &store {
            match s.get(Table::Queue, "router").await {
                Ok(Some(v)) => match Queues::restore(&v.value, routing) {
                    Ok(r) => router = r,
                    Err(e) => log::error!("the saved queue is unreadable, starting empty: {e}"),
                },
                Ok(None) => {}
                Err(e) => log::error!("the saved queue could not be read, starting empty: {e}"),
            }
        }
        let accounts = store.clone().and_then(|s| Accounts::new(s).ok());
        Desk { router: Arc::new(Mutex::new(router)), inner: Arc::default(), accounts, store, cfg, calls }
    }

    /// The accounts (none without a store).
    pub fn accounts(&self) -> Option<&Accounts> {
        self.accounts.as_ref()
    }

    /// Run `f` on the router, tell everyone what came of it, and save the state.
    async fn apply<T>(&self, f: impl FnOnce(&mut Queues, u64) -> T) -> T {
        let mut router = self.router.lock().await;
        let result = f(&mut router, now_ms());
        let mut joins = Vec::new();
        loop {
            match router.poll_output() {
                Output::Timeout(_) => break,
                o => joins.extend(self.tell(o)),
            }
        }
        if let Some(s) = &self.store
            && let Err(e) = s.put(Table::Queue, "router", &router.snapshot(), Expect::Any).await
        {
            log::error!("the queue could not be saved: {e}");
        }
        drop(router);
        for j in joins {
            let desk = self.clone();
            tokio::spawn(async move { desk.connect(j).await });
        }
        result
    }

    fn send_teller(&self, teller: &str, v: Value) {
        if let Some(tx) = self.inner.lock().expect("not poisoned").tellers.get(teller) {
            let _ = tx.send(v);
        }
    }

    fn send_customer(&self, customer: &str, v: Value) {
        if let Some(tx) = self.inner.lock().expect("not poisoned").customers.get(customer).and_then(|c| c.tx.as_ref()) {
            let _ = tx.send(v);
        }
    }

    /// Say one router output; the calls to join that it makes.
    fn tell(&self, o: Output) -> Vec<Join> {
        match o {
            Output::Ring { teller, customer, business, until_ms, from } => self.send_teller(
                &teller,
                json!({"type": "ring", "customer": customer, "business": business, "until_ms": until_ms, "from": from}),
            ),
            Output::RingWithdrawn { teller, customer, why } => {
                self.send_teller(&teller, json!({"type": "withdrawn", "customer": customer, "why": why}))
            }
            Output::TransferFailed { customer, from, to } => {
                self.send_teller(&from, json!({"type": "transfer_failed", "customer": customer, "to": to}))
            }
            Output::Position { customer, position, wait_ms } => {
                self.send_customer(&customer, json!({"type": "position", "position": position, "wait_ms": wait_ms}))
            }
            Output::State { teller, state } => self.send_teller(&teller, json!({"type": "state", "state": state})),
            Output::Connected { teller, customer, business } => {
                let mut inner = self.inner.lock().expect("not poisoned");
                let existing = inner.rooms.get(&customer).cloned();
                let room = existing.clone().unwrap_or_else(|| format!("call-{}", random_hex(8)));
                inner.rooms.insert(customer.clone(), room.clone());
                log::info!(room = room.as_str(); "{business} call: a teller answered");
                let mut joins = vec![Join {
                    to: Target::Teller(teller),
                    room: room.clone(),
                    role: if existing.is_some() { "specialist" } else { "teller" },
                }];
                if existing.is_none() {
                    if let Some(c) = inner.customers.get(&customer) {
                        self.calls.note(&room, c.consent.clone());
                    }
                    joins.push(Join { to: Target::Customer(customer), room, role: "customer" });
                }
                return joins;
            }
            Output::Timeout(_) => {}
        }
        Vec::new()
    }

    /// Mint a call token for the join (keyd) and hand it over.
    async fn connect(&self, j: Join) {
        let token = match &self.cfg {
            Some(cfg) => {
                let body = json!({"room": j.room, "role": j.role, "ttl_s": 600});
                match vbank_service::client::post_service(
                    &cfg.tls,
                    Service::Gateway,
                    Service::Keyd,
                    cfg.keyd.listen,
                    "/v1/token/sign",
                    &body,
                    Duration::from_secs(10),
                )
                .await
                {
                    Ok(v) => v["token"].as_str().map(str::to_string),
                    Err(e) => {
                        // Development nodes admit joins without tokens; production ones will refuse the join.
                        log::error!(room = j.room.as_str(); "no call token for the {}: {e}", j.role);
                        None
                    }
                }
            }
            None => None,
        };
        let msg = json!({"type": "connected", "room": j.room, "token": token, "role": j.role});
        match &j.to {
            Target::Teller(t) => self.send_teller(t, msg),
            Target::Customer(c) => self.send_customer(c, msg),
        }
    }

    /// Give unanswered rings up, every half second.
    pub async fn tick(self) {
        loop {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let due = matches!(self.router.lock().await.poll_output(), Output::Timeout(t) if t <= now_ms());
            if due {
                self.apply(|r, now| r.timeout(now)).await;
            }
        }
    }

    /// The teller's outcome code and notes for the call, into its recording (notes are kept encrypted there only).
    fn outcome(
        &self,
        teller: &str,
        customer: &str,
        outcome: Option<String>,
        notes: Option<String>,
    ) -> Result<(), String> {
        const OUTCOMES: [&str; 4] = ["completed", "incomplete", "referred", "customer-declined"];
        let Some(outcome) = outcome else { return Ok(()) };
        if !OUTCOMES.contains(&outcome.as_str()) {
            return Err(format!("outcome {outcome:?}: one of {}", OUTCOMES.join(", ")));
        }
        let notes = notes.unwrap_or_default();
        if notes.chars().count() > 2000 {
            return Err("notes: at most 2000 characters".into());
        }
        let room = self.inner.lock().expect("not poisoned").rooms.get(customer).cloned();
        if let Some(room) = room {
            self.calls.note(&room, json!({"kind": "outcome", "teller": teller, "outcome": outcome, "notes": notes}));
        }
        Ok(())
    }

    /// The customer's rating of the call: kept with the call (`rating/<room>` in the calls table), once.
    async fn rate(&self, customer: &str, stars: u8, comment: &str) -> Result<(), String> {
        if !(1..=5).contains(&stars) || comment.chars().count() > 500 {
            return Err("a rating is 1 to 5 stars, with at most 500 characters of comment".into());
        }
        let room = self.inner.lock().expect("not poisoned").rooms.get(customer).cloned();
        let Some(room) = room else { return Err("there is no call to rate yet".into()) };
        let Some(store) = &self.store else { return Ok(()) };
        let v = json!({"room": room, "stars": stars, "comment": comment, "at_ms": now_ms()});
        match store.put(Table::Calls, &format!("rating/{room}"), v.to_string().as_bytes(), Expect::Absent).await {
            Ok(_) => Ok(()),
            Err(vbank_store::StoreError::Conflict { .. }) => Err("this call has been rated already".into()),
            Err(e) => Err(format!("the rating could not be kept: {e}")),
        }
    }

    fn session(&self, headers: &HeaderMap) -> Option<(String, StaffRole)> {
        let cookie = headers.get(header::COOKIE)?.to_str().ok()?;
        let token = cookie.split(';').find_map(|c| c.trim().strip_prefix("vbank_session="))?;
        let mut inner = self.inner.lock().expect("not poisoned");
        let s = inner.sessions.get_mut(token)?;
        let now = now_ms();
        if s.expires_ms < now {
            inner.sessions.remove(token);
            return None;
        }
        s.expires_ms = now + SESSION_TTL.as_millis() as u64;
        Some((s.name.clone(), s.role))
    }
}

fn problem(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({"error": message.into()}))).into_response()
}

#[derive(Deserialize)]
struct LoginIn {
    name: String,
    password: String,
}

async fn login(State(s): State<AppState>, Json(r): Json<LoginIn>) -> Response {
    let Some(accounts) = s.desk.accounts() else {
        return problem(StatusCode::SERVICE_UNAVAILABLE, "no account store on this node");
    };
    let now_s = now_ms() / 1000;
    match accounts.login(&r.name, Zeroizing::new(r.password), now_s).await {
        Ok(a) => {
            let token = random_hex(32);
            let expires_ms = now_ms() + SESSION_TTL.as_millis() as u64;
            s.desk
                .inner
                .lock()
                .expect("not poisoned")
                .sessions
                .insert(token.clone(), Session { name: a.name.clone(), role: a.role, expires_ms });
            if a.role == StaffRole::Teller {
                s.desk.apply(|q, now| q.login(now, &a.name, a.businesses.clone())).await;
                s.desk.apply(|q, now| q.set(now, &a.name, TellerState::Away)).await.ok();
            }
            log::info!("staff login: {} ({:?})", a.name, a.role);
            let cookie = format!("vbank_session={token}; HttpOnly; Secure; SameSite=Strict; Path=/");
            ([(header::SET_COOKIE, cookie)], Json(json!({"name": a.name, "role": a.role, "businesses": a.businesses})))
                .into_response()
        }
        Err(e @ (AccountError::BadCredentials | AccountError::Locked { .. } | AccountError::Disabled)) => {
            log::warn!("staff login refused: {e}");
            problem(StatusCode::UNAUTHORIZED, e.to_string())
        }
        Err(e) => problem(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}

async fn logout(State(s): State<AppState>, headers: HeaderMap) -> Response {
    if let Some((name, _)) = s.desk.session(&headers) {
        s.desk.inner.lock().expect("not poisoned").sessions.retain(|_, v| v.name != name);
        s.desk.apply(|q, now| q.set(now, &name, TellerState::Offline)).await.ok();
    }
    let cookie = "vbank_session=; HttpOnly; Secure; SameSite=Strict; Path=/; Max-Age=0";
    ([(header::SET_COOKIE, cookie)], Json(json!({"ok": true}))).into_response()
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
enum TellerIn {
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
}

async fn teller_ws(State(s): State<AppState>, headers: HeaderMap, upgrade: WebSocketUpgrade) -> Response {
    match s.desk.session(&headers) {
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
                    Ok(TellerIn::Hangup { customer, outcome, notes }) => match desk.outcome(&name, &customer, outcome, notes) {
                        Err(e) => Err(e),
                        Ok(()) => desk.apply(|q, now| q.hang_up(now, &name, &customer)).await.map_err(|e| e.to_string()),
                    },
                    Ok(TellerIn::Transfer { customer, to: Some(to), .. }) => {
                        desk.apply(|q, now| q.transfer_to_teller(now, &name, &customer, &to)).await.map_err(|e| e.to_string())
                    }
                    Ok(TellerIn::Transfer { customer, business: Some(b), .. }) => {
                        desk.apply(|q, now| q.transfer_to_queue(now, &name, &customer, &b)).await.map_err(|e| e.to_string())
                    }
                    Ok(TellerIn::Transfer { .. }) => Err("a transfer names a teller (\"to\") or a queue (\"business\")".into()),
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

#[derive(Deserialize)]
struct QueueIn {
    business: String,
    #[serde(default = "normal")]
    priority: Priority,
    /// The privacy notice the customer accepted: its version and SM3.
    consent: Option<ConsentIn>,
}

#[derive(Deserialize)]
struct ConsentIn {
    version: String,
    sm3: String,
}

#[derive(Deserialize)]
struct ConsentQuery {
    business: String,
}

/// `GET /api/consent?business=…`: the notice to show, its version and SM3.
async fn consent_text(Query(q): Query<ConsentQuery>) -> Response {
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

async fn join_queue(State(s): State<AppState>, Json(r): Json<QueueIn>) -> Response {
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
    s.desk
        .inner
        .lock()
        .expect("not poisoned")
        .customers
        .insert(customer.clone(), Customer { secret: secret.clone(), tx: None, consent });
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
enum CustomerIn {
    Hangup,
    Rating {
        stars: u8,
        #[serde(default)]
        comment: String,
    },
}

#[derive(Deserialize)]
struct CustomerWsIn {
    customer: String,
    secret: String,
}

async fn customer_ws(State(s): State<AppState>, Query(q): Query<CustomerWsIn>, upgrade: WebSocketUpgrade) -> Response {
    let known = s.desk.inner.lock().expect("not poisoned").customers.get(&q.customer).is_some_and(|c| {
        c.secret.len() == q.secret.len()
            && c.secret.bytes().zip(q.secret.bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
    });
    if !known {
        return problem(StatusCode::FORBIDDEN, "unknown customer or wrong secret: join the queue again");
    }
    upgrade.on_upgrade(move |ws| customer_session(s.desk.clone(), q.customer, ws))
}

async fn customer_session(desk: Desk, customer: String, mut ws: WebSocket) {
    let (tx, mut rx) = mpsc::unbounded_channel();
    if let Some(c) = desk.inner.lock().expect("not poisoned").customers.get_mut(&customer) {
        c.tx = Some(tx);
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
                        Ok(CustomerIn::Hangup) => match desk.apply(|q, now| q.leave(now, &customer)).await {
                            Ok(()) => json!({"type": "ended"}),
                            Err(e) => json!({"type": "error", "message": e.to_string()}),
                        },
                        Ok(CustomerIn::Rating { stars, comment }) => match desk.rate(&customer, stars, &comment).await {
                            Ok(()) => json!({"type": "rated"}),
                            Err(e) => json!({"type": "error", "message": e}),
                        },
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
    {
        let mut inner = desk.inner.lock().expect("not poisoned");
        inner.customers.remove(&customer);
        inner.rooms.remove(&customer);
    }
    desk.apply(|q, now| q.leave(now, &customer)).await.ok();
}

/// The desk's public routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/login", axum::routing::post(login))
        .route("/api/logout", axum::routing::post(logout))
        .route("/api/teller/ws", axum::routing::get(teller_ws))
        .route("/api/consent", axum::routing::get(consent_text))
        .route("/api/queue", axum::routing::post(join_queue))
        .route("/api/queue/ws", axum::routing::get(customer_ws))
}

/// Business types a comma-separated list names.
pub fn businesses(list: &str) -> BTreeSet<String> {
    list.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_string).collect()
}
