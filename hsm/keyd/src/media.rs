//! End-to-end media keys: for each epoch of a call (a new one on every join and leave) keyd makes the call's media
//! key as a data key under the media KEK (the recorder opens it with `/v1/dek/open`, audited, like a recording's), and
//! encrypts it to each participant page's P-256 key (`vbank-media-key-v1`). The gateway asks and relays, and holds
//! only what it cannot open: the envelope and the per-page ciphertexts.

use axum::extract::State;
use axum::response::IntoResponse;
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::json;
use vbank_config::Service;
use vbank_crypto::aead::AeadAlg;
use vbank_crypto::{from_hex, key_transport, to_hex};
use vbank_hsm::Purpose;
use vbank_tls::Peer;

use crate::KeydError;
use crate::api::{ApiResult, ApiState, caller};

/// Pages one request may name.
const MAX_RECIPIENTS: usize = 64;

#[derive(Deserialize)]
pub(crate) struct MediaKeysIn {
    call: String,
    epoch: u64,
    #[serde(default = "aes")]
    alg: String,
    recipients: Vec<Recipient>,
}

fn aes() -> String {
    AeadAlg::Aes256Gcm.name().to_string()
}

#[derive(Deserialize)]
struct Recipient {
    /// Who (the participant id in the call), echoed back.
    id: String,
    /// The page's P-256 public key, SEC1 uncompressed, hex.
    public_key: String,
}

/// `POST /v1/media-keys` (the gateway only): a new media key for `call`'s `epoch`, encrypted to each recipient.
pub(crate) async fn media_keys(
    State(s): State<ApiState>,
    Extension(peer): Extension<Peer>,
    Json(r): Json<MediaKeysIn>,
) -> ApiResult {
    let svc = caller(&peer)?;
    if svc != Service::Gateway {
        return Err(KeydError::Forbidden(format!("{} may not hand out media keys", svc.name())));
    }
    if r.call.is_empty()
        || r.call.len() > 64
        || !r.call.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(KeydError::BadRequest("call: 1-64 letters, digits, - or _".into()));
    }
    if r.recipients.is_empty() || r.recipients.len() > MAX_RECIPIENTS {
        return Err(KeydError::BadRequest(format!("recipients: 1 to {MAX_RECIPIENTS} pages")));
    }
    let alg = AeadAlg::from_name(&r.alg)
        .ok_or_else(|| KeydError::BadRequest(format!("alg {:?}: aes-256-gcm or sm4-gcm", r.alg)))?;
    let mut keys = Vec::with_capacity(r.recipients.len());
    for p in &r.recipients {
        let k = from_hex(&p.public_key).ok().filter(|k| k.len() == 65 && k[0] == 4).ok_or_else(|| {
            KeydError::BadRequest(format!("recipient {:?}: public_key is a P-256 point, uncompressed, in hex", p.id))
        })?;
        keys.push(k);
    }
    let context = format!("media:{}:{}", r.call, r.epoch);
    let issued = s.keys.create_dek(Purpose::Media, alg, context.as_bytes(), svc.name()).await?;
    let mut wrapped = Vec::with_capacity(keys.len());
    for (p, k) in r.recipients.iter().zip(&keys) {
        let blob = key_transport::wrap_to(k, issued.key.expose(), context.as_bytes())
            .map_err(|e| KeydError::BadRequest(format!("recipient {:?}: {e}", p.id)))?;
        wrapped.push(json!({"id": p.id, "key": to_hex(&blob)}));
    }
    let detail = format!("epoch={} recipients={} alg={}", r.epoch, wrapped.len(), alg.name());
    s.keys.audit.append(&s.keys, svc.name(), "media.key", &context, "ok", &detail).await?;
    Ok(Json(json!({
        "id": issued.id, "envelope": to_hex(&issued.envelope), "alg": alg.name(), "context": context,
        "wrapped": wrapped,
    }))
    .into_response())
}
