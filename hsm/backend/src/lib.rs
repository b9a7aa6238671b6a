//! The HSM seam of vbank.
//!
//! [`KeyBackend`] is the one trait keyd talks to, shaped like rustls's `CryptoProvider`: a small set of operations,
//! each blocking (callers run them on a blocking thread), each failing closed. [`Pkcs11Backend`] implements it over
//! PKCS#11 with the `cryptoki` crate and a vendor [`Profile`]; a GM/T 0018 SDF backend can implement the same trait.
//!
//! Invariants every backend keeps:
//! - KEKs and HSM-held signing keys are created sensitive and never extractable; nothing reads them out.
//! - A data key leaves the HSM in plaintext only to the process that asked for it ([`KeyBackend::unwrap`]);
//!   [`KeyBackend::rewrap`] moves a wrapped key to another KEK without the plaintext ever leaving the HSM.
//! - While the device is unreachable every call returns [`HsmError::Unavailable`] at once; the next call after it
//!   returns opens a new session and logs in again.

mod envelope;
mod label;
mod pkcs11;
mod profile;

use std::path::PathBuf;

use vbank_crypto::SecretBytes;

pub use envelope::{BINDING_LEN, Envelope, binding};
pub use label::{KeyLabel, Purpose};
pub use pkcs11::{Pkcs11Backend, load_module};
pub use profile::{Profile, Sm2Signing};

/// A key algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum KeyAlg {
    /// AES-256 (KEKs).
    Aes256,
    /// SM4 (KEKs, where the profile has SM4).
    Sm4,
    /// ECDSA P-256 (signing, in the HSM).
    P256,
    /// SM2 (signing; in the HSM where the profile has it, else software under the signing KEK).
    Sm2,
}

impl KeyAlg {
    /// The console's name.
    pub fn name(self) -> &'static str {
        match self {
            KeyAlg::Aes256 => "aes256",
            KeyAlg::Sm4 => "sm4",
            KeyAlg::P256 => "p256",
            KeyAlg::Sm2 => "sm2",
        }
    }

    /// Parse [`KeyAlg::name`].
    pub fn from_name(s: &str) -> Option<KeyAlg> {
        [KeyAlg::Aes256, KeyAlg::Sm4, KeyAlg::P256, KeyAlg::Sm2].into_iter().find(|a| a.name() == s)
    }
}

/// What the HSM says about one key object.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct KeyInfo {
    /// Label.
    pub label: KeyLabel,
    /// PKCS#11 object class: `secret-key`, `private-key`, `public-key` or `data` (a wrapped software key).
    pub class: String,
    /// Algorithm.
    pub alg: Option<KeyAlg>,
    /// CKA_SENSITIVE.
    pub sensitive: bool,
    /// CKA_EXTRACTABLE.
    pub extractable: bool,
    /// CKA_NEVER_EXTRACTABLE.
    pub never_extractable: bool,
    /// Key check value (hex), where the HSM computes one.
    pub kcv: Option<String>,
}

/// The backend's identity and health.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BackendStatus {
    /// Module path.
    pub module: PathBuf,
    /// Library description and version.
    pub library: String,
    /// Token label.
    pub token: String,
    /// Token manufacturer and model.
    pub device: String,
    /// Profile name.
    pub profile: String,
    /// Generic operations the profile maps that the token actually offers.
    pub mechanisms: Vec<String>,
    /// Whether the user is logged in.
    pub logged_in: bool,
}

/// Why a key operation failed. No variant ever carries key material or a PIN.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HsmError {
    /// The module could not be loaded or initialized.
    #[error(
        "cannot load PKCS#11 module {module}: {detail} (hint: install the HSM vendor's client and set [hsm] module to its library)"
    )]
    Module {
        /// Path.
        module: String,
        /// Loader error.
        detail: String,
    },
    /// No token with that label.
    #[error(
        "no HSM token labelled {label:?} (tokens present: {seen:?}) (hint: set [hsm] token_label, or initialise the token)"
    )]
    TokenNotFound {
        /// Wanted.
        label: String,
        /// Present.
        seen: Vec<String>,
    },
    /// The user PIN was refused.
    #[error(
        "the HSM refused the user PIN (hint: fix the PIN credential named by [hsm] pin and restart keyd; it is not retried automatically because tokens lock after repeated failures)"
    )]
    PinIncorrect,
    /// The user PIN is locked.
    #[error("the HSM user PIN is locked (hint: a security officer must unlock it with the SO PIN)")]
    PinLocked,
    /// The device is unreachable right now; retry later.
    #[error("HSM unavailable: {0}")]
    Unavailable(String),
    /// No key with that label.
    #[error("no key {0} in the HSM")]
    NotFound(String),
    /// A key with that label exists already.
    #[error("key {0} already exists in the HSM")]
    Exists(String),
    /// The profile lacks what the operation needs, and no fallback is allowed.
    #[error("{op} is not available with HSM profile {profile:?} (hint: {hint})")]
    Unsupported {
        /// Operation.
        op: String,
        /// Profile.
        profile: String,
        /// What to do instead.
        hint: String,
    },
    /// A wrapped key failed the HSM's integrity check: altered, truncated, or wrapped under another KEK.
    #[error("the wrapped key was altered or belongs to another KEK")]
    Tampered,
    /// The caller's context does not match the one the key was bound to.
    #[error("the wrapped key is bound to a different context")]
    ContextMismatch,
    /// The wrapped-key envelope is malformed.
    #[error("malformed wrapped key: {0}")]
    Envelope(String),
    /// A vendor profile is malformed or unknown.
    #[error("HSM profile {profile}: {problem}")]
    Profile {
        /// Profile name or path.
        profile: String,
        /// What is wrong.
        problem: String,
    },
    /// The HSM refused the operation (attribute policy, mechanism error).
    #[error("the HSM refused {op}: {detail}")]
    Refused {
        /// Operation.
        op: String,
        /// PKCS#11 error.
        detail: String,
    },
}

/// The operations keyd needs from an HSM. Every method blocks; all are safe to call from several threads.
pub trait KeyBackend: Send + Sync + std::fmt::Debug {
    /// The vendor profile: mechanisms, behaviours, allowed software fallbacks.
    fn profile(&self) -> &Profile;
    /// A cheap liveness check: a logged-in session exists and the token answers.
    fn ping(&self) -> Result<(), HsmError>;
    /// Identity, mechanisms, login state; opens a session if needed.
    fn status(&self) -> Result<BackendStatus, HsmError>;
    /// Every vbank key object on the token.
    fn list(&self) -> Result<Vec<KeyInfo>, HsmError>;
    /// Create a KEK: token object, private, sensitive, never extractable, wrap/unwrap only.
    fn create_kek(&self, label: KeyLabel, alg: KeyAlg) -> Result<KeyInfo, HsmError>;
    /// Create a P-256 signing key pair; the private half is sensitive and never extractable.
    fn create_p256(&self, label: KeyLabel) -> Result<KeyInfo, HsmError>;
    /// `len` random bytes from the HSM's generator.
    fn random(&self, len: usize) -> Result<SecretBytes, HsmError>;
    /// Wrap `secret` under a KEK (CKM_AES_KEY_WRAP_PAD).
    fn wrap(&self, kek: KeyLabel, secret: &[u8]) -> Result<Vec<u8>, HsmError>;
    /// Unwrap to plaintext for the calling process.
    fn unwrap(&self, kek: KeyLabel, wrapped: &[u8]) -> Result<SecretBytes, HsmError>;
    /// Move a wrapped key from one KEK to another inside the HSM.
    fn rewrap(&self, from: KeyLabel, to: KeyLabel, wrapped: &[u8]) -> Result<Vec<u8>, HsmError>;
    /// ECDSA-sign a SHA-256 digest with an HSM P-256 key; raw `r ‖ s`.
    fn sign_p256(&self, key: KeyLabel, digest: &[u8; 32]) -> Result<Vec<u8>, HsmError>;
    /// The public point (uncompressed SEC1) of an HSM key pair.
    fn public_point(&self, key: KeyLabel) -> Result<Vec<u8>, HsmError>;
    /// Keep a small non-secret or already-wrapped value on the token (CKO_DATA), e.g. a wrapped software key.
    fn put_data(&self, label: KeyLabel, name: &str, value: &[u8]) -> Result<(), HsmError>;
    /// Read a value stored by [`KeyBackend::put_data`].
    fn get_data(&self, label: KeyLabel, name: &str) -> Result<Vec<u8>, HsmError>;
    /// Destroy every object carrying `label`; returns how many.
    fn destroy(&self, label: KeyLabel) -> Result<usize, HsmError>;
}
