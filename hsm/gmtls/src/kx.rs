//! curveSM2 (NamedGroup 0x0029): ECDHE on the SM2 curve, as RFC 8998 §3.2 specifies (RFC 8446 §7.4.2 key
//! derivation: the shared secret is the x coordinate; key shares are uncompressed points).

use rustls::crypto::{ActiveKeyExchange, SharedSecret, SupportedKxGroup};
use rustls::{Error, NamedGroup, PeerMisbehaved};
use sm2::elliptic_curve::point::AffineCoordinates;
use sm2::elliptic_curve::sec1::ToSec1Point;
use sm2::{PublicKey, SecretKey};
use vbank_crypto::SecretBytes;

/// The RFC 8998 group number.
pub const CURVE_SM2_ID: u16 = 0x0029;

/// curveSM2 for rustls.
pub static CURVE_SM2: &dyn SupportedKxGroup = &CurveSm2;

#[derive(Debug)]
struct CurveSm2;

impl SupportedKxGroup for CurveSm2 {
    fn start(&self) -> Result<Box<dyn ActiveKeyExchange>, Error> {
        loop {
            let bytes = SecretBytes::random(32).map_err(|e| Error::General(e.to_string()))?;
            // Zero or ≥ n: draw again (probability ~2^-224).
            if let Ok(secret) = SecretKey::from_slice(bytes.expose()) {
                let pub_key = secret.public_key().to_sec1_point(false).as_bytes().to_vec();
                return Ok(Box::new(Sm2KeyExchange { secret, pub_key }));
            }
        }
    }

    fn name(&self) -> NamedGroup {
        NamedGroup::Unknown(CURVE_SM2_ID)
    }
}

struct Sm2KeyExchange {
    secret: SecretKey,
    pub_key: Vec<u8>,
}

impl ActiveKeyExchange for Sm2KeyExchange {
    fn complete(self: Box<Self>, peer_pub_key: &[u8]) -> Result<SharedSecret, Error> {
        // Only uncompressed points are allowed in TLS 1.3 key shares.
        if peer_pub_key.len() != 65 || peer_pub_key[0] != 0x04 {
            return Err(PeerMisbehaved::InvalidKeyShare.into());
        }
        let peer =
            PublicKey::from_sec1_bytes(peer_pub_key).map_err(|_| Error::from(PeerMisbehaved::InvalidKeyShare))?;
        let shared = (peer.to_projective() * *self.secret.to_nonzero_scalar()).to_affine();
        Ok(SharedSecret::from(&shared.x()[..]))
    }

    fn pub_key(&self) -> &[u8] {
        &self.pub_key
    }

    fn group(&self) -> NamedGroup {
        NamedGroup::Unknown(CURVE_SM2_ID)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_sides_agree_and_bad_shares_are_refused() {
        let a = CURVE_SM2.start().unwrap();
        let b = CURVE_SM2.start().unwrap();
        let (a_pub, b_pub) = (a.pub_key().to_vec(), b.pub_key().to_vec());
        assert_eq!(a_pub.len(), 65);
        let s1 = a.complete(&b_pub).unwrap();
        let s2 = b.complete(&a_pub).unwrap();
        assert_eq!(s1.secret_bytes(), s2.secret_bytes());
        assert_eq!(s1.secret_bytes().len(), 32);
        let c = CURVE_SM2.start().unwrap();
        assert!(c.complete(&a_pub[..33]).is_err());
        let mut off_curve = a_pub.clone();
        off_curve[64] ^= 1;
        assert!(CURVE_SM2.start().unwrap().complete(&off_curve).is_err());
    }
}
