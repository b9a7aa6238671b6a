//! `vbank kyc simulate`: the vendor's side over HTTPS, for tests, development nodes and DR drills. It serves the
//! sans-IO [`vbank_kyc::simulator::Simulator`] at `POST /` exactly as the vendor's endpoint answers (signature,
//! QPS, results, errors), with the certificate the caller's `[kyc.tencent] ca` trusts. A control API on the same
//! listener, under `/_simulator/`, adds people to the simulated authority's records and queues faults; it exists
//! only here, never in the product's adapters.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use vbank_kyc::simulator::{Fault, Simulator};
use vbank_service::ServiceError;
use vbank_tls::ServerTls;

use crate::KycServiceError;

/// How to run the simulator.
#[derive(Debug, Clone)]
pub struct SimulateOptions {
    /// Where to listen.
    pub listen: SocketAddr,
    /// The host it answers as (signed into each request).
    pub host: String,
    /// Its certificate chain and key (PEM).
    pub cert: PathBuf,
    /// Its key.
    pub key: PathBuf,
    /// The SecretId callers use.
    pub secret_id: String,
    /// A file holding the SecretKey.
    pub secret_key_file: PathBuf,
    /// A JSON file of people: `[{"name": …, "id_number": …}]`.
    pub people: Option<PathBuf>,
}

type Shared = Arc<Mutex<Simulator>>;

fn lock(s: &Shared) -> std::sync::MutexGuard<'_, Simulator> {
    s.lock().unwrap_or_else(|p| p.into_inner())
}

async fn vendor(State(sim): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let headers: Vec<(String, String)> = headers
        .iter()
        .map(|(k, v)| (k.as_str().to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
        .collect();
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let reply = lock(&sim).handle(&headers, &body, now);
    if let Some(d) = reply.stall {
        tokio::time::sleep(d).await;
    }
    let status = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, [(axum::http::header::CONTENT_TYPE, "application/json")], reply.body).into_response()
}

#[derive(Deserialize)]
struct Person {
    name: String,
    id_number: String,
}

async fn add_people(State(sim): State<Shared>, Json(people): Json<Vec<Person>>) -> Response {
    let mut s = lock(&sim);
    for p in &people {
        s.add_person(&p.id_number, &p.name);
    }
    Json(json!({"added": people.len()})).into_response()
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

/// The vendor's endpoint and the control API.
pub fn router(sim: Simulator) -> Router {
    Router::new()
        .route("/", post(vendor))
        .route("/_simulator/people", post(add_people))
        .route("/_simulator/faults", post(add_faults))
        .with_state(Arc::new(Mutex::new(sim)))
}

/// Run until SIGTERM/SIGINT.
pub async fn run(o: SimulateOptions) -> Result<(), KycServiceError> {
    let bad = |what: &str, e: &dyn std::fmt::Display| KycServiceError::Simulator(format!("{what}: {e}"));
    let key =
        std::fs::read_to_string(&o.secret_key_file).map_err(|e| bad(&o.secret_key_file.display().to_string(), &e))?;
    let mut sim = Simulator::new(&o.host, &o.secret_id, key.trim());
    drop(zeroize::Zeroizing::new(key));
    if let Some(path) = &o.people {
        let text = std::fs::read(path).map_err(|e| bad(&path.display().to_string(), &e))?;
        let people: Vec<Person> = serde_json::from_slice(&text).map_err(|e| bad(&path.display().to_string(), &e))?;
        for p in &people {
            sim.add_person(&p.id_number, &p.name);
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
    log::info!("vendor simulator for {} on {}", o.host, o.listen);
    vbank_service::serve_tls(listener, ServerTls::standard(Arc::new(tls)), router(sim), ctx.shutdown()).await;
    Ok(())
}
