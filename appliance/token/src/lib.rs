//! Call tokens: `v1.<claims>.<signature>`, each part base64url without padding.
//!
//! The claims are JSON ([`Claims`]); the signature is ECDSA P-256 (raw `r ‖ s`) over SHA-256 of `v1.<claims>`, made
//! by keyd with the `call-token` key, which never leaves the HSM. The gateway verifies with the public key it fetched
//! from keyd ([`verify`]). Tokens are short-lived (at most an hour) and name one room and one role.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use serde::{Deserialize, Serialize};
use vbank_crypto::hash::sha256;
use vbank_crypto::p256sig::P256PublicKey;

/// Longest a token may live.
pub const MAX_TTL_S: u64 = 3600;

/// What a token grants.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Format version (1).
    pub v: u32,
    /// The room (call).
    pub room: String,
    /// The role in it.
    pub role: String,
    /// Issued at (Unix seconds).
    pub iat: u64,
    /// Expires at (Unix seconds).
    pub exp: u64,
    /// Unique id (hex), for audit and revocation.
    pub jti: String,
    /// The signing key's label.
    pub kid: String,
    /// The call is end-to-end encrypted: the gateway admits only pages that encrypt frames, whatever it remembers
    /// of the call (a restart forgets), since the signed token says so.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub e2ee: bool,
}

/// Why a token was refused. The message never repeats the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// Not `v1.<claims>.<sig>` or not decodable.
    #[error("malformed token")]
    Malformed,
    /// Signed by a key the verifier does not know.
    #[error("token signed by an unknown key")]
    UnknownKey,
    /// The signature does not verify (forged or altered).
    #[error("token signature invalid")]
    BadSignature,
    /// Expired, or issued for longer than allowed.
    #[error("token expired")]
    Expired,
    /// Valid, but for another room or role.
    #[error("token is for another room or role")]
    WrongScope,
}

/// The bytes that are signed: `v1.<base64url(claims)>`.
pub fn signing_input(claims: &Claims) -> String {
    format!("v1.{}", B64.encode(serde_json::to_vec(claims).expect("claims serialize")))
}

/// Assemble a token from its signing input and a raw P-256 signature.
pub fn assemble(signing_input: &str, signature: &[u8]) -> String {
    format!("{signing_input}.{}", B64.encode(signature))
}

/// The SHA-256 an HSM's CKM_ECDSA signs.
pub fn digest(signing_input: &str) -> [u8; 32] {
    sha256(signing_input.as_bytes())
}

/// Verify `token` at Unix time `now` against the known keys (label, public key) and return its claims.
pub fn verify(token: &str, keys: &[(String, P256PublicKey)], now: u64) -> Result<Claims, TokenError> {
    let mut parts = token.split('.');
    let (Some("v1"), Some(body), Some(sig), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err(TokenError::Malformed);
    };
    let claims: Claims = serde_json::from_slice(&B64.decode(body).map_err(|_| TokenError::Malformed)?)
        .map_err(|_| TokenError::Malformed)?;
    let sig = B64.decode(sig).map_err(|_| TokenError::Malformed)?;
    let (_, key) = keys.iter().find(|(label, _)| *label == claims.kid).ok_or(TokenError::UnknownKey)?;
    key.verify_prehash(&digest(&format!("v1.{body}")), &sig).map_err(|_| TokenError::BadSignature)?;
    if claims.v != 1 {
        return Err(TokenError::Malformed);
    }
    if now >= claims.exp || claims.exp.saturating_sub(claims.iat) > MAX_TTL_S {
        return Err(TokenError::Expired);
    }
    Ok(claims)
}

impl Claims {
    /// Refuse unless the token is for `room` and `role`.
    pub fn require(&self, room: &str, role: &str) -> Result<(), TokenError> {
        if self.room == room && self.role == role { Ok(()) } else { Err(TokenError::WrongScope) }
    }
}
