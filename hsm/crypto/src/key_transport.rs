//! Key transport to a browser page (`vbank-media-key-v1`): a call's media key, encrypted to the P-256 public key a
//! page's worker generated (its private half never leaves the worker, non-extractable). ECDH-ES with a one-time
//! sender key, HKDF-SHA256 (salt: both public keys; info: the label and the context), AES-256-GCM with the context as
//! associated data. WebCrypto does every step on the page's side; the gateway that relays the result learns nothing.
//!
//! Wire form: the sender's uncompressed public key (65 bytes) ‖ ciphertext ‖ tag. The nonce is zero: each derived
//! key encrypts exactly one message.

use aes_gcm::Aes256Gcm;
use aes_gcm::aead::{Aead, KeyInit, Payload};
use hkdf::Hkdf;
use p256::elliptic_curve::sec1::ToSec1Point;
use p256::{PublicKey, SecretKey};
use zeroize::Zeroizing;

use crate::{CryptoError, SecretBytes};

const LABEL: &[u8] = b"vbank media key v1";
const POINT: usize = 65;

fn kek(shared: &[u8], sender: &[u8], recipient: &[u8], context: &[u8]) -> Zeroizing<[u8; 32]> {
    let salt = [sender, recipient].concat();
    let info = [LABEL, context].concat();
    let mut k = Zeroizing::new([0u8; 32]);
    Hkdf::<sha2::Sha256>::new(Some(&salt), shared).expand(&info, k.as_mut()).expect("32 bytes is a valid HKDF length");
    k
}

fn public(sec1: &[u8]) -> Result<PublicKey, CryptoError> {
    PublicKey::from_sec1_bytes(sec1).map_err(|_| CryptoError::InvalidKey("P-256 public key (SEC1 uncompressed)"))
}

/// Encrypt `key` to the page whose P-256 public key is `recipient` (SEC1, 65 bytes), bound to `context`.
pub fn wrap_to(recipient: &[u8], key: &[u8], context: &[u8]) -> Result<Vec<u8>, CryptoError> {
    let to = public(recipient)?;
    let eph = loop {
        // A uniformly random 256-bit value is a valid scalar except with negligible probability: draw again.
        if let Ok(k) = SecretKey::from_slice(SecretBytes::random(32)?.expose()) {
            break k;
        }
    };
    let shared = p256::ecdh::diffie_hellman(eph.to_nonzero_scalar(), to.as_affine());
    let sender = eph.public_key().to_sec1_point(false);
    let recipient = to.to_sec1_point(false);
    let k = kek(shared.raw_secret_bytes(), sender.as_bytes(), recipient.as_bytes(), context);
    let ct = Aes256Gcm::new_from_slice(k.as_ref())
        .map_err(|_| CryptoError::InvalidKey("AES-256"))?
        .encrypt(&[0u8; 12].into(), Payload { msg: key, aad: context })
        .map_err(|_| CryptoError::Encoding("AES-GCM failed".into()))?;
    Ok([sender.as_bytes(), &ct].concat())
}

/// The page's side (used by tests; pages do it with WebCrypto): open a `wrap_to` result with the private key.
pub fn unwrap_with(secret: &SecretKey, blob: &[u8], context: &[u8]) -> Result<SecretBytes, CryptoError> {
    if blob.len() < POINT + 16 {
        return Err(CryptoError::Decrypt);
    }
    let (sender, ct) = blob.split_at(POINT);
    let from = public(sender)?;
    let shared = p256::ecdh::diffie_hellman(secret.to_nonzero_scalar(), from.as_affine());
    let recipient = secret.public_key().to_sec1_point(false);
    let k = kek(shared.raw_secret_bytes(), sender, recipient.as_bytes(), context);
    Aes256Gcm::new_from_slice(k.as_ref())
        .map_err(|_| CryptoError::InvalidKey("AES-256"))?
        .decrypt(&[0u8; 12].into(), Payload { msg: ct, aad: context })
        .map(SecretBytes::new)
        .map_err(|_| CryptoError::Decrypt)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page() -> (SecretKey, Vec<u8>) {
        let k = SecretKey::from_slice(&[0x11; 32]).unwrap();
        let p = k.public_key().to_sec1_point(false).as_bytes().to_vec();
        (k, p)
    }

    #[test]
    fn only_the_page_with_the_private_key_and_the_right_context_opens_it() {
        let (k, p) = page();
        let blob = wrap_to(&p, &[7u8; 32], b"media:call-1:2").unwrap();
        assert_eq!(blob.len(), 65 + 32 + 16);
        assert_eq!(unwrap_with(&k, &blob, b"media:call-1:2").unwrap().expose(), &[7u8; 32]);
        assert_eq!(unwrap_with(&k, &blob, b"media:call-1:3").unwrap_err(), CryptoError::Decrypt, "another epoch");
        let other = SecretKey::from_slice(&[0x22; 32]).unwrap();
        assert_eq!(unwrap_with(&other, &blob, b"media:call-1:2").unwrap_err(), CryptoError::Decrypt);
        let mut bad = blob.clone();
        bad[70] ^= 1;
        assert_eq!(unwrap_with(&k, &bad, b"media:call-1:2").unwrap_err(), CryptoError::Decrypt);
        assert_ne!(
            wrap_to(&p, &[7u8; 32], b"c").unwrap(),
            wrap_to(&p, &[7u8; 32], b"c").unwrap(),
            "one-time sender keys"
        );
        assert!(matches!(wrap_to(&[4u8; 65], &[7u8; 32], b"c"), Err(CryptoError::InvalidKey(_))), "not a point");
    }
}
