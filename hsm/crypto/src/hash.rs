//! SM3 (GB/T 32905) and HMAC-SM3; SHA-256 and HMAC-SHA256 for what others specify.

use hmac::{KeyInit, Mac};
use sm3::{Digest, Sm3};

/// Streaming SM3, for hash chains over large inputs.
pub use sm3::Sm3 as Sm3Hasher;

/// SM3 of `data`.
pub fn sm3(data: &[u8]) -> [u8; 32] {
    Sm3::digest(data).into()
}

/// HMAC-SM3 of `data` under `key` (used to tokenize personal data in logs and exports).
pub fn hmac_sm3(key: &[u8], data: &[u8]) -> [u8; 32] {
    let mut mac = <hmac::Hmac<Sm3> as KeyInit>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(data);
    mac.finalize().into_bytes().into()
}

/// HMAC-SHA256 of `data` under `key` (vendor API request signing).
pub fn hmac_sha256(key: &[u8], data: &[u8]) -> [u8; 32] {
    let mut mac = <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(data);
    mac.finalize().into_bytes().into()
}

/// SHA-256 of `data` (the digest an HSM's CKM_ECDSA signs).
pub fn sha256(data: &[u8]) -> [u8; 32] {
    sha2::Sha256::digest(data).into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{from_hex, to_hex};

    #[test]
    fn gbt_32905_vectors() {
        assert_eq!(to_hex(&sm3(b"abc")), "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0");
        let m = b"abcd".repeat(16);
        assert_eq!(to_hex(&sm3(&m)), "debe9ff92275b8a138604889c18e5a4d6fdb70e5387e5765293dcba39c0c5732");
    }

    #[test]
    fn hmac_sm3_matches_a_reference_computation() {
        // HMAC by its definition (RFC 2104) over SM3, computed independently of the hmac crate.
        let key = from_hex("000102030405060708090a0b0c0d0e0f").unwrap();
        let data = b"vbank";
        let mut k = [0u8; 64];
        k[..key.len()].copy_from_slice(&key);
        let inner: Vec<u8> = k.iter().map(|b| b ^ 0x36).chain(data.iter().copied()).collect();
        let ih = sm3(&inner);
        let outer: Vec<u8> = k.iter().map(|b| b ^ 0x5c).chain(ih.iter().copied()).collect();
        assert_eq!(hmac_sm3(&key, data), sm3(&outer));
    }
}
