//! Cipher suites and key derivation (RFC 9605 §4.4): from a base key, HKDF-Extract (empty salt) gives the secret;
//! HKDF-Expand with `"SFrame 1.0 Secret key " ‖ KID ‖ suite` and `"SFrame 1.0 Secret salt " ‖ KID ‖ suite` gives the
//! AEAD key and the nonce salt. The nonce is the salt XOR the counter.
//!
//! Besides the RFC's AES-GCM suites, [`Suite::Sm4GcmSm3`] is vbank's private-use suite `0xF001` for banks that must
//! use 国密: the same construction with HKDF-SM3 and SM4-GCM (RFC 8998's AEAD_SM4_GCM), 16-byte key, 12-byte nonce,
//! 16-byte tag.

use aes_gcm::aead::consts::U12;
use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes128Gcm, Aes256Gcm, AesGcm};
use hkdf::Hkdf;
use zeroize::Zeroizing;

use crate::SframeError;

type Sm4Gcm = AesGcm<sm4::Sm4, U12>;

/// A cipher suite.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Suite {
    /// `AES_128_GCM_SHA256_128` (0x0004).
    Aes128GcmSha256,
    /// `AES_256_GCM_SHA512_128` (0x0005): the default.
    Aes256GcmSha512,
    /// vbank's `SM4_128_GCM_SM3_128` (0xF001, private use).
    Sm4GcmSm3,
}

/// Nonce length for every suite here.
pub const NONCE_LEN: usize = 12;
/// Tag length for every suite here.
pub const TAG_LEN: usize = 16;

impl Suite {
    /// The registry value.
    pub fn id(self) -> u16 {
        match self {
            Suite::Aes128GcmSha256 => 0x0004,
            Suite::Aes256GcmSha512 => 0x0005,
            Suite::Sm4GcmSm3 => 0xF001,
        }
    }

    /// From the registry value.
    pub fn from_id(id: u16) -> Option<Suite> {
        [Suite::Aes128GcmSha256, Suite::Aes256GcmSha512, Suite::Sm4GcmSm3].into_iter().find(|s| s.id() == id)
    }

    /// The stable name used in configuration and key envelopes.
    pub fn name(self) -> &'static str {
        match self {
            Suite::Aes128GcmSha256 => "aes-128-gcm",
            Suite::Aes256GcmSha512 => "aes-256-gcm",
            Suite::Sm4GcmSm3 => "sm4-gcm",
        }
    }

    /// AEAD key length.
    pub fn key_len(self) -> usize {
        match self {
            Suite::Aes128GcmSha256 | Suite::Sm4GcmSm3 => 16,
            Suite::Aes256GcmSha512 => 32,
        }
    }

    fn label(self, what: &str, kid: u64) -> Vec<u8> {
        let mut l = format!("SFrame 1.0 Secret {what} ").into_bytes();
        l.extend_from_slice(&kid.to_be_bytes());
        l.extend_from_slice(&self.id().to_be_bytes());
        l
    }

    /// The AEAD key and nonce salt for `kid` under `base_key`.
    pub fn derive(self, base_key: &[u8], kid: u64) -> (Zeroizing<Vec<u8>>, [u8; NONCE_LEN]) {
        let mut key = Zeroizing::new(vec![0u8; self.key_len()]);
        let mut salt = [0u8; NONCE_LEN];
        let (kl, sl) = (self.label("key", kid), self.label("salt", kid));
        // Every length asked for is far below HKDF's limit of 255 hash lengths.
        let ok = match self {
            Suite::Aes128GcmSha256 => {
                let h = Hkdf::<sha2::Sha256>::new(None, base_key);
                h.expand(&kl, &mut key).and(h.expand(&sl, &mut salt))
            }
            Suite::Aes256GcmSha512 => {
                let h = Hkdf::<sha2::Sha512>::new(None, base_key);
                h.expand(&kl, &mut key).and(h.expand(&sl, &mut salt))
            }
            Suite::Sm4GcmSm3 => {
                let h = Hkdf::<sm3::Sm3>::new(None, base_key);
                h.expand(&kl, &mut key).and(h.expand(&sl, &mut salt))
            }
        };
        ok.expect("HKDF output lengths are fixed and small");
        (key, salt)
    }

    /// Seal `pt` with `aad` under `key` and `nonce`: ciphertext ‖ tag.
    pub fn seal(self, key: &[u8], nonce: &[u8; NONCE_LEN], aad: &[u8], pt: &[u8]) -> Result<Vec<u8>, SframeError> {
        let payload = Payload { msg: pt, aad };
        let n = nonce.into();
        let out = match self {
            Suite::Aes128GcmSha256 => Aes128Gcm::new_from_slice(key).map_err(|_| SframeError::Key)?.encrypt(n, payload),
            Suite::Aes256GcmSha512 => Aes256Gcm::new_from_slice(key).map_err(|_| SframeError::Key)?.encrypt(n, payload),
            Suite::Sm4GcmSm3 => Sm4Gcm::new_from_slice(key).map_err(|_| SframeError::Key)?.encrypt(n, payload),
        };
        out.map_err(|_| SframeError::Key)
    }

    /// Open `ct` (ciphertext ‖ tag) with `aad`; any alteration is [`SframeError::Auth`].
    pub fn open(self, key: &[u8], nonce: &[u8; NONCE_LEN], aad: &[u8], ct: &[u8]) -> Result<Vec<u8>, SframeError> {
        let payload = Payload { msg: ct, aad };
        let n = nonce.into();
        let out = match self {
            Suite::Aes128GcmSha256 => Aes128Gcm::new_from_slice(key).map_err(|_| SframeError::Key)?.decrypt(n, payload),
            Suite::Aes256GcmSha512 => Aes256Gcm::new_from_slice(key).map_err(|_| SframeError::Key)?.decrypt(n, payload),
            Suite::Sm4GcmSm3 => Sm4Gcm::new_from_slice(key).map_err(|_| SframeError::Key)?.decrypt(n, payload),
        };
        out.map_err(|_| SframeError::Auth)
    }
}

/// The nonce for counter `ctr`: the salt XOR the counter, big-endian, right-aligned.
pub fn nonce(salt: &[u8; NONCE_LEN], ctr: u64) -> [u8; NONCE_LEN] {
    let mut n = *salt;
    for (i, b) in ctr.to_be_bytes().iter().enumerate() {
        n[NONCE_LEN - 8 + i] ^= b;
    }
    n
}
