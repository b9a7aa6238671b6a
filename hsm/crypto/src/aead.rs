//! AEAD under data keys: AES-256-GCM (default) and SM4-GCM (RFC 8998's AEAD_SM4_GCM).
//!
//! Output is `ciphertext ‖ 16-byte tag`; the 12-byte nonce is the caller's to choose and must never repeat under one
//! key (the recorder uses a per-segment counter).

use aes_gcm::aead::consts::U12;
use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, AesGcm};

use crate::{CryptoError, SecretBytes};

type Sm4Gcm = AesGcm<sm4::Sm4, U12>;

/// An AEAD algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AeadAlg {
    /// AES-256-GCM: 32-byte key.
    Aes256Gcm,
    /// SM4-GCM: 16-byte key.
    Sm4Gcm,
}

impl AeadAlg {
    /// Key length in bytes.
    pub fn key_len(self) -> usize {
        match self {
            AeadAlg::Aes256Gcm => 32,
            AeadAlg::Sm4Gcm => 16,
        }
    }

    /// Stable name used in envelopes and configuration.
    pub fn name(self) -> &'static str {
        match self {
            AeadAlg::Aes256Gcm => "aes-256-gcm",
            AeadAlg::Sm4Gcm => "sm4-gcm",
        }
    }

    /// Parse [`AeadAlg::name`].
    pub fn from_name(s: &str) -> Option<AeadAlg> {
        [AeadAlg::Aes256Gcm, AeadAlg::Sm4Gcm].into_iter().find(|a| a.name() == s)
    }
}

/// Length of the authentication tag appended to every ciphertext.
pub const TAG_LEN: usize = 16;

/// Encrypt and authenticate `plaintext` with `aad`.
pub fn seal(alg: AeadAlg, key: &[u8], nonce: &[u8; 12], aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, CryptoError> {
    let msg = Payload { msg: plaintext, aad };
    let nonce = nonce.into();
    match alg {
        AeadAlg::Aes256Gcm => Aes256Gcm::new_from_slice(key)
            .map_err(|_| CryptoError::InvalidKey("AES-256-GCM needs a 32-byte key"))?
            .encrypt(nonce, msg),
        AeadAlg::Sm4Gcm => Sm4Gcm::new_from_slice(key)
            .map_err(|_| CryptoError::InvalidKey("SM4-GCM needs a 16-byte key"))?
            .encrypt(nonce, msg),
    }
    .map_err(|_| CryptoError::Decrypt)
}

/// Verify and decrypt; any mismatch of key, nonce, `aad` or bytes gives [`CryptoError::Decrypt`].
pub fn open(alg: AeadAlg, key: &[u8], nonce: &[u8; 12], aad: &[u8], sealed: &[u8]) -> Result<SecretBytes, CryptoError> {
    let msg = Payload { msg: sealed, aad };
    let nonce = nonce.into();
    match alg {
        AeadAlg::Aes256Gcm => Aes256Gcm::new_from_slice(key)
            .map_err(|_| CryptoError::InvalidKey("AES-256-GCM needs a 32-byte key"))?
            .decrypt(nonce, msg),
        AeadAlg::Sm4Gcm => Sm4Gcm::new_from_slice(key)
            .map_err(|_| CryptoError::InvalidKey("SM4-GCM needs a 16-byte key"))?
            .decrypt(nonce, msg),
    }
    .map(SecretBytes::new)
    .map_err(|_| CryptoError::Decrypt)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{from_hex, to_hex};

    #[test]
    fn rfc_8998_a1_sm4_gcm() {
        let key = from_hex("0123456789ABCDEFFEDCBA9876543210").unwrap();
        let iv: [u8; 12] = from_hex("00001234567800000000ABCD").unwrap().try_into().unwrap();
        let aad = from_hex("FEEDFACEDEADBEEFFEEDFACEDEADBEEFABADDAD2").unwrap();
        let pt = from_hex(
            "AAAAAAAAAAAAAAAABBBBBBBBBBBBBBBBCCCCCCCCCCCCCCCCDDDDDDDDDDDDDDDD
             EEEEEEEEEEEEEEEEFFFFFFFFFFFFFFFFEEEEEEEEEEEEEEEEAAAAAAAAAAAAAAAA",
        )
        .unwrap();
        let sealed = seal(AeadAlg::Sm4Gcm, &key, &iv, &aad, &pt).unwrap();
        let (ct, tag) = sealed.split_at(sealed.len() - TAG_LEN);
        assert_eq!(
            to_hex(ct),
            "17f399f08c67d5ee19d0dc9969c4bb7d5fd46fd3756489069157b282bb200735\
             d82710ca5c22f0ccfa7cbf93d496ac15a56834cbcf98c397b4024a2691233b8d"
        );
        assert_eq!(to_hex(tag), "83de3541e4c2b58177e065a9bf7b62ec");
        assert_eq!(open(AeadAlg::Sm4Gcm, &key, &iv, &aad, &sealed).unwrap().expose(), &pt[..]);
    }

    #[test]
    fn aes_256_gcm_nist_vector() {
        // NIST GCM test vector (gcmEncryptExtIV256, Count 0 of the 96-bit IV / 128-bit PT / 128-bit AAD set).
        let key = from_hex("92e11dcdaa866f5ce790fd24501f92509aacf4cb8b1339d50c9c1240935dd08b").unwrap();
        let iv: [u8; 12] = from_hex("ac93a1a6145299bde902f21a").unwrap().try_into().unwrap();
        let pt = from_hex("2d71bcfa914e4ac045b2aa60955fad24").unwrap();
        let aad = from_hex("1e0889016f67601c8ebea4943bc23ad6").unwrap();
        let sealed = seal(AeadAlg::Aes256Gcm, &key, &iv, &aad, &pt).unwrap();
        assert_eq!(to_hex(&sealed), "8995ae2e6df3dbf96fac7b7137bae67feca5aa77d51d4a0a14d9c51e1da474ab");
    }

    #[test]
    fn tampering_and_wrong_context_fail_closed() {
        for alg in [AeadAlg::Aes256Gcm, AeadAlg::Sm4Gcm] {
            let key = SecretBytes::random(alg.key_len()).unwrap();
            let nonce = [7u8; 12];
            let sealed = seal(alg, key.expose(), &nonce, b"rec-1/track-2/seg-3", b"media").unwrap();
            assert!(open(alg, key.expose(), &nonce, b"rec-1/track-2/seg-4", &sealed).is_err());
            let mut bad = sealed.clone();
            bad[0] ^= 1;
            assert_eq!(
                open(alg, key.expose(), &nonce, b"rec-1/track-2/seg-3", &bad).unwrap_err(),
                CryptoError::Decrypt
            );
            assert!(seal(alg, &[0u8; 5], &nonce, b"", b"").is_err());
        }
    }
}
