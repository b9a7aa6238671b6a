//! `vbank kyc`: the KYC proxy. The gateway asks it, on a teller's behalf, for one check at a time; each answer comes
//! with an attestation (inputs by hash or keyed token, result, engine or vendor, request id, time) that keyd seals
//! and the gateway writes into the call's recording.
//!
//! - **Face in frame** (人脸在框检测): the recorder decodes the customer's camera at this moment (a keyframe it asks
//!   the browser for — never a picture the customer's device chose to send) and [`face`] counts whole faces.
//! - **Identity** (联网核查): name and ID number, checked locally first (GB 11643), then by the configured vendor
//!   ([`vendor`]: Tencent, Alibaba or NCIIC, with an optional fallback vendor); the teller sees them masked.
//! - **ID card** ([`card_read`]): OCR of the card held to the camera, and the live face compared with its portrait
//!   ([`compare`], advisory) — on the appliance, by a vendor ([`cards`]: Tencent, [`baidu`]), or both, as `[kyc] ocr`
//!   and `face_compare` say.
//! - **Credit code**: a company's unified social credit code, checked on the appliance (GB 32100).
//!
//! Pictures are never stored here: the recording already holds the video. Logs carry HMAC-SM3 tokens, never an ID
//! number or a name. [`simulate`] is the vendors' side for tests and drills.

pub mod baidu;
pub mod card_read;
pub mod cards;
pub mod compare;
pub mod face;
mod face_check;
mod metrics;
mod ocr_rule;
pub mod simulate;
pub mod vendor;

#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde::Deserialize;
use serde_json::{Value, json};
use vbank_config::{Config, Service};
use vbank_crypto::{SecretBytes, to_hex};
use vbank_kyc::mask;
use vbank_kyc::vendor::{Decision, Verdict};
use vbank_service::client::{self, Method};
use vbank_service::{Check, Context, ServiceError, admin, exit, serve_tls};
use vbank_tls::{AccessPolicy, ClientAuth};

use crate::cards::CardVendor;
use crate::metrics::KycMetrics;
use crate::vendor::IdentityVendor;

/// Why the KYC service failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KycServiceError {
    /// A listener or TLS failure.
    #[error(transparent)]
    Service(#[from] ServiceError),
    /// The configuration lacks something.
    #[error("{0}")]
    Config(String),
    /// The simulator could not start.
    #[error("simulator: {0}")]
    Simulator(String),
}

impl KycServiceError {
    /// The process exit code for a start-up failure.
    pub fn exit_code(&self) -> i32 {
        match self {
            KycServiceError::Service(e) => e.exit_code(),
            KycServiceError::Config(_) => exit::CONFIG,
            KycServiceError::Simulator(_) => exit::UNAVAILABLE,
        }
    }
}

/// What the handlers share.
#[derive(Clone)]
pub struct ApiState {
    cfg: Arc<Config>,
    token_key: Arc<SecretBytes>,
    /// The identity vendor, then the fallback (asked only when the first is unavailable and did not bill).
    identity: Vec<Arc<IdentityVendor>>,
    /// Who reads cards besides (or instead of) the appliance, and who compares faces (`[kyc] ocr`, `face_compare`).
    ocr_vendor: Option<Arc<CardVendor>>,
    face_vendor: Option<Arc<CardVendor>>,
    metrics: KycMetrics,
    masking: mask::Rules,
    reader: card_read::Reader,
}

fn problem(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({"error": message.into()}))).into_response()
}

fn now_us() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros() as u64)
}

/// Seal `attestation` with keyd's evidence key; the attestation with `seal` (signature and key) added.
async fn seal(cfg: &Config, mut attestation: Value) -> Result<Value, String> {
    let data = to_hex(attestation.to_string().as_bytes());
    let sealed = client::post_service(
        &cfg.tls,
        Service::Kyc,
        Service::Keyd,
        cfg.keyd.listen,
        "/v1/sign",
        &json!({"purpose": "evidence-seal", "data": data}),
        Duration::from_secs(10),
    )
    .await?;
    attestation["seal"] = json!({"signature": sealed["signature"], "key": sealed["key"]});
    Ok(attestation)
}

/// A PNG of the customer's camera now, from the recorder.
async fn still(cfg: &Config, recording: &str) -> Result<Vec<u8>, String> {
    let tls = vbank_tls::internal_client_config(&cfg.tls, Service::Kyc).map_err(|e| e.to_string())?;
    let name = vbank_tls::service_dns_name(Service::Recorder);
    let body = json!({"track": "customer/camera"}).to_string();
    let path = format!("/v1/stills/{}", client::encode_query_value(recording));
    let (status, bytes) =
        client::call(tls, cfg.recorder.listen, &name, Method::POST, &path, Some(body.into()), Duration::from_secs(10))
            .await
            .map_err(|e| format!("recorder: {e}"))?;
    if !status.is_success() {
        let v: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        return Err(v["error"].as_str().map_or_else(|| format!("recorder: {status}"), str::to_string));
    }
    Ok(bytes.to_vec())
}

#[derive(Deserialize)]
struct FaceIn {
    call: String,
    recording: String,
}

/// 人脸在框检测 on the customer's camera now.
async fn face_in_frame(State(s): State<ApiState>, Json(r): Json<FaceIn>) -> Response {
    let judged = card_read::on_camera(&s, &r.recording, |image| {
        let (w, h) = image.dimensions();
        let faces = face::detect(&image::DynamicImage::ImageRgb8(image).to_luma8());
        Ok((face::judge(&faces, w, h), faces))
    })
    .await;
    let ((verdict, faces), took, image_sm3, _) = match judged {
        Ok(j) => j,
        Err(refused) => return refused,
    };
    s.metrics.engine_seconds("face-in-frame", took);
    let verdict_name = serde_json::to_value(verdict).unwrap_or_default();
    s.metrics.check("face-in-frame", verdict_name.as_str().unwrap_or("?"));
    let attestation = json!({
        "kind": "kyc", "step": "face-in-frame", "call": r.call,
        "inputs": {"image_sm3": image_sm3, "source": "customer/camera keyframe decoded by the recorder"},
        "result": verdict_name, "faces": faces.len(),
        "best_score": faces.first().map(|f| (f.score * 10.0).round() / 10.0),
        "engine": "rustface seeta_fd_frontal_v1.0", "at_us": now_us(),
        "personal_data": [{"item": "one still of the customer's camera", "kept": "not kept; the recording holds the video",
                           "deleted": "at once, after the check"}],
    });
    log::info!("call {}: face in frame: {} ({} faces, {} ms)", r.call, verdict_name, faces.len(), took.as_millis());
    respond(&s, attestation, json!({"verdict": verdict_name, "message": verdict.message(), "faces": faces.len()})).await
}

#[derive(Deserialize)]
struct IdentityIn {
    call: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    id_number: String,
    /// Use the name and number OCR read from this call's card instead.
    #[serde(default)]
    from_card: bool,
}

fn verdict_name(v: &Verdict) -> &'static str {
    match v {
        Verdict::Match => "match",
        Verdict::Mismatch => "mismatch",
        Verdict::NoRecord => "no-record",
        Verdict::BadInput(_) => "bad-input",
        Verdict::Unavailable(_) => "unavailable",
        Verdict::Misconfigured(_) => "misconfigured",
    }
}

/// 联网核查: name and ID number against the authority's record, through the configured vendor.
async fn identity(State(s): State<ApiState>, Json(r): Json<IdentityIn>) -> Response {
    let (name, number) = if r.from_card {
        match s.reader.take(&r.call) {
            Some(card_read::CardRead { name: Some(n), id_number: Some(i), .. }) => (n.to_string(), i.to_string()),
            _ => {
                return problem(
                    StatusCode::CONFLICT,
                    "no card has been read in this call: read the ID card first, or type the name and number",
                );
            }
        }
    } else {
        (r.name.trim().to_string(), r.id_number.trim().to_ascii_uppercase())
    };
    let (name, number) = (zeroize::Zeroizing::new(name), zeroize::Zeroizing::new(number));
    let id_token = mask::token(s.token_key.expose(), "id", &number);
    let name_token = mask::token(s.token_key.expose(), "name", &name);
    let today = vbank_kyc::id::Date::from_unix(now_us() / 1_000_000);
    let (decision, engine) = if name.is_empty() || name.chars().count() > 32 {
        (Decision::local(Verdict::BadInput("write the name as on the ID card".into())), "local")
    } else if let Err(e) = vbank_kyc::id::parse(&number, today) {
        (Decision::local(Verdict::BadInput(e.to_string())), "local")
    } else {
        vendor::ask_in_turn(&s.identity, &name, &number, |v, took| s.metrics.vendor_seconds(v, took)).await
    };
    let verdict = verdict_name(&decision.verdict);
    s.metrics.check("identity", verdict);
    log::info!(
        "call {}: identity {id_token} / {name_token}: {verdict} ({engine}, request {})",
        r.call,
        decision.request_id.as_deref().unwrap_or("-")
    );
    let sent = engine != "local" && engine != "none";
    let mut personal_data = vec![json!({"item": "name and ID number",
                       "kept": if sent { "sent to the vendor for this check; tokens only here" } else { "not sent; tokens only" },
                       "deleted": if sent { "here at once; at the vendor as the bank's contract with it says" } else { "at once" }})];
    let photo = decision.photo.as_deref().map(|p| {
        personal_data.push(json!({"item": "the authority's photo of the citizen",
                                  "kept": "shown to the teller for this check; not kept",
                                  "deleted": "at once here; from the teller's page when the customer leaves"}));
        (to_hex(&vbank_crypto::hash::sm3(p)), format!("data:image/jpeg;base64,{}", B64.encode(p)))
    });
    let attestation = json!({
        "kind": "kyc", "step": "identity", "call": r.call,
        "inputs": {"id_token": id_token, "name_token": name_token,
                   "source": if r.from_card { "read from the ID card in this call" } else { "typed by the teller" }},
        "result": verdict, "billed": decision.billed, "engine": engine,
        "request_id": decision.request_id, "photo_sm3": photo.as_ref().map(|p| &p.0), "at_us": now_us(),
        "personal_data": personal_data,
    });
    let shown = json!({
        "verdict": verdict, "message": decision.message(),
        "name": mask::name(&name), "id_number": s.masking.id(&number),
        "request_id": decision.request_id, "photo": photo.map(|p| p.1), "engine": engine,
    });
    respond(&s, attestation, shown).await
}

#[derive(Deserialize)]
struct CreditCodeIn {
    call: String,
    code: String,
}

/// For corporate accounts: the unified social credit code, checked on the appliance (GB 32100, with the GB 11714
/// organisation code inside). A company's code is not personal data: it is shown and attested as written.
async fn credit_code(State(s): State<ApiState>, Json(r): Json<CreditCodeIn>) -> Response {
    let (verdict, message, code) = match vbank_kyc::uscc::parse(&r.code) {
        Ok(code) => {
            ("valid", "统一社会信用代码校验通过 · The unified social credit code is well formed".to_string(), code)
        }
        Err(e) => (
            "invalid",
            format!("统一社会信用代码有误，请核对营业执照 · Check the business licence: {e}"),
            r.code.trim().to_string(),
        ),
    };
    s.metrics.check("credit-code", verdict);
    log::info!("call {}: credit code: {verdict}", r.call);
    let attestation = json!({
        "kind": "kyc", "step": "credit-code", "call": r.call, "inputs": {"code": code},
        "result": verdict, "engine": "local GB 32100 / GB 11714", "at_us": now_us(),
    });
    respond(&s, attestation, json!({"verdict": verdict, "message": message, "code": code})).await
}

/// Seal the attestation and answer with what the teller sees plus the sealed attestation (for the recording).
async fn respond(s: &ApiState, attestation: Value, mut shown: Value) -> Response {
    match seal(&s.cfg, attestation).await {
        Ok(sealed) => {
            shown["attestation"] = sealed;
            Json(shown).into_response()
        }
        Err(e) => {
            log::error!("cannot seal a KYC attestation: {e}");
            problem(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("the check ran but its record cannot be sealed ({e}); it does not count — try again"),
            )
        }
    }
}

/// The API: only the gateway asks for checks.
pub fn router(state: ApiState) -> Router {
    let policy = Arc::new(AccessPolicy::new().allow("/v1", &[Service::Gateway]));
    Router::new()
        .route("/v1/face-in-frame", post(face_in_frame))
        .route("/v1/identity", post(identity))
        .route("/v1/credit-code", post(credit_code))
        .route("/v1/id-card", post(card_read::id_card))
        .route("/v1/face-compare", post(face_check::face_compare))
        .layer(axum::middleware::from_fn_with_state(policy, vbank_service::require_peer))
        .with_state(state)
}

fn token_key(cfg: &Config) -> Result<SecretBytes, KycServiceError> {
    let r = cfg.kyc.token_key.as_ref().ok_or_else(|| {
        KycServiceError::Config("[kyc] token_key is not set: name a credential of at least 32 random bytes".into())
    })?;
    let s = r.load().map_err(|e| KycServiceError::Config(format!("[kyc] token_key: {e}")))?;
    if s.expose().len() < 32 {
        return Err(KycServiceError::Config("[kyc] token_key is shorter than 32 bytes: make a longer one".into()));
    }
    Ok(SecretBytes::new(s.expose().to_vec()))
}

/// Keep the "vendor" readiness check true: failing while a vendor's breaker holds it paused.
fn watch_vendors(health: Arc<vbank_service::Health>, identity: Vec<Arc<IdentityVendor>>, cards: Vec<Arc<CardVendor>>) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(2));
        loop {
            tick.tick().await;
            let mut paused: Vec<&str> = identity.iter().filter(|v| v.is_paused()).map(|v| v.name).collect();
            paused.extend(cards.iter().filter(|c| c.is_paused()).map(|c| c.name()));
            if paused.is_empty() {
                health.set("vendor", Check::Ok);
            } else {
                let why = format!("{} failed repeatedly and is paused", paused.join(", "));
                health.set("vendor", Check::Failing(why));
            }
        }
    });
}

/// Run the KYC service until SIGTERM/SIGINT.
pub async fn run(cfg: Config) -> Result<(), KycServiceError> {
    let ctx = Context::new("kyc", &cfg.node.name, &["vendor", "models"]);
    ctx.stop_on_signals();
    let token_key = token_key(&cfg)?;
    let mut identity = Vec::new();
    for v in [&cfg.kyc.identity, &cfg.kyc.identity_fallback] {
        if v != "off" && v != "none" {
            identity.push(Arc::new(IdentityVendor::new(&cfg.kyc, v)?));
        }
    }
    // One client per card vendor, shared when OCR and face comparison name the same one.
    let mut cards: Vec<Arc<CardVendor>> = Vec::new();
    let mut card_vendor = |engine: &str| -> Result<Option<Arc<CardVendor>>, KycServiceError> {
        let Some(name) = vbank_config::card_vendor(engine) else { return Ok(None) };
        if let Some(c) = cards.iter().find(|c| c.name() == name) {
            return Ok(Some(c.clone()));
        }
        let c = Arc::new(CardVendor::new(&cfg.kyc, name)?);
        cards.push(c.clone());
        Ok(Some(c))
    };
    let ocr_vendor = card_vendor(&cfg.kyc.ocr)?;
    let face_vendor = card_vendor(&cfg.kyc.face_compare)?;
    watch_vendors(ctx.health.clone(), identity.clone(), cards);
    let api_listener = vbank_service::bind(cfg.kyc.listen, "kyc.listen").await?;
    let admin_listener = vbank_service::bind(cfg.kyc.admin_listen, "kyc.admin_listen").await?;
    let api_tls =
        vbank_tls::service_server_tls(&cfg.tls, Service::Kyc, ClientAuth::Required).map_err(ServiceError::from)?;
    let admin_tls =
        vbank_tls::service_server_tls(&cfg.tls, Service::Kyc, ClientAuth::Optional).map_err(ServiceError::from)?;
    let health = ctx.health.clone();
    let reader = card_read::Reader::start(cfg.kyc.models.clone(), move |loaded| match loaded {
        Ok(()) => health.set("models", Check::Ok),
        Err(e) => {
            log::error!("OCR or face comparison is unavailable: {e}");
            health.set("models", Check::Failing(e));
        }
    });
    let metrics = KycMetrics::default();
    ctx.metrics.register(|r| metrics.register(r));
    let listen = cfg.kyc.listen;
    let masking = mask::Rules { id_front: cfg.kyc.mask_id_front as usize, id_back: cfg.kyc.mask_id_back as usize };
    let state = ApiState {
        cfg: Arc::new(cfg),
        token_key: Arc::new(token_key),
        identity,
        ocr_vendor,
        face_vendor,
        metrics,
        masking,
        reader,
    };
    let api_task = tokio::spawn(serve_tls(api_listener, api_tls, ctx.observed(router(state), "api"), ctx.shutdown()));
    let admin_app = ctx.observed(admin::router(ctx.health.clone(), ctx.metrics.clone()), "admin");
    let admin_task = tokio::spawn(serve_tls(admin_listener, admin_tls, admin_app, ctx.shutdown()));
    ctx.notify_systemd();
    log::info!(listen = listen.to_string().as_str(); "kyc started");
    let _ = api_task.await;
    let _ = admin_task.await;
    log::info!("kyc stopped");
    Ok(())
}
