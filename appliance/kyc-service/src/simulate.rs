//! `vbank kyc simulate`: the vendors' side over HTTPS, for tests, development nodes and DR drills. It serves the
//! sans-IO [`vbank_kyc::simulator::Simulator`] exactly as each vendor's endpoint answers (signature, QPS, results,
//! errors) — Tencent and Alibaba at `POST /`, NCIIC at its SOAP path, Baidu at its token, OCR and face paths — with
//! the certificate the caller's `[kyc.<vendor>] ca` trusts. A vendor is simulated when its credentials are in the
//! credentials directory (the same files the KYC service reads). A control API on the same listener, under
//! `/_simulator/`, adds people to the simulated authority's records, queues what Baidu's OCR "reads", and queues
//! faults; it exists only here, never in the product's adapters. It is unauthenticated: bind it to loopback or a
//! test namespace only.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde::Deserialize;
use serde_json::json;
use vbank_crypto::sm2sig::Sm2PrivateKey;
use vbank_kyc::simulator::{Fault, Simulator};
use vbank_service::ServiceError;
use vbank_tls::ServerTls;

use crate::KycServiceError;

/// How to run the simulator.
#[derive(Debug, Clone)]
pub struct SimulateOptions {
    /// Where to listen.
    pub listen: SocketAddr,
    /// Its certificate chain and key (PEM).
    pub cert: PathBuf,
    /// Its key.
    pub key: PathBuf,
    /// The directory of the vendors' credentials: `tencent-secret-id`, `tencent-secret-key`,
    /// `alibaba-access-key-id`, `alibaba-access-key-secret`, `nciic-license`, `baidu-api-key`, `baidu-secret-key`.
    pub credentials: PathBuf,
    /// Tencent's SM2 private key (PEM), to decrypt fields encrypted to its public half.
    pub tencent_encryption_key: Option<PathBuf>,
    /// A JSON file of people: `[{"name": …, "id_number": …, "photo": path of a JPEG (optional)}]`.
    pub people: Option<PathBuf>,
}

type Shared = Arc<Mutex<Simulator>>;

fn lock(s: &Shared) -> std::sync::MutexGuard<'_, Simulator> {
    s.lock().unwrap_or_else(|p| p.into_inner())
}

async fn vendor(State(sim): State<Shared>, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let headers: Vec<(String, String)> = headers
        .iter()
        .map(|(k, v)| (k.as_str().to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
        .collect();
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let reply = lock(&sim).handle(path, &headers, &body, now);
    if let Some(d) = reply.stall {
        tokio::time::sleep(d).await;
    }
    let status = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, [(axum::http::header::CONTENT_TYPE, reply.content_type)], reply.body).into_response()
}

#[derive(Deserialize)]
struct Person {
    name: String,
    id_number: String,
    /// Base64 of the authority's photo (JPEG), or in a people file the path of one.
    photo: Option<String>,
}

async fn add_people(State(sim): State<Shared>, Json(people): Json<Vec<Person>>) -> Response {
    let mut decoded = Vec::with_capacity(people.len());
    for p in &people {
        match p.photo.as_deref().map(|b| B64.decode(b)).transpose() {
            Ok(photo) => decoded.push(photo),
            Err(_) => {
                let why = format!("the photo of {:?} is not base64 (send a JPEG, base64-encoded)", p.id_number);
                return (StatusCode::BAD_REQUEST, Json(json!({"error": why}))).into_response();
            }
        }
    }
    let mut s = lock(&sim);
    for (p, photo) in people.iter().zip(decoded) {
        s.add_person(&p.id_number, &p.name, photo);
    }
    Json(json!({"added": people.len()})).into_response()
}

/// What Baidu's OCR "reads" from the next pictures: `[{"姓名": …, "公民身份号码": …}, …]`.
async fn add_cards(
    State(sim): State<Shared>,
    Json(cards): Json<Vec<std::collections::BTreeMap<String, String>>>,
) -> Response {
    let mut s = lock(&sim);
    for c in &cards {
        s.queue_card(c.clone().into_iter().collect());
    }
    Json(json!({"queued": cards.len()})).into_response()
}

/// A fault as the control API takes it: `{"status": 503}`, `{"error": "RequestLimitExceeded"}`,
/// `{"result": "-7"}`, `{"garbled": true}`, `{"stall_ms": 9000}`.
#[derive(Deserialize)]
struct FaultIn {
    status: Option<u16>,
    error: Option<String>,
    result: Option<String>,
    #[serde(default)]
    garbled: bool,
    stall_ms: Option<u64>,
}

async fn add_faults(State(sim): State<Shared>, Json(faults): Json<Vec<FaultIn>>) -> Response {
    let mut parsed = Vec::new();
    for f in faults {
        let fault = match f {
            FaultIn { status: Some(s), .. } => Fault::Status(s),
            FaultIn { error: Some(e), .. } => Fault::Error(e),
            FaultIn { result: Some(r), .. } => Fault::Result(r),
            FaultIn { garbled: true, .. } => Fault::Garbled,
            FaultIn { stall_ms: Some(ms), .. } => Fault::Stall(Duration::from_millis(ms)),
            _ => {
                return (
                    StatusCode::BAD_REQUEST,
                    Json(json!({"error": "each fault is one of status, error, result, garbled or stall_ms"})),
                )
                    .into_response();
            }
        };
        parsed.push(fault);
    }
    let n = parsed.len();
    let mut s = lock(&sim);
    for f in parsed {
        s.inject(f);
    }
    Json(json!({"queued": n})).into_response()
}

/// The vendors' endpoints and the control API.
pub fn router(sim: Simulator) -> Router {
    Router::new()
        .route("/_simulator/people", post(add_people))
        .route("/_simulator/cards", post(add_cards))
        .route("/_simulator/faults", post(add_faults))
        .fallback(post(vendor))
        .with_state(Arc::new(Mutex::new(sim)))
}

/// Run until SIGTERM/SIGINT.
pub async fn run(o: SimulateOptions) -> Result<(), KycServiceError> {
    let bad = |what: &str, e: &dyn std::fmt::Display| KycServiceError::Simulator(format!("{what}: {e}"));
    let read = |name: &str| -> Option<zeroize::Zeroizing<String>> {
        std::fs::read_to_string(o.credentials.join(name)).ok().map(|s| zeroize::Zeroizing::new(s.trim().to_string()))
    };
    let mut sim = Simulator::new();
    let mut vendors = Vec::new();
    if let (Some(id), Some(key)) = (read("tencent-secret-id"), read("tencent-secret-key")) {
        sim = sim.tencent(vbank_kyc::vendor::tencent::HOST, &id, &key);
        vendors.push("tencent");
    }
    if let Some(path) = &o.tencent_encryption_key {
        let pem = std::fs::read_to_string(path).map_err(|e| bad(&path.display().to_string(), &e))?;
        let key = Sm2PrivateKey::from_pkcs8_pem(&pem).map_err(|e| bad(&path.display().to_string(), &e))?;
        sim = sim.tencent_encryption(key);
    }
    if let (Some(id), Some(key)) = (read("alibaba-access-key-id"), read("alibaba-access-key-secret")) {
        sim = sim.alibaba(vbank_kyc::vendor::alibaba::HOST, &id, &key);
        vendors.push("alibaba");
    }
    if let Some(license) = read("nciic-license") {
        sim = sim.nciic(&license);
        vendors.push("nciic");
    }
    if let (Some(id), Some(key)) = (read("baidu-api-key"), read("baidu-secret-key")) {
        sim = sim.baidu(&id, &key);
        vendors.push("baidu");
    }
    if vendors.is_empty() {
        return Err(bad(&o.credentials.display().to_string(), &"no vendor's credentials are there"));
    }
    if let Some(path) = &o.people {
        let text = std::fs::read(path).map_err(|e| bad(&path.display().to_string(), &e))?;
        let people: Vec<Person> = serde_json::from_slice(&text).map_err(|e| bad(&path.display().to_string(), &e))?;
        for p in &people {
            let photo = match &p.photo {
                Some(f) => Some(std::fs::read(f).map_err(|e| bad(f, &e))?),
                None => None,
            };
            sim.add_person(&p.id_number, &p.name, photo);
        }
    }
    let certs = vbank_tls::load_certs(&o.cert).map_err(ServiceError::from)?;
    let key = vbank_tls::load_key(&o.key).map_err(ServiceError::from)?;
    let tls = rustls::ServerConfig::builder_with_provider(vbank_tls::provider())
        .with_safe_default_protocol_versions()
        .and_then(|b| b.with_no_client_auth().with_single_cert(certs, key))
        .map_err(|e| bad("certificate", &e))?;
    let ctx = vbank_service::Context::new("kyc-simulator", "dev", &[]);
    ctx.stop_on_signals();
    let listener = vbank_service::bind(o.listen, "--listen").await?;
    log::info!("vendor simulator for {} on {}", vendors.join(", "), o.listen);
    vbank_service::serve_tls(listener, ServerTls::standard(Arc::new(tls)), router(sim), ctx.shutdown()).await;
    Ok(())
}
