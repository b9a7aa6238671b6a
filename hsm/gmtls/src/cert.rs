//! SM2/SM3 certificates: a development CA and leaf certificates for servers and clients (GB/T 20518 style: SM2
//! subject keys, SM2-with-SM3 signatures with the default user ID). Production takes them from the bank's CA.

use std::net::IpAddr;
use std::str::FromStr;
use std::time::Duration;

use der::asn1::{Ia5String, OctetString};
use der::pem::LineEnding;
use der::{Encode, EncodePem};
use sm2::dsa::signature::{Keypair, Signer};
use spki::{
    AssociatedAlgorithmIdentifier, SignatureAlgorithmIdentifier, SubjectPublicKeyInfoOwned, SubjectPublicKeyInfoRef,
};
use vbank_crypto::sm2sig::{DEFAULT_ID, Sm2PrivateKey};
use x509_cert::TbsCertificate;
use x509_cert::builder::profile::BuilderProfile;
use x509_cert::builder::{Builder, CertificateBuilder};
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::{BasicConstraints, ExtendedKeyUsage, KeyUsage, KeyUsages, SubjectAltName};
use x509_cert::ext::{Extension, ToExtension};
use x509_cert::name::Name;
use x509_cert::serial_number::SerialNumber;
use x509_cert::time::Validity;

use crate::GmTlsError;

/// An SM2 certificate and its private key.
pub struct Sm2Certified {
    /// DER certificate.
    pub cert_der: Vec<u8>,
    /// The private key.
    pub key: Sm2PrivateKey,
    subject: Name,
}

impl std::fmt::Debug for Sm2Certified {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Sm2Certified({})", self.subject)
    }
}

impl Sm2Certified {
    /// The certificate as PEM.
    pub fn cert_pem(&self) -> String {
        let cert = <x509_cert::Certificate as der::Decode>::from_der(&self.cert_der).expect("we encoded it");
        cert.to_pem(LineEnding::LF).expect("a certificate always encodes")
    }
}

struct Profile {
    issuer: Option<Name>,
    subject: Name,
    ca: bool,
    names: Vec<GeneralName>,
}

impl BuilderProfile for Profile {
    fn get_issuer(&self, subject: &Name) -> Name {
        self.issuer.clone().unwrap_or_else(|| subject.clone())
    }

    fn get_subject(&self) -> Name {
        self.subject.clone()
    }

    fn build_extensions(
        &self,
        _spk: SubjectPublicKeyInfoRef<'_>,
        _issuer_spk: SubjectPublicKeyInfoRef<'_>,
        tbs: &TbsCertificate,
    ) -> x509_cert::builder::Result<Vec<Extension>> {
        let mut exts: Vec<Extension> = Vec::new();
        let s = tbs.subject();
        exts.push(BasicConstraints { ca: self.ca, path_len_constraint: self.ca.then_some(0) }.to_extension(s, &exts)?);
        let usage =
            if self.ca { KeyUsages::KeyCertSign | KeyUsages::CRLSign } else { KeyUsages::DigitalSignature.into() };
        exts.push(KeyUsage(usage).to_extension(s, &exts)?);
        if !self.ca {
            let eku = ExtendedKeyUsage(vec![
                const_oid::db::rfc5280::ID_KP_SERVER_AUTH,
                const_oid::db::rfc5280::ID_KP_CLIENT_AUTH,
            ]);
            exts.push(eku.to_extension(s, &exts)?);
            exts.push(SubjectAltName(self.names.clone()).to_extension(s, &exts)?);
        }
        Ok(exts)
    }
}

fn issue(
    profile: Profile,
    subject_key: &Sm2PrivateKey,
    signer: &Sm2PrivateKey,
    days: u64,
) -> Result<Vec<u8>, GmTlsError> {
    let err = |e: &dyn std::fmt::Display| GmTlsError::Certificate(e.to_string());
    let subject_pub = sm2::PublicKey::from_sec1_bytes(&subject_key.public_key().to_sec1()).map_err(|e| err(&e))?;
    let spki = SubjectPublicKeyInfoOwned::from_key(&subject_pub).map_err(|e| err(&e))?;
    let mut serial = [0u8; 16];
    vbank_crypto::random(&mut serial).map_err(|e| err(&e))?;
    serial[0] &= 0x7f;
    let serial = SerialNumber::new(&serial).map_err(|e| err(&e))?;
    let validity = Validity::from_now(Duration::from_secs(days * 86_400)).map_err(|e| err(&e))?;
    let builder = CertificateBuilder::new(profile, serial, validity, spki).map_err(|e| err(&e))?;
    let secret = sm2::SecretKey::from_slice(signer.scalar().expose()).map_err(|e| err(&e))?;
    let sk = DerSigner(sm2::dsa::SigningKey::new(DEFAULT_ID, &secret).map_err(|e| err(&e))?);
    let cert = builder.build::<_, sm2::dsa::DerSignature>(&sk).map_err(|e| err(&e))?;
    cert.to_der().map_err(|e| err(&e))
}

/// A self-signed SM2 CA (10 years).
pub fn sm2_ca(common_name: &str) -> Result<Sm2Certified, GmTlsError> {
    let subject = Name::from_str(&format!("CN={common_name},O=vbank development (NOT FOR PRODUCTION)"))
        .map_err(|e| GmTlsError::Certificate(e.to_string()))?;
    let key = Sm2PrivateKey::generate().map_err(|e| GmTlsError::Certificate(e.to_string()))?;
    let profile = Profile { issuer: None, subject: subject.clone(), ca: true, names: vec![] };
    let cert_der = issue(profile, &key, &key, 3650)?;
    Ok(Sm2Certified { cert_der, key, subject })
}

/// A server-and-client SM2 certificate (2 years) for `names` (DNS names or IPs), issued by `ca`.
pub fn sm2_leaf(ca: &Sm2Certified, common_name: &str, names: &[String]) -> Result<Sm2Certified, GmTlsError> {
    let err = |e: &dyn std::fmt::Display| GmTlsError::Certificate(e.to_string());
    let subject = Name::from_str(&format!("CN={common_name}")).map_err(|e| err(&e))?;
    let mut sans = Vec::new();
    for n in names {
        sans.push(match IpAddr::from_str(n) {
            Ok(IpAddr::V4(ip)) => GeneralName::IpAddress(OctetString::new(ip.octets().to_vec()).map_err(|e| err(&e))?),
            Ok(IpAddr::V6(ip)) => GeneralName::IpAddress(OctetString::new(ip.octets().to_vec()).map_err(|e| err(&e))?),
            Err(_) => GeneralName::DnsName(Ia5String::new(n).map_err(|e| err(&e))?),
        });
    }
    let key = Sm2PrivateKey::generate().map_err(|e| err(&e))?;
    let profile = Profile { issuer: Some(ca.subject.clone()), subject: subject.clone(), ca: false, names: sans };
    let cert_der = issue(profile, &key, &ca.key, 730)?;
    Ok(Sm2Certified { cert_der, key, subject })
}

/// Signs certificates with a DER signature, as X.509 requires. (sm2's fixed-size `Signature` encodes its bit
/// string as raw r ‖ s, which verifiers such as OpenSSL and webpki reject.)
struct DerSigner(sm2::dsa::SigningKey);

impl Keypair for DerSigner {
    type VerifyingKey = sm2::dsa::VerifyingKey;

    fn verifying_key(&self) -> Self::VerifyingKey {
        self.0.verifying_key().clone()
    }
}

impl SignatureAlgorithmIdentifier for DerSigner {
    type Params = der::AnyRef<'static>;

    const SIGNATURE_ALGORITHM_IDENTIFIER: spki::AlgorithmIdentifier<Self::Params> =
        <sm2::dsa::Signature as AssociatedAlgorithmIdentifier>::ALGORITHM_IDENTIFIER;
}

impl Signer<sm2::dsa::DerSignature> for DerSigner {
    fn try_sign(&self, msg: &[u8]) -> Result<sm2::dsa::DerSignature, sm2::dsa::signature::Error> {
        let sig: sm2::dsa::Signature = self.0.try_sign(msg)?;
        Ok(sig.to_der())
    }
}
