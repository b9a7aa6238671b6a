//! SM2 signatures (GB/T 32918.2) with an explicit user ID, and SM2 public keys as PEM that stock OpenSSL 3 reads.
//!
//! The user ID matters: GB/T 32918 signs `SM3(Z ‖ M)` where `Z` hashes the ID and the public key. Evidence seals use
//! [`DEFAULT_ID`]; TLS 1.3 CertificateVerify uses `"TLSv1.3+GM+Cipher+Suite"` (RFC 8998). OpenSSL verifies with
//! `openssl pkeyutl -verify -rawin -digest sm3 -pkeyopt distid:<ID> -pubin -inkey pub.pem -sigfile sig.der -in msg`.

use sm2::dsa::signature::{Signer, Verifier};
use sm2::dsa::{Signature, SigningKey, VerifyingKey};
use sm2::elliptic_curve::sec1::ToSec1Point;
use sm2::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey, LineEnding};
use sm2::{PublicKey, SecretKey};
use sm3::{Digest, Sm3};

use crate::{CryptoError, SecretBytes};

/// The default user ID of GM/T 0009 ("1234567812345678").
pub const DEFAULT_ID: &str = "1234567812345678";

/// An SM2 private key held in locked, zeroizing memory.
pub struct Sm2PrivateKey {
    scalar: SecretBytes,
}

impl std::fmt::Debug for Sm2PrivateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sm2PrivateKey(redacted)")
    }
}

/// An SM2 public key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sm2PublicKey(PublicKey);

impl Sm2PrivateKey {
    /// A new key from the OS random generator.
    pub fn generate() -> Result<Sm2PrivateKey, CryptoError> {
        loop {
            let candidate = SecretBytes::random(32)?;
            // A random 256-bit value is a valid scalar except with negligible probability (0 or ≥ n): draw again.
            if SecretKey::from_slice(candidate.expose()).is_ok() {
                return Ok(Sm2PrivateKey { scalar: candidate });
            }
        }
    }

    /// The key from its 32-byte big-endian scalar.
    pub fn from_scalar(bytes: SecretBytes) -> Result<Sm2PrivateKey, CryptoError> {
        SecretKey::from_slice(bytes.expose()).map_err(|_| CryptoError::InvalidKey("not an SM2 private scalar"))?;
        Ok(Sm2PrivateKey { scalar: bytes })
    }

    /// From PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`, as `openssl genpkey -algorithm SM2` writes).
    pub fn from_pkcs8_pem(pem: &str) -> Result<Sm2PrivateKey, CryptoError> {
        let sk = SecretKey::from_pkcs8_pem(pem).map_err(|e| CryptoError::Encoding(e.to_string()))?;
        Ok(Sm2PrivateKey { scalar: SecretBytes::new(sk.to_bytes().to_vec()) })
    }

    /// PKCS#8 PEM; the returned string holds the key, so write it to a 0600 file and drop it.
    pub fn to_pkcs8_pem(&self) -> Result<SecretBytes, CryptoError> {
        let pem = self.secret().to_pkcs8_pem(LineEnding::LF).map_err(|e| CryptoError::Encoding(e.to_string()))?;
        Ok(SecretBytes::new(pem.as_bytes().to_vec()))
    }

    /// The 32-byte scalar, for wrapping under a KEK. Keep it in `SecretBytes`.
    pub fn scalar(&self) -> &SecretBytes {
        &self.scalar
    }

    fn secret(&self) -> SecretKey {
        SecretKey::from_slice(self.scalar.expose()).expect("validated when constructed")
    }

    /// The public key.
    pub fn public_key(&self) -> Sm2PublicKey {
        Sm2PublicKey(self.secret().public_key())
    }

    /// Sign `msg` for user `id`; the signature is DER (what OpenSSL and X.509 use).
    pub fn sign_der(&self, id: &str, msg: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let sk = SigningKey::new(id, &self.secret()).map_err(|_| CryptoError::InvalidKey("user ID too long"))?;
        let sig: Signature = sk.try_sign(msg).map_err(|_| CryptoError::Signature)?;
        Ok(sig.to_der().to_vec())
    }
}

impl Sm2PublicKey {
    /// From SubjectPublicKeyInfo PEM.
    pub fn from_pem(pem: &str) -> Result<Sm2PublicKey, CryptoError> {
        PublicKey::from_public_key_pem(pem).map(Sm2PublicKey).map_err(|e| CryptoError::Encoding(e.to_string()))
    }

    /// From an uncompressed SEC1 point (`04 ‖ x ‖ y`).
    pub fn from_sec1(bytes: &[u8]) -> Result<Sm2PublicKey, CryptoError> {
        PublicKey::from_sec1_bytes(bytes).map(Sm2PublicKey).map_err(|e| CryptoError::Encoding(e.to_string()))
    }

    pub(crate) fn inner(&self) -> PublicKey {
        self.0
    }

    /// SubjectPublicKeyInfo PEM (`-----BEGIN PUBLIC KEY-----`), readable by `openssl pkey -pubin`.
    pub fn to_pem(&self) -> String {
        self.0.to_public_key_pem(LineEnding::LF).expect("an SM2 public key always encodes")
    }

    /// Uncompressed SEC1 point.
    pub fn to_sec1(&self) -> Vec<u8> {
        self.0.to_sec1_point(false).as_bytes().to_vec()
    }

    /// Verify a DER or raw (`r ‖ s`, 64 bytes) signature of `msg` by user `id`.
    pub fn verify(&self, id: &str, msg: &[u8], sig: &[u8]) -> Result<(), CryptoError> {
        let vk = VerifyingKey::new(id, self.0).map_err(|_| CryptoError::InvalidKey("user ID too long"))?;
        let sig = if sig.len() == 64 { Signature::from_slice(sig) } else { Signature::from_der(sig) }
            .map_err(|_| CryptoError::Signature)?;
        vk.verify(msg, &sig).map_err(|_| CryptoError::Signature)
    }

    /// `Z` of GB/T 32918.2 §5.5 for user `id`: what an HSM's raw-sign mechanism needs prepended (e = SM3(Z ‖ M)).
    pub fn z(&self, id: &str) -> Result<[u8; 32], CryptoError> {
        let bits = u16::try_from(id.len() * 8).map_err(|_| CryptoError::InvalidKey("user ID too long"))?;
        let point = self.to_sec1();
        let mut h = Sm3::new();
        h.update(bits.to_be_bytes());
        h.update(id.as_bytes());
        h.update(CURVE_A);
        h.update(CURVE_B);
        h.update(GX);
        h.update(GY);
        h.update(&point[1..]);
        Ok(h.finalize().into())
    }
}

// The SM2 curve's parameters (GB/T 32918.5).
const CURVE_A: [u8; 32] = hex32("FFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF00000000FFFFFFFFFFFFFFFC");
const CURVE_B: [u8; 32] = hex32("28E9FA9E9D9F5E344D5A9E4BCF6509A7F39789F515AB8F92DDBCBD414D940E93");
const GX: [u8; 32] = hex32("32C4AE2C1F1981195F9904466A39C9948FE30BBFF2660BE1715A4589334C74C7");
const GY: [u8; 32] = hex32("BC3736A2F4F6779C59BDCEE36B692153D0A9877CC62A474002DF32E52139F0A0");

const fn hex32(s: &str) -> [u8; 32] {
    let b = s.as_bytes();
    let mut out = [0u8; 32];
    let mut i = 0;
    while i < 32 {
        out[i] = nibble(b[2 * i]) << 4 | nibble(b[2 * i + 1]);
        i += 1;
    }
    out
}

const fn nibble(c: u8) -> u8 {
    match c {
        b'0'..=b'9' => c - b'0',
        b'A'..=b'F' => c - b'A' + 10,
        _ => panic!("hex32 takes uppercase hex"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_verify_and_user_id_binds() {
        let k = Sm2PrivateKey::generate().unwrap();
        let pk = k.public_key();
        let sig = k.sign_der(DEFAULT_ID, b"manifest").unwrap();
        pk.verify(DEFAULT_ID, b"manifest", &sig).unwrap();
        assert_eq!(pk.verify("ALICE123@YAHOO.COM", b"manifest", &sig), Err(CryptoError::Signature));
        assert_eq!(pk.verify(DEFAULT_ID, b"manifesT", &sig), Err(CryptoError::Signature));
        assert_eq!(Sm2PublicKey::from_pem(&pk.to_pem()).unwrap(), pk);
        assert_eq!(Sm2PublicKey::from_sec1(&pk.to_sec1()).unwrap(), pk);
        let pem = k.to_pkcs8_pem().unwrap();
        let back = Sm2PrivateKey::from_pkcs8_pem(std::str::from_utf8(pem.expose()).unwrap()).unwrap();
        assert_eq!(back.public_key(), pk);
    }

    #[test]
    fn z_matches_the_signers_own() {
        // A raw-sign HSM gets e = SM3(Z ‖ M) from us; the signature must then verify as if signed with the ID.
        use sm2::dsa::signature::hazmat::PrehashVerifier;
        let k = Sm2PrivateKey::generate().unwrap();
        let pk = k.public_key();
        for id in [DEFAULT_ID, "TLSv1.3+GM+Cipher+Suite", "ALICE123@YAHOO.COM"] {
            let sig = Signature::from_der(&k.sign_der(id, b"evidence").unwrap()).unwrap();
            let mut zm = pk.z(id).unwrap().to_vec();
            zm.extend_from_slice(b"evidence");
            let e = crate::hash::sm3(&zm);
            let vk = VerifyingKey::new(id, pk.0).unwrap();
            vk.verify_prehash(&e, &sig).unwrap();
            let mut wrong = pk.z("someone-else").unwrap().to_vec();
            wrong.extend_from_slice(b"evidence");
            assert!(vk.verify_prehash(&crate::hash::sm3(&wrong), &sig).is_err());
        }
    }
}
