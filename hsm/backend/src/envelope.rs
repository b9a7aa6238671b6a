//! The wrapped form of a data key, and how a caller's context is bound to it.
//!
//! ```text
//! offset size  field
//! 0      4     magic "VBKW"
//! 4      1     format version (1)
//! 5      1     KEK purpose code
//! 6      4     KEK version, big-endian
//! 10     1     data-key algorithm (1 = AES-256-GCM, 2 = SM4-GCM)
//! 11     2     length of the wrapped blob, big-endian
//! 13     n     CKM_AES_KEY_WRAP_PAD(KEK, data key ‖ SM3(binding))
//! ```
//!
//! AES key wrap has no associated data, so the binding travels *inside* the wrapped bytes: 32 bytes of
//! `SM3("vbank-dek-v1" ‖ header ‖ context)` after the key. On open, keyd recomputes it from the envelope's header and
//! the caller's context and refuses a mismatch. A changed header, a changed context, or a changed wrapped byte is
//! caught (the last by the wrap's own integrity check). Rewrapping moves the whole blob, binding included, inside the
//! HSM.

use vbank_crypto::aead::AeadAlg;
use vbank_crypto::hash::sm3;

use crate::{HsmError, KeyLabel, Purpose};

const MAGIC: &[u8; 4] = b"VBKW";
const FORMAT: u8 = 1;
const HEADER_LEN: usize = 13;
/// Bytes of binding hash appended to the data key before wrapping.
pub const BINDING_LEN: usize = 32;

/// A parsed envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// The KEK that wrapped it.
    pub kek: KeyLabel,
    /// The data key's algorithm.
    pub alg: AeadAlg,
    /// The wrapped bytes.
    pub wrapped: Vec<u8>,
}

fn alg_code(a: AeadAlg) -> u8 {
    match a {
        AeadAlg::Aes256Gcm => 1,
        AeadAlg::Sm4Gcm => 2,
    }
}

fn header(kek: KeyLabel, alg: AeadAlg, wrapped_len: usize) -> Result<[u8; HEADER_LEN], HsmError> {
    let len = u16::try_from(wrapped_len).map_err(|_| HsmError::Envelope("wrapped key too long".into()))?;
    let mut h = [0u8; HEADER_LEN];
    h[..4].copy_from_slice(MAGIC);
    h[4] = FORMAT;
    h[5] = kek.purpose.code();
    h[6..10].copy_from_slice(&kek.version.to_be_bytes());
    h[10] = alg_code(alg);
    h[11..13].copy_from_slice(&len.to_be_bytes());
    Ok(h)
}

/// The binding hash for a data key of `alg` under `purpose` and `context`. The KEK version is deliberately not in it,
/// so that a rewrap to a new version keeps the binding valid.
pub fn binding(purpose: Purpose, alg: AeadAlg, context: &[u8]) -> [u8; BINDING_LEN] {
    let mut m = b"vbank-dek-v1\0".to_vec();
    m.push(purpose.code());
    m.push(alg_code(alg));
    m.extend_from_slice(&(context.len() as u64).to_be_bytes());
    m.extend_from_slice(context);
    sm3(&m)
}

impl Envelope {
    /// Serialize.
    pub fn encode(&self) -> Result<Vec<u8>, HsmError> {
        let mut out = header(self.kek, self.alg, self.wrapped.len())?.to_vec();
        out.extend_from_slice(&self.wrapped);
        Ok(out)
    }

    /// Parse, refusing anything malformed with a reason.
    pub fn decode(bytes: &[u8]) -> Result<Envelope, HsmError> {
        let bad = |why: &str| HsmError::Envelope(why.to_string());
        if bytes.len() < HEADER_LEN {
            return Err(bad("truncated: shorter than the header"));
        }
        if &bytes[..4] != MAGIC {
            return Err(bad("not a vbank wrapped key"));
        }
        if bytes[4] != FORMAT {
            return Err(bad("unknown envelope format version"));
        }
        let purpose = Purpose::from_code(bytes[5]).filter(|p| p.is_kek()).ok_or_else(|| bad("unknown KEK purpose"))?;
        let version = u32::from_be_bytes(bytes[6..10].try_into().expect("4 bytes"));
        let alg = match bytes[10] {
            1 => AeadAlg::Aes256Gcm,
            2 => AeadAlg::Sm4Gcm,
            _ => return Err(bad("unknown data-key algorithm")),
        };
        let len = u16::from_be_bytes(bytes[11..13].try_into().expect("2 bytes")) as usize;
        if bytes.len() != HEADER_LEN + len {
            return Err(bad("truncated or padded: length does not match the header"));
        }
        if version == 0 {
            return Err(bad("KEK version 0"));
        }
        Ok(Envelope { kek: KeyLabel::new(purpose, version), alg, wrapped: bytes[HEADER_LEN..].to_vec() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_refusals() {
        let e = Envelope { kek: KeyLabel::new(Purpose::Recording, 3), alg: AeadAlg::Sm4Gcm, wrapped: vec![9; 56] };
        let bytes = e.encode().unwrap();
        assert_eq!(Envelope::decode(&bytes).unwrap(), e);
        assert!(Envelope::decode(&bytes[..bytes.len() - 1]).unwrap_err().to_string().contains("truncated"));
        let mut b = bytes.clone();
        b[0] = b'X';
        assert!(Envelope::decode(&b).is_err());
        let mut b = bytes.clone();
        b[5] = Purpose::AuditSeal.code();
        assert!(Envelope::decode(&b).unwrap_err().to_string().contains("purpose"));
        let mut b = bytes;
        b[10] = 9;
        assert!(Envelope::decode(&b).is_err());
    }

    #[test]
    fn binding_depends_on_everything_but_the_version() {
        let a = binding(Purpose::Recording, AeadAlg::Aes256Gcm, b"rec-1");
        assert_ne!(a, binding(Purpose::Recording, AeadAlg::Aes256Gcm, b"rec-2"));
        assert_ne!(a, binding(Purpose::Media, AeadAlg::Aes256Gcm, b"rec-1"));
        assert_ne!(a, binding(Purpose::Recording, AeadAlg::Sm4Gcm, b"rec-1"));
        assert_eq!(a, binding(Purpose::Recording, AeadAlg::Aes256Gcm, b"rec-1"));
    }
}
