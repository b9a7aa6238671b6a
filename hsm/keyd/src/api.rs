//! keyd's internal API (mTLS). Who may call what is decided twice: by path ([`policy`]) and, for data keys and seals,
//! by purpose ([`dek_purposes`], [`sign_purposes`]). Keys and signatures travel as hex.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use vbank_config::Service;
use vbank_crypto::aead::AeadAlg;
use vbank_crypto::{from_hex, to_hex};
use vbank_hsm::{HsmError, KeyAlg, KeyLabel, Purpose};
use vbank_service::require_peer;
use vbank_tls::{AccessPolicy, Peer};

use crate::KeydError;
use crate::approvals::NewRequest;
use crate::ceremony::{OfficerIn, Witness};
use crate::keys::{EVIDENCE_ID, KeyService, blocking};

/// Which service may call which path.
pub fn policy() -> AccessPolicy {
    AccessPolicy::new()
        .allow("/v1/hsm/status", &[Service::Gateway, Service::Recorder, Service::Kyc, Service::Cli])
        .allow("/v1/dek", &[Service::Recorder, Service::Cli])
        .allow("/v1/sign", &[Service::Recorder, Service::Kyc, Service::Gateway])
        .allow("/v1/media-keys", &[Service::Gateway])
        .allow("/v1/token/sign", &[Service::Gateway, Service::Cli])
        .allow("/v1/token/keys", &[Service::Gateway, Service::Recorder, Service::Kyc, Service::Cli])
        .allow("/v1/audit", &[Service::Gateway, Service::Recorder, Service::Kyc, Service::Cli])
        .allow("/v1/admin", &[Service::Cli])
}

/// The purposes a service may get data keys for.
pub fn dek_purposes(svc: Service) -> &'static [Purpose] {
    match svc {
        // The recorder opens recordings' keys and, for end-to-end encrypted calls, the calls' media keys; the gateway
        // never gets a media key in clear (it asks `/v1/media-keys`, which encrypts the key to each page).
        Service::Recorder => &[Purpose::Recording, Purpose::Media],
        Service::Cli => &[Purpose::Backup],
        _ => &[],
    }
}

/// The audit actions a service may record (its own events, into keyd's hash-chained log): a prefix each.
pub fn audit_prefix(svc: Service) -> Option<&'static str> {
    match svc {
        Service::Recorder => Some("recording."),
        Service::Gateway => Some("call."),
        Service::Kyc => Some("kyc."),
        Service::Cli => Some("operator."),
        _ => None,
    }
}

/// The purposes a service may have keyd sign with.
pub fn sign_purposes(svc: Service) -> &'static [Purpose] {
    match svc {
        Service::Recorder | Service::Kyc | Service::Gateway => &[Purpose::EvidenceSeal],
        _ => &[],
    }
}

/// Shared by the handlers.
#[derive(Clone)]
pub struct ApiState {
    /// The key service.
    pub keys: Arc<KeyService>,
    /// Approvals needed for dual-control actions.
    pub required: usize,
    /// Token label (named in the ceremony record).
    pub token: String,
}

impl IntoResponse for KeydError {
    fn into_response(self) -> Response {
        let (status, code) = match &self {
            KeydError::Hsm(
                HsmError::Unavailable(_)
                | HsmError::PinIncorrect
                | HsmError::PinLocked
                | HsmError::TokenNotFound { .. },
            ) => (StatusCode::SERVICE_UNAVAILABLE, "hsm_unavailable"),
            KeydError::Hsm(HsmError::NotFound(_)) => (StatusCode::NOT_FOUND, "no_such_key"),
            KeydError::Hsm(HsmError::Exists(_)) => (StatusCode::CONFLICT, "exists"),
            KeydError::Hsm(HsmError::Tampered | HsmError::Envelope(_)) => {
                (StatusCode::UNPROCESSABLE_ENTITY, "bad_wrapped_key")
            }
            KeydError::Hsm(HsmError::ContextMismatch) => (StatusCode::FORBIDDEN, "context_mismatch"),
            KeydError::Hsm(HsmError::Unsupported { .. }) => (StatusCode::BAD_REQUEST, "unsupported"),
            KeydError::Store(vbank_store::StoreError::Unavailable { .. }) => {
                (StatusCode::SERVICE_UNAVAILABLE, "store_unavailable")
            }
            KeydError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            KeydError::NoKey(_) => (StatusCode::CONFLICT, "no_key"),
            KeydError::Refused(_) | KeydError::BadRequest(_) => (StatusCode::BAD_REQUEST, "refused"),
            _ => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        };
        let message = if status == StatusCode::INTERNAL_SERVER_ERROR {
            log::error!("internal error: {self}");
            "internal error; see keyd's log".to_string()
        } else {
            self.to_string()
        };
        (status, Json(json!({"error": code, "message": message}))).into_response()
    }
}

pub(crate) fn caller(peer: &Peer) -> Result<Service, KeydError> {
    match peer {
        Peer::Service(s) => Ok(*s),
        other => Err(KeydError::Forbidden(format!("{} may not call keyd", other.describe()))),
    }
}

fn purpose_of(name: &str) -> Result<Purpose, KeydError> {
    Purpose::from_name(name).ok_or_else(|| KeydError::BadRequest(format!("unknown purpose {name:?}")))
}

fn hex_in(what: &str, s: &str) -> Result<Vec<u8>, KeydError> {
    from_hex(s).map_err(|_| KeydError::BadRequest(format!("{what} must be hex")))
}

pub(crate) type ApiResult = Result<Response, KeydError>;

/// The router.
pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/v1/hsm/status", get(status))
        .route("/v1/dek/create", post(dek_create))
        .route("/v1/dek/open", post(dek_open))
        .route("/v1/audit/append", post(audit_append))
        .route("/v1/audit/recent", post(audit_recent))
        .route("/v1/sign", post(sign))
        .route("/v1/media-keys", post(crate::media::media_keys))
        .route("/v1/token/sign", post(token_sign))
        .route("/v1/token/keys", get(token_keys))
        .route("/v1/admin/keys", get(keys_list))
        .route("/v1/admin/keys/create", post(keys_create))
        .route("/v1/admin/keys/{purpose}/{version}/public", get(key_public))
        .route("/v1/admin/ceremony", post(ceremony))
        .route("/v1/admin/rewrap", post(rewrap))
        .route("/v1/admin/approvals", get(approvals_list).post(approvals_request))
        .route("/v1/admin/approvals/{id}/approve", post(approvals_approve))
        .route("/v1/admin/approvals/{id}/reject", post(approvals_reject))
        .route("/v1/admin/officers", get(officers))
        .route("/v1/admin/audit/export", get(audit_export))
        .route("/v1/admin/audit/seal", post(audit_seal))
        .layer(axum::middleware::from_fn_with_state(Arc::new(policy()), require_peer))
        .layer(axum::middleware::from_fn_with_state(state.clone(), audit_request))
        .with_state(state)
}

/// Every request to keyd leaves an audit entry (who, what path, how it ended), refused ones included; operations
/// add their own entries with details.
async fn audit_request(
    State(s): State<ApiState>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let peer = req.extensions().get::<Peer>().map(Peer::describe).unwrap_or_else(|| "anonymous".into());
    let what = format!("{} {}", req.method(), req.uri().path());
    let resp = next.run(req).await;
    let outcome = match resp.status() {
        s if s.is_success() => "ok",
        s if s.is_client_error() => "denied",
        _ => "error",
    };
    if let Err(e) = s.keys.audit.append(&s.keys, &peer, "request", &what, outcome, resp.status().as_str()).await {
        // A request that cannot be audited must not look successful.
        log::error!("audit log unavailable: {e}");
        return KeydError::Internal(format!("audit log unavailable: {e}")).into_response();
    }
    resp
}

async fn status(State(s): State<ApiState>) -> ApiResult {
    let b = s.keys.backend.clone();
    Ok(Json(blocking(move || b.status()).await?).into_response())
}

#[derive(Deserialize)]
struct DekCreate {
    purpose: String,
    #[serde(default = "default_alg")]
    alg: String,
    context: String,
}

fn default_alg() -> String {
    AeadAlg::Aes256Gcm.name().to_string()
}

async fn dek_create(
    State(s): State<ApiState>,
    Extension(peer): Extension<Peer>,
    Json(r): Json<DekCreate>,
) -> ApiResult {
    let svc = caller(&peer)?;
    let purpose = purpose_of(&r.purpose)?;
    if !dek_purposes(svc).contains(&purpose) {
        return Err(KeydError::Forbidden(format!("{} may not get {} data keys", svc.name(), purpose.name())));
    }
    let alg = AeadAlg::from_name(&r.alg)
        .ok_or_else(|| KeydError::BadRequest(format!("alg {:?}: aes-256-gcm or sm4-gcm", r.alg)))?;
    let k = s.keys.create_dek(purpose, alg, r.context.as_bytes(), svc.name()).await?;
    Ok(Json(json!({"id": k.id, "key": to_hex(k.key.expose()), "envelope": to_hex(&k.envelope), "alg": alg.name()}))
        .into_response())
}

#[derive(Deserialize)]
struct DekOpen {
    purpose: String,
    id: Option<String>,
    envelope: Option<String>,
    context: String,
    /// The person the service acts for (a viewer playing a recording back): named in the audit entry.
    #[serde(default)]
    on_behalf: Option<String>,
    /// Their stated reason: in the audit entry.
    #[serde(default)]
    reason: Option<String>,
}

/// The audit actor for a service acting for someone.
fn actor_for(svc: Service, on_behalf: Option<&str>) -> String {
    match on_behalf {
        Some(who) => format!("{}:{}", svc.name(), who),
        None => svc.name().to_string(),
    }
}

async fn dek_open(State(s): State<ApiState>, Extension(peer): Extension<Peer>, Json(r): Json<DekOpen>) -> ApiResult {
    let svc = caller(&peer)?;
    let purpose = purpose_of(&r.purpose)?;
    if !dek_purposes(svc).contains(&purpose) {
        s.keys.audit.append(&s.keys, svc.name(), "dek.open", purpose.name(), "denied", "caller not permitted").await?;
        return Err(KeydError::Forbidden(format!("{} may not open {} data keys", svc.name(), purpose.name())));
    }
    let envelope = r.envelope.as_deref().map(|e| hex_in("envelope", e)).transpose()?;
    let actor = actor_for(svc, r.on_behalf.as_deref());
    let note = r.reason.as_deref().map(|why| format!("reason={why:?}")).unwrap_or_default();
    let key =
        s.keys.open_dek(purpose, r.id.as_deref(), envelope.as_deref(), r.context.as_bytes(), &actor, &note).await?;
    Ok(Json(json!({"key": to_hex(key.expose())})).into_response())
}

#[derive(Deserialize)]
struct AuditIn {
    action: String,
    target: String,
    #[serde(default = "ok")]
    outcome: String,
    #[serde(default)]
    detail: String,
    #[serde(default)]
    on_behalf: Option<String>,
}

fn ok() -> String {
    "ok".into()
}

/// A service records one of its own events (a search, a view, an export) in the audit log.
async fn audit_append(
    State(s): State<ApiState>,
    Extension(peer): Extension<Peer>,
    Json(r): Json<AuditIn>,
) -> ApiResult {
    let svc = caller(&peer)?;
    let prefix = audit_prefix(svc).ok_or_else(|| KeydError::Forbidden(format!("{} may not audit", svc.name())))?;
    let well_formed = r.action.len() <= 64
        && r.action.strip_prefix(prefix).is_some_and(|rest| {
            !rest.is_empty() && rest.chars().all(|c| c.is_ascii_lowercase() || c == '_' || c == '.')
        });
    if !well_formed {
        return Err(KeydError::BadRequest(format!(
            "action {:?}: {} records actions named {prefix}<lowercase words>",
            r.action,
            svc.name()
        )));
    }
    if r.detail.len() > 4096 || r.target.len() > 256 {
        return Err(KeydError::BadRequest("target or detail too long (256 and 4096 bytes at most)".into()));
    }
    let actor = actor_for(svc, r.on_behalf.as_deref());
    s.keys.audit.append(&s.keys, &actor, &r.action, &r.target, &r.outcome, &r.detail).await?;
    Ok(Json(json!({"recorded": true})).into_response())
}

#[derive(Deserialize)]
struct SignIn {
    purpose: String,
    data: String,
}

async fn sign(State(s): State<ApiState>, Extension(peer): Extension<Peer>, Json(r): Json<SignIn>) -> ApiResult {
    let svc = caller(&peer)?;
    let purpose = purpose_of(&r.purpose)?;
    if !sign_purposes(svc).contains(&purpose) {
        return Err(KeydError::Forbidden(format!("{} may not sign with {} keys", svc.name(), purpose.name())));
    }
    let data = hex_in("data", &r.data)?;
    Ok(Json(s.keys.sign(purpose, &data, EVIDENCE_ID, svc.name()).await?).into_response())
}

#[derive(Deserialize)]
struct TokenIn {
    room: String,
    role: String,
    ttl_s: u64,
    /// The call is end-to-end encrypted.
    #[serde(default)]
    e2ee: bool,
}

async fn token_sign(State(s): State<ApiState>, Extension(peer): Extension<Peer>, Json(r): Json<TokenIn>) -> ApiResult {
    let svc = caller(&peer)?;
    let (token, claims) = s.keys.sign_token(&r.room, &r.role, r.ttl_s, r.e2ee, svc.name()).await?;
    Ok(Json(json!({"token": token, "claims": claims})).into_response())
}

async fn token_keys(State(s): State<ApiState>) -> ApiResult {
    let keys: Vec<Value> =
        s.keys.token_keys().await?.into_iter().map(|(label, pem)| json!({"kid": label, "pem": pem})).collect();
    Ok(Json(json!({"keys": keys})).into_response())
}

async fn keys_list(State(s): State<ApiState>) -> ApiResult {
    let records = s.keys.records().await?;
    let b = s.keys.backend.clone();
    let objects = blocking(move || b.list()).await?;
    Ok(Json(json!({"keys": records, "hsm_objects": objects})).into_response())
}

#[derive(Deserialize)]
struct KeyCreate {
    purpose: String,
    alg: String,
}

async fn keys_create(State(s): State<ApiState>, Json(r): Json<KeyCreate>) -> ApiResult {
    let purpose = purpose_of(&r.purpose)?;
    let alg = KeyAlg::from_name(&r.alg)
        .ok_or_else(|| KeydError::BadRequest(format!("alg {:?}: aes256, sm4, sm2 or p256", r.alg)))?;
    if s.keys.records().await?.iter().any(|k| k.label.purpose == purpose) {
        return Err(KeydError::Refused(format!(
            "{} keys exist already: new versions come from `vbank hsm keys rotate` (dual control)",
            purpose.name()
        )));
    }
    Ok(Json(s.keys.new_version(purpose, alg, "cli").await?).into_response())
}

async fn key_public(State(s): State<ApiState>, Path((purpose, version)): Path<(String, String)>) -> ApiResult {
    let version: u32 =
        version.trim_start_matches('v').parse().map_err(|_| KeydError::BadRequest("version: v1, v2, …".into()))?;
    let pem = s.keys.public_pem(KeyLabel::new(purpose_of(&purpose)?, version)).await?;
    Ok(([(axum::http::header::CONTENT_TYPE, "application/x-pem-file")], pem).into_response())
}

#[derive(Deserialize)]
struct CeremonyIn {
    officers: Vec<OfficerIn>,
    witnesses: Vec<Witness>,
}

async fn ceremony(State(s): State<ApiState>, Json(r): Json<CeremonyIn>) -> ApiResult {
    Ok(Json(s.keys.ceremony(&s.token, &r.officers, &r.witnesses, s.required).await?).into_response())
}

#[derive(Deserialize)]
struct RewrapIn {
    purpose: String,
}

async fn rewrap(State(s): State<ApiState>, Json(r): Json<RewrapIn>) -> ApiResult {
    let moved = s.keys.rewrap(purpose_of(&r.purpose)?, "cli").await?;
    Ok(Json(json!({"moved": moved})).into_response())
}

async fn approvals_list(State(s): State<ApiState>) -> ApiResult {
    Ok(Json(json!({"required": s.required, "requests": s.keys.requests().await?})).into_response())
}

async fn approvals_request(State(s): State<ApiState>, Json(r): Json<NewRequest>) -> ApiResult {
    let req = s.keys.request(&r, s.required).await?;
    Ok((StatusCode::CREATED, Json(req)).into_response())
}

#[derive(Deserialize)]
struct Decision {
    officer: String,
    signature: String,
}

async fn approvals_approve(State(s): State<ApiState>, Path(id): Path<String>, Json(d): Json<Decision>) -> ApiResult {
    Ok(Json(s.keys.approve(&id, &d.officer, &d.signature, s.required).await?).into_response())
}

async fn approvals_reject(State(s): State<ApiState>, Path(id): Path<String>, Json(d): Json<Decision>) -> ApiResult {
    Ok(Json(s.keys.reject(&id, &d.officer, &d.signature).await?).into_response())
}

async fn officers(State(s): State<ApiState>) -> ApiResult {
    Ok(Json(s.keys.officers().await?).into_response())
}

#[derive(Deserialize)]
struct RecentIn {
    /// The supervisor reading the log (named in the entry this read leaves).
    on_behalf: String,
    #[serde(default = "recent_default")]
    limit: usize,
}

fn recent_default() -> usize {
    100
}

/// The supervisor console's audit view (through the gateway): the latest entries, newest first. Reading the log is
/// itself written to it first, under the reader's name.
async fn audit_recent(
    State(s): State<ApiState>,
    Extension(peer): Extension<Peer>,
    Json(r): Json<RecentIn>,
) -> ApiResult {
    let svc = caller(&peer)?;
    if !matches!(svc, Service::Gateway | Service::Cli) {
        return Err(KeydError::Forbidden(format!("{} may not read the audit log", svc.name())));
    }
    let who = r.on_behalf.trim();
    if who.is_empty() || who.len() > 64 || who.chars().any(char::is_control) {
        return Err(KeydError::BadRequest("on_behalf: the reader's name, 1-64 printable characters".into()));
    }
    let limit = r.limit.clamp(1, 1000);
    s.keys
        .audit
        .append(&s.keys, &actor_for(svc, Some(who)), "audit.read", "audit", "ok", &format!("latest {limit}"))
        .await?;
    let entries: Vec<Value> =
        s.keys.audit.latest(limit).await?.iter().filter_map(|l| serde_json::from_str(l).ok()).collect();
    Ok(Json(json!({"entries": entries})).into_response())
}

async fn audit_export(State(s): State<ApiState>) -> ApiResult {
    Ok(([(axum::http::header::CONTENT_TYPE, "application/jsonl")], s.keys.audit.export().await?).into_response())
}

async fn audit_seal(State(s): State<ApiState>) -> ApiResult {
    s.keys.audit.seal(&s.keys).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
