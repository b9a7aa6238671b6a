//! sm2sig_sm3 (SignatureScheme 0x0708): SM2 over SM3 with the RFC 8998 user ID in CertificateVerify, and the default
//! GM/T 0009 ID for certificate signatures.

use std::sync::Arc;

use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{AlgorithmIdentifier, InvalidSignature, SignatureVerificationAlgorithm};
use rustls::sign::{Signer, SigningKey};
use rustls::{Error, SignatureAlgorithm, SignatureScheme};
use vbank_crypto::sm2sig::{DEFAULT_ID, Sm2PrivateKey, Sm2PublicKey};

/// RFC 8998 signature scheme number.
pub const SM2SIG_SM3_ID: u16 = 0x0708;
/// The scheme as rustls sees it.
pub const SM2SIG_SM3: SignatureScheme = SignatureScheme::Unknown(SM2SIG_SM3_ID);
/// The SM2 user ID of TLS 1.3 CertificateVerify signatures (RFC 8998 §3.2.1).
pub const TLS13_SM2_ID: &str = "TLSv1.3+GM+Cipher+Suite";

/// AlgorithmIdentifier contents: id-ecPublicKey with the SM2 curve (1.2.156.10197.1.301).
const SM2_PUBLIC_KEY: &[u8] =
    &[0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a, 0x81, 0x1c, 0xcf, 0x55, 0x01, 0x82, 0x2d];
/// AlgorithmIdentifier contents: SM2-with-SM3 (1.2.156.10197.1.501), no parameters.
const SM2_WITH_SM3: &[u8] = &[0x06, 0x08, 0x2a, 0x81, 0x1c, 0xcf, 0x55, 0x01, 0x83, 0x75];

#[derive(Debug)]
struct Sm2Verify {
    id: &'static str,
}

impl SignatureVerificationAlgorithm for Sm2Verify {
    fn verify_signature(&self, public_key: &[u8], message: &[u8], signature: &[u8]) -> Result<(), InvalidSignature> {
        let pk = Sm2PublicKey::from_sec1(public_key).map_err(|_| InvalidSignature)?;
        pk.verify(self.id, message, signature).map_err(|_| InvalidSignature)
    }

    fn public_key_alg_id(&self) -> AlgorithmIdentifier {
        AlgorithmIdentifier::from_slice(SM2_PUBLIC_KEY)
    }

    fn signature_alg_id(&self) -> AlgorithmIdentifier {
        AlgorithmIdentifier::from_slice(SM2_WITH_SM3)
    }
}

static SM2_CHAIN: Sm2Verify = Sm2Verify { id: DEFAULT_ID };
static SM2_TLS13: Sm2Verify = Sm2Verify { id: TLS13_SM2_ID };

/// Certificate chains verify with the default ID; CertificateVerify with the TLS 1.3 ID.
pub static SM2_ALGORITHMS: WebPkiSupportedAlgorithms =
    WebPkiSupportedAlgorithms { all: &[&SM2_CHAIN], mapping: &[(SM2SIG_SM3, &[&SM2_TLS13])] };

/// An SM2 key that signs TLS 1.3 handshakes. The key is software here; an HSM-held key plugs in through the same
/// trait (SM3(Z ‖ M) in software, raw SM2 sign in the HSM).
#[derive(Debug, Clone)]
pub struct Sm2SigningKey(pub Arc<Sm2PrivateKey>);

impl SigningKey for Sm2SigningKey {
    fn choose_scheme(&self, offered: &[SignatureScheme]) -> Option<Box<dyn Signer>> {
        offered.contains(&SM2SIG_SM3).then(|| Box::new(self.clone()) as Box<dyn Signer>)
    }

    fn algorithm(&self) -> SignatureAlgorithm {
        SignatureAlgorithm::Unknown(0xFE)
    }
}

impl Signer for Sm2SigningKey {
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, Error> {
        self.0.sign_der(TLS13_SM2_ID, message).map_err(|e| Error::General(format!("SM2 signing: {e}")))
    }

    fn scheme(&self) -> SignatureScheme {
        SM2SIG_SM3
    }
}
