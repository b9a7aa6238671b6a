//! The front desk: staff login, the customer queue, and ringing tellers. This is the glue between the browsers and
//! `vbank-routing`'s state machine; the router's state goes to the store after every change, so a restarted gateway
//! keeps every customer's place.
//!
//! - `GET /api/supervisor/overview` (a supervisor's session): tellers' states, queues and their waits, live calls.
//! - `POST /api/login {name, password}` sets an HttpOnly, Secure, SameSite=Strict session cookie
//!   (`vbank-accounts`: Argon2id, lockout); `POST /api/logout` ends it.
//! - `GET /api/teller/ws` (the session cookie): the teller console. In: `{"type":"state","state":"available|away|
//!   wrap-up|offline"}`, `{"type":"answer","customer":C}`, `{"type":"decline","customer":C}`,
//!   `{"type":"hangup","customer":C,"outcome":…,"notes":…}` (the outcome code and notes go into the recording),
//!   `{"type":"transfer","customer":C,"to":TELLER}` or `…"business":B}`, `{"type":"sign_request","customer":C,
//!   "title":…,"text":…}` (see `signing`), `{"type":"screen_request","customer":C}` (see `screen`).
//!   Out: `state`, `ring` (customer, business, until_ms, from), `withdrawn`, `connected` (customer, room, token,
//!   role), `transfer_failed`, `signed`, `screen` (customer, state), `ended` (the customer left), `error`.
//! - `GET /api/consent?business=…` is the privacy notice to show; `POST /api/queue {business, priority, consent:
//!   {version, sm3}}` (the notice accepted, by its hash) gives a customer id and secret; `GET /api/queue/ws?customer=…&secret=…`
//!   then tells the customer their `position` and wait, and `connected` (room, token) when a teller answers. In:
//!   `{"type":"signature","request":…,"png":…}` signs what the teller sent (`sign_request`); `{"type":"hangup"}`
//!   ends the call, then `{"type":"rating","stars":1..5,"comment":…}` rates it (once); `{"type":"screen","state":
//!   "allowed|declined|started|stopped"}` answers a `screen_request`.
//!   A page whose socket closes has `GRACE` to reconnect (same id and secret) before its visit ends.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::{Mutex, mpsc};
use vbank_accounts::{AccountError, Accounts, Role as StaffRole};
use vbank_config::{Config, Service};
use vbank_routing::{Output, Router as Queues, TellerState};
use vbank_service::RemoteAddr;
use vbank_store::{Expect, Store, Table};
use zeroize::Zeroizing;

use crate::AppState;

mod customer;
mod documents;
mod kyc;
mod limits;
mod recordings;
mod screen;
mod sessions;
mod signing;
mod supervisor;
mod teller;

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

fn random_hex(n: usize) -> String {
    let mut b = vec![0u8; n];
    vbank_crypto::random(&mut b).expect("the OS random source works");
    vbank_crypto::to_hex(&b)
}

/// A customer's visit. Kept in the store with the queue, so a page that reconnects (a phone that changed networks,
/// a restarted gateway) keeps its place.
#[derive(serde::Serialize, Deserialize)]
struct Customer {
    /// SM3 of the secret the page holds (the secret itself is never stored).
    secret_sm3: String,
    #[serde(skip)]
    tx: Option<mpsc::UnboundedSender<Value>>,
    /// What was said while the page had no socket (an answer in the moment between queueing and the socket
    /// opening, or during a reconnect): delivered when it connects. Places in the queue are not kept; the page gets
    /// its current place on connecting.
    #[serde(skip)]
    unsent: Vec<Value>,
    /// The accepted privacy notice: the call's first recorded event.
    consent: Value,
    /// Since when the page has had no socket: after [`GRACE`] the visit ends.
    gone_since_ms: Option<u64>,
}

/// Messages kept for a customer page without a socket.
const UNSENT: usize = 32;

impl Customer {
    fn new(secret: &str, consent: Value) -> Customer {
        Customer {
            secret_sm3: secret_hash(secret),
            tx: None,
            unsent: Vec::new(),
            consent,
            gone_since_ms: Some(now_ms()),
        }
    }

    fn holds(&self, secret: &str) -> bool {
        let given = secret_hash(secret);
        given.len() == self.secret_sm3.len()
            && given.bytes().zip(self.secret_sm3.bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
    }
}

fn secret_hash(secret: &str) -> String {
    vbank_crypto::to_hex(&vbank_crypto::hash::sm3(secret.as_bytes()))
}

/// How long a customer's page may be away (no socket) before the visit ends: a phone switching networks comes back
/// within it; a closed tab does not.
pub const GRACE: Duration = Duration::from_secs(15);

#[derive(Default, serde::Serialize, Deserialize)]
struct Inner {
    #[serde(skip)]
    sessions: HashMap<String, sessions::Session>,
    #[serde(skip)]
    tellers: HashMap<String, mpsc::UnboundedSender<Value>>,
    customers: HashMap<String, Customer>,
    /// The call room of each connected customer.
    rooms: HashMap<String, String>,
    /// Signatures asked for and not given yet, by customer.
    #[serde(skip)]
    signing: HashMap<String, signing::Pending>,
    /// Screen-share requests and consents.
    #[serde(skip)]
    shares: screen::Shares,
    /// Per-address limits on login and queueing.
    #[serde(skip)]
    limits: limits::Limits,
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
    documents: documents::Documents,
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
            documents: documents::Documents::default(),
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
        let mut inner = Inner::default();
        if let Some(s) = &store
            && let Ok(Some(v)) = s.get(Table::Queue, "visits").await
        {
            match serde_json::from_slice::<Inner>(&v.value) {
                Ok(mut saved) => {
                    // No page has a socket to this process yet: each gets the grace period to come back.
                    for c in saved.customers.values_mut() {
                        c.gone_since_ms = Some(now_ms());
                    }
                    inner = saved;
                }
                Err(e) => log::error!("the saved visits are unreadable: {e}"),
            }
        }
        let accounts = store.clone().and_then(|s| Accounts::new(s).ok());
        Desk {
            router: Arc::new(Mutex::new(router)),
            inner: Arc::new(std::sync::Mutex::new(inner)),
            accounts,
            store,
            cfg,
            calls,
            documents: documents::Documents::default(),
        }
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
        if let Some(s) = &self.store {
            let visits = serde_json::to_vec(&*self.inner.lock().expect("not poisoned")).expect("serializes");
            for (key, value) in [("router", router.snapshot()), ("visits", visits)] {
                if let Err(e) = s.put(Table::Queue, key, &value, Expect::Any).await {
                    log::error!("the queue could not be saved ({key}): {e}");
                }
            }
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
        let mut inner = self.inner.lock().expect("not poisoned");
        let Some(c) = inner.customers.get_mut(customer) else { return };
        let sent = c.tx.as_ref().is_some_and(|tx| tx.send(v.clone()).is_ok());
        if !sent && v["type"] != "position" && c.unsent.len() < UNSENT {
            c.unsent.push(v);
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
                if existing.is_none() {
                    self.calls.e2ee.mark(&room, &business);
                }
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
                let e2ee = self.calls.e2ee.suite_of(&j.room, false).is_some();
                let body = json!({"room": j.room, "role": j.role, "ttl_s": 600, "e2ee": e2ee});
                match crate::recording::post(cfg, Service::Keyd, "/v1/token/sign", body).await {
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

    /// Every half second: give unanswered rings up, end visits whose page did not come back, forget expired staff
    /// sessions; every ten minutes, delete expired documents.
    pub async fn tick(self) {
        for round in 0u64.. {
            tokio::time::sleep(Duration::from_millis(500)).await;
            if round % 1200 == 0 {
                self.expire_documents().await;
                self.expire_sessions().await;
            }
            let due = matches!(self.router.lock().await.poll_output(), Output::Timeout(t) if t <= now_ms());
            if due {
                self.apply(|r, now| r.timeout(now)).await;
            }
            // Visits whose page has been away longer than the grace period end: out of the queue, or the call ends.
            let gone: Vec<String> = {
                let mut inner = self.inner.lock().expect("not poisoned");
                let limit = now_ms().saturating_sub(GRACE.as_millis() as u64);
                let gone: Vec<String> = inner
                    .customers
                    .iter()
                    .filter(|(_, c)| c.gone_since_ms.is_some_and(|t| t <= limit))
                    .map(|(id, _)| id.clone())
                    .collect();
                for id in &gone {
                    inner.customers.remove(id);
                }
                gone
            };
            for id in gone {
                log::info!("a customer's page did not come back within {GRACE:?}: the visit ends");
                self.customer_left(&id, "the customer's page closed").await.ok();
                self.inner.lock().expect("not poisoned").rooms.remove(&id);
            }
        }
    }

    /// The customer left (hung up, or their page is gone): out of the queue, or their call ends. The call's tellers
    /// are told (`ended`), so their pages leave the call and its recording closes; the recording notes why.
    async fn customer_left(&self, customer: &str, why: &str) -> Result<(), String> {
        let tellers = self.router.lock().await.call_of(customer).map(<[String]>::to_vec).unwrap_or_default();
        self.apply(|q, now| q.leave(now, customer)).await.map_err(|e| e.to_string())?;
        let room = self.inner.lock().expect("not poisoned").rooms.get(customer).cloned();
        if let Some(room) = room.filter(|_| !tellers.is_empty()) {
            self.calls.record(&room, json!({"kind": "ended", "by": "customer", "why": why})).await;
        }
        for t in tellers {
            self.send_teller(&t, json!({"type": "ended", "customer": customer, "why": why}));
        }
        Ok(())
    }

    /// The room of `customer`'s call if `teller` is in it.
    async fn teller_room(&self, teller: &str, customer: &str) -> Option<String> {
        let in_call = self.router.lock().await.call_of(customer).is_some_and(|ts| ts.iter().any(|t| t == teller));
        if !in_call {
            return None;
        }
        self.inner.lock().expect("not poisoned").rooms.get(customer).cloned()
    }

    /// The teller's outcome code and notes for the call, into its recording (notes are kept encrypted there only).
    async fn outcome(
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
            let event = json!({"kind": "outcome", "teller": teller, "outcome": outcome, "notes": notes});
            self.calls.record(&room, event).await;
        }
        Ok(())
    }

    /// A transfer the router accepted (`result`) into the call's recording, with its `target`.
    async fn note_transfer(
        &self,
        teller: &str,
        customer: &str,
        result: Result<(), String>,
        mut target: Value,
    ) -> Result<(), String> {
        result?;
        let room = self.inner.lock().expect("not poisoned").rooms.get(customer).cloned();
        if let (Some(room), Some(o)) = (room, target.as_object_mut()) {
            o.insert("kind".into(), "transfer".into());
            o.insert("from".into(), teller.into());
            self.calls.record(&room, target).await;
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
}

fn problem(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({"error": message.into()}))).into_response()
}

#[derive(Deserialize)]
struct LoginIn {
    name: String,
    password: String,
}

impl Desk {
    /// Why a request from `addr` through `door` is refused now (too many this minute), if it is.
    fn over_limit(&self, door: limits::Door, addr: Option<&RemoteAddr>) -> Option<Response> {
        let ip = addr?.0.ip();
        let (wait, first) = self.inner.lock().expect("not poisoned").limits.allow(door, ip, now_ms()).err()?;
        if first {
            log::warn!("{door:?}: more than {} requests a minute from one address; refusing", door.per_minute());
        }
        let msg = format!("too many requests from your network; try again in {wait} s");
        let mut r = problem(StatusCode::TOO_MANY_REQUESTS, msg);
        r.headers_mut().insert(header::RETRY_AFTER, wait.into());
        Some(r)
    }
}

async fn login(
    State(s): State<AppState>,
    addr: Option<axum::Extension<RemoteAddr>>,
    Json(r): Json<LoginIn>,
) -> Response {
    if let Some(refused) = s.desk.over_limit(limits::Door::Login, addr.as_deref()) {
        return refused;
    }
    let Some(accounts) = s.desk.accounts() else {
        return problem(StatusCode::SERVICE_UNAVAILABLE, "no account store on this node");
    };
    let now_s = now_ms() / 1000;
    match accounts.login(&r.name, Zeroizing::new(r.password), now_s).await {
        Ok(a) => {
            let token = s.desk.open_session(&a.name, a.role).await;
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
    if let Some((name, _)) = s.desk.session(&headers).await {
        s.desk.close_sessions(&name).await;
        s.desk.apply(|q, now| q.set(now, &name, TellerState::Offline)).await.ok();
    }
    let cookie = "vbank_session=; HttpOnly; Secure; SameSite=Strict; Path=/; Max-Age=0";
    ([(header::SET_COOKIE, cookie)], Json(json!({"ok": true}))).into_response()
}

/// The desk's public routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/login", axum::routing::post(login))
        .route("/api/logout", axum::routing::post(logout))
        .route("/api/teller/ws", axum::routing::get(teller::teller_ws))
        .route("/api/teller/queues", axum::routing::get(teller::queues))
        .route("/api/consent", axum::routing::get(customer::consent_text))
        .route("/api/queue", axum::routing::post(customer::join_queue))
        .route("/api/queue/ws", axum::routing::get(customer::customer_ws))
        .merge(documents::routes())
        .merge(kyc::routes())
        .merge(supervisor::routes())
        .merge(recordings::routes())
}

/// Business types a comma-separated list names.
pub fn businesses(list: &str) -> BTreeSet<String> {
    list.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_string).collect()
}
