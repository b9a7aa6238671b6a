//! 国密 TLS 1.3 for rustls, after RFC 8998: cipher suite TLS_SM4_GCM_SM3 (0x00C6), key exchange group curveSM2
//! (0x0029), signature scheme sm2sig_sm3 (0x0708) with the CertificateVerify user ID "TLSv1.3+GM+Cipher+Suite", and
//! HKDF over HMAC-SM3, all on RustCrypto's sm2/sm3/sm4. Plus SM2 certificates ([`cert`]).
//!
//! Browsers speak none of this; the bank's app SDKs, call-centre integrations and vbank's own internal links can.
//! A listener serving both kinds of client looks at the ClientHello ([`offers_sm`]) and picks a configuration.
//! Constant time where the underlying crates are: `sm4` uses table look-ups, so SM4 is not constant time.

pub mod cert;
mod kx;
mod sign;
mod suite;

use std::sync::Arc;

use rustls::crypto::{CryptoProvider, KeyProvider, SecureRandom};
use rustls::pki_types::PrivateKeyDer;
use rustls::sign::SigningKey;
use rustls::{CipherSuite, Error};
use vbank_crypto::SecretBytes;
use vbank_crypto::sm2sig::Sm2PrivateKey;

pub use kx::{CURVE_SM2, CURVE_SM2_ID};
pub use sign::{SM2_ALGORITHMS, SM2SIG_SM3, SM2SIG_SM3_ID, Sm2SigningKey, TLS13_SM2_ID};
pub use suite::{TLS_SM4_GCM_SM3, TLS_SM4_GCM_SM3_ID};

/// Why SM certificates or keys could not be made or loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GmTlsError {
    /// Building or encoding a certificate failed.
    #[error("SM2 certificate: {0}")]
    Certificate(String),
}

/// The RFC 8998 provider: only TLS_SM4_GCM_SM3, curveSM2 and SM2 signatures.
pub fn provider() -> CryptoProvider {
    CryptoProvider {
        cipher_suites: vec![TLS_SM4_GCM_SM3],
        kx_groups: vec![CURVE_SM2],
        signature_verification_algorithms: SM2_ALGORITHMS,
        secure_random: &OsRandom,
        key_provider: &Sm2Keys,
    }
}

/// Whether a ClientHello offers the SM suite (and so should get the SM configuration).
pub fn offers_sm(suites: &[CipherSuite]) -> bool {
    suites.contains(&CipherSuite::Unknown(TLS_SM4_GCM_SM3_ID))
}

#[derive(Debug)]
struct OsRandom;

impl SecureRandom for OsRandom {
    fn fill(&self, buf: &mut [u8]) -> Result<(), rustls::crypto::GetRandomFailed> {
        vbank_crypto::random(buf).map_err(|_| rustls::crypto::GetRandomFailed)
    }
}

/// Loads SM2 private keys (PKCS#8 or SEC1) into signing keys.
#[derive(Debug)]
struct Sm2Keys;

impl KeyProvider for Sm2Keys {
    fn load_private_key(&self, key_der: PrivateKeyDer<'static>) -> Result<Arc<dyn SigningKey>, Error> {
        use sm2::pkcs8::DecodePrivateKey;
        let bad = |e: &dyn std::fmt::Display| Error::General(format!("not an SM2 private key: {e}"));
        let secret = match &key_der {
            PrivateKeyDer::Pkcs8(p) => sm2::SecretKey::from_pkcs8_der(p.secret_pkcs8_der()).map_err(|e| bad(&e))?,
            PrivateKeyDer::Sec1(s) => sm2::SecretKey::from_sec1_der(s.secret_sec1_der()).map_err(|e| bad(&e))?,
            _ => return Err(Error::General("an SM2 key must be PKCS#8 or SEC1".into())),
        };
        let key = Sm2PrivateKey::from_scalar(SecretBytes::new(secret.to_bytes().to_vec()))
            .map_err(|e| Error::General(e.to_string()))?;
        Ok(Arc::new(Sm2SigningKey(Arc::new(key))))
    }
}

#[cfg(test)]
mod tests;
