//! Software cryptography for vbank.
//!
//! What the HSM does not do itself runs here, on RustCrypto: bulk AEAD under data keys the HSM generated and wrapped
//! ([`aead`]: AES-256-GCM, SM4-GCM), hashing and keyed hashing ([`hash`]: SM3, HMAC-SM3), SM2 signatures with the
//! GB/T 32918 user ID ([`sm2sig`]), SM2 encryption ([`sm2enc`]), ECDSA P-256 verification for signatures the HSM made ([`p256sig`]). Key material
//! lives in [`SecretBytes`]: locked in RAM (no swap) and zeroized when dropped.
//!
//! A pure-Rust implementation is not a certified cryptographic module: key generation, KEK use and signing stay in
//! the HSM wherever the vendor profile allows.

pub mod aead;
pub mod hash;
pub mod key_transport;
pub mod p256sig;
mod secret;
pub mod sm2enc;
pub mod sm2sig;

pub use secret::SecretBytes;

/// Why a cryptographic operation failed. Deliberately coarse: callers must not learn *why* a decryption failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CryptoError {
    /// Authentication failed: wrong key, wrong associated data, or tampered ciphertext.
    #[error("decryption failed: wrong key or context, or the data was altered")]
    Decrypt,
    /// A key of the wrong length or form.
    #[error("invalid key: {0}")]
    InvalidKey(&'static str),
    /// A signature did not verify or could not be parsed.
    #[error("signature invalid")]
    Signature,
    /// An encoding (PEM, DER, SEC1) could not be read or written.
    #[error("encoding: {0}")]
    Encoding(String),
    /// The operating system's random generator failed.
    #[error("random generator unavailable: {0}")]
    Random(String),
}

/// Fill `buf` from the operating system's CSPRNG. Never falls back to anything weaker.
pub fn random(buf: &mut [u8]) -> Result<(), CryptoError> {
    getrandom::fill(buf).map_err(|e| CryptoError::Random(e.to_string()))
}

/// Parse hex (test vectors, key check values). Whitespace is ignored.
pub fn from_hex(s: &str) -> Result<Vec<u8>, CryptoError> {
    let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    if !s.len().is_multiple_of(2) {
        return Err(CryptoError::Encoding("odd number of hex digits".into()));
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).map_err(|_| CryptoError::Encoding("not hex".into())))
        .collect()
}

/// Lowercase hex.
pub fn to_hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
