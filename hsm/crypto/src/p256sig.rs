//! ECDSA P-256: verifying signatures the HSM made (CKM_ECDSA over a SHA-256 digest, raw `r ‖ s`), and public keys
//! as PEM.

use p256::ecdsa::signature::hazmat::PrehashVerifier;
use p256::ecdsa::{Signature, VerifyingKey};
use p256::pkcs8::{DecodePublicKey, EncodePublicKey, LineEnding};

use crate::CryptoError;

/// A P-256 public key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct P256PublicKey(VerifyingKey);

impl P256PublicKey {
    /// From an uncompressed SEC1 point (as PKCS#11 CKA_EC_POINT holds it, after unwrapping the DER OCTET STRING).
    pub fn from_sec1(bytes: &[u8]) -> Result<P256PublicKey, CryptoError> {
        VerifyingKey::from_sec1_bytes(bytes).map(P256PublicKey).map_err(|e| CryptoError::Encoding(e.to_string()))
    }

    /// From SubjectPublicKeyInfo PEM.
    pub fn from_pem(pem: &str) -> Result<P256PublicKey, CryptoError> {
        VerifyingKey::from_public_key_pem(pem).map(P256PublicKey).map_err(|e| CryptoError::Encoding(e.to_string()))
    }

    /// SubjectPublicKeyInfo PEM.
    pub fn to_pem(&self) -> String {
        self.0.to_public_key_pem(LineEnding::LF).expect("a P-256 public key always encodes")
    }

    /// Verify a raw (`r ‖ s`) or DER signature over the SHA-256 digest `prehash`.
    pub fn verify_prehash(&self, prehash: &[u8; 32], sig: &[u8]) -> Result<(), CryptoError> {
        let sig = if sig.len() == 64 { Signature::from_slice(sig) } else { Signature::from_der(sig) }
            .map_err(|_| CryptoError::Signature)?;
        self.0.verify_prehash(prehash, &sig).map_err(|_| CryptoError::Signature)
    }
}
