//! A development CA for `vbank up`: one ECDSA P-256 root, a public server certificate and one certificate per
//! service identity. Production takes all of these from the bank's CA instead (paths in `[tls]`).

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, SanType, date_time_ymd,
};
use vbank_config::{Service, TlsConfig};

use crate::{TlsError, identity::service_dns_name};

/// Files written by [`ensure_dev_pki`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DevPki {
    /// Everything already existed; nothing was written.
    Existing,
    /// A new CA and certificates were written.
    Created,
}

fn current_year() -> i32 {
    let days = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() / 86_400).unwrap_or(0);
    1970 + (days as f64 / 365.2425) as i32
}

fn params(cn: &str, sans: Vec<SanType>, years: i32) -> CertificateParams {
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "vbank development (NOT FOR PRODUCTION)");
    dn.push(DnType::CommonName, cn);
    p.distinguished_name = dn;
    p.subject_alt_names = sans;
    let y = current_year();
    p.not_before = date_time_ymd(y - 1, 1, 1);
    p.not_after = date_time_ymd(y + years, 1, 1);
    p
}

fn write_private(path: &Path, pem: &str) -> Result<(), TlsError> {
    let _ = fs::remove_file(path);
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| TlsError::io(path, e))?;
    f.write_all(pem.as_bytes()).map_err(|e| TlsError::io(path, e))
}

fn write_public(path: &Path, pem: &str) -> Result<(), TlsError> {
    fs::write(path, pem).map_err(|e| TlsError::io(path, e))
}

/// Create the SM2 development CA and SM2 certificates (public and per service) when `[tls] sm` is on and any is
/// missing.
fn ensure_dev_sm_pki(tls: &TlsConfig, public_names: &[String]) -> Result<DevPki, TlsError> {
    let sm = &tls.sm;
    let mut all = vec![sm.internal_ca.clone(), sm.public.cert.clone(), sm.public.key.clone()];
    for (_, pair) in &sm.services {
        all.push(pair.cert.clone());
        all.push(pair.key.clone());
    }
    if !sm.enabled || all.iter().all(|p| p.is_file()) {
        return Ok(DevPki::Existing);
    }
    let gen_err = |e: vbank_gmtls::GmTlsError| TlsError::Generate(e.to_string());
    let key_pem = |k: &vbank_crypto::sm2sig::Sm2PrivateKey| {
        k.to_pkcs8_pem()
            .map(|p| String::from_utf8_lossy(p.expose()).into_owned())
            .map_err(|e| TlsError::Generate(e.to_string()))
    };
    let ca = vbank_gmtls::cert::sm2_ca("vbank development SM2 CA").map_err(gen_err)?;
    write_public(&sm.internal_ca, &ca.cert_pem())?;
    let public = vbank_gmtls::cert::sm2_leaf(&ca, "vbank public endpoint (SM2)", public_names).map_err(gen_err)?;
    write_public(&sm.public.cert, &format!("{}{}", public.cert_pem(), ca.cert_pem()))?;
    write_private(&sm.public.key, &key_pem(&public.key)?)?;
    for svc in Service::ALL {
        let dns = service_dns_name(svc);
        let names = vec![dns.clone(), "localhost".to_string(), "127.0.0.1".to_string()];
        let leaf = vbank_gmtls::cert::sm2_leaf(&ca, &dns, &names).map_err(gen_err)?;
        let pair = sm.service(svc);
        write_public(&pair.cert, &format!("{}{}", leaf.cert_pem(), ca.cert_pem()))?;
        write_private(&pair.key, &key_pem(&leaf.key)?)?;
    }
    Ok(DevPki::Created)
}

/// Create the development CA and every certificate named in `tls`, unless all of them exist already. With
/// `[tls] sm = true`, an SM2 CA and SM2 certificates too.
///
/// `public_names` are the DNS names and IPs the public certificate must cover (e.g. `localhost`, `127.0.0.1`).
pub fn ensure_dev_pki(tls: &TlsConfig, public_names: &[String]) -> Result<DevPki, TlsError> {
    let mut all = vec![tls.internal_ca.clone(), tls.public.cert.clone(), tls.public.key.clone()];
    for (_, pair) in &tls.services {
        all.push(pair.cert.clone());
        all.push(pair.key.clone());
    }
    if all.iter().all(|p| p.is_file()) {
        return ensure_dev_sm_pki(tls, public_names);
    }
    for p in &all {
        if let Some(dir) = p.parent() {
            fs::create_dir_all(dir).map_err(|e| TlsError::io(dir, e))?;
        }
    }
    let gen_err = |e: rcgen::Error| TlsError::Generate(e.to_string());

    let ca_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(gen_err)?;
    let mut ca_params = params("vbank development CA", vec![], 10);
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca = CertifiedIssuer::self_signed(ca_params, ca_key).map_err(gen_err)?;
    write_public(&tls.internal_ca, &ca.pem())?;

    let leaf = |cn: &str, sans: Vec<SanType>, eku: Vec<ExtendedKeyUsagePurpose>| {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(gen_err)?;
        let mut p = params(cn, sans, 2);
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p.extended_key_usages = eku;
        let cert = p.signed_by(&key, &ca).map_err(gen_err)?;
        // Chain: leaf then CA, so clients that only know the CA by name still build the path.
        Ok::<_, TlsError>((format!("{}{}", cert.pem(), ca.pem()), key.serialize_pem()))
    };

    let mut public_sans = Vec::new();
    for n in public_names {
        public_sans.push(match n.parse() {
            Ok(ip) => SanType::IpAddress(ip),
            Err(_) => SanType::DnsName(n.clone().try_into().map_err(gen_err)?),
        });
    }
    let (cert, key) = leaf("vbank public endpoint", public_sans, vec![ExtendedKeyUsagePurpose::ServerAuth])?;
    write_public(&tls.public.cert, &cert)?;
    write_private(&tls.public.key, &key)?;

    for svc in Service::ALL {
        let dns = service_dns_name(svc);
        let sans = vec![
            SanType::DnsName(dns.clone().try_into().map_err(gen_err)?),
            SanType::DnsName("localhost".try_into().map_err(gen_err)?),
            SanType::IpAddress([127, 0, 0, 1].into()),
        ];
        let eku = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
        let (cert, key) = leaf(&dns, sans, eku)?;
        let pair = tls.service(svc);
        write_public(&pair.cert, &cert)?;
        write_private(&pair.key, &key)?;
    }
    ensure_dev_sm_pki(tls, public_names)?;
    Ok(DevPki::Created)
}

/// The files of a vendor simulator's PKI: its own CA (what `[kyc.tencent] ca` trusts on a development node) and a
/// server certificate for the vendor's host names.
#[derive(Debug, Clone)]
pub struct SimulatorPki {
    /// The CA certificate (PEM).
    pub ca: std::path::PathBuf,
    /// The server certificate chain (PEM).
    pub cert: std::path::PathBuf,
    /// The server key (PEM, 0600).
    pub key: std::path::PathBuf,
}

/// Create (or reuse) a CA and a server certificate for `hosts` in `dir`, for the KYC vendor simulator.
pub fn ensure_simulator_pki(dir: &Path, hosts: &[&str]) -> Result<SimulatorPki, TlsError> {
    let pki = SimulatorPki { ca: dir.join("sim-ca.crt"), cert: dir.join("sim.crt"), key: dir.join("sim.key") };
    if pki.ca.is_file() && pki.cert.is_file() && pki.key.is_file() {
        return Ok(pki);
    }
    fs::create_dir_all(dir).map_err(|e| TlsError::io(dir, e))?;
    let gen_err = |e: rcgen::Error| TlsError::Generate(e.to_string());
    let ca_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(gen_err)?;
    let mut ca_params = params("vbank KYC vendor simulator CA", vec![], 10);
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca = CertifiedIssuer::self_signed(ca_params, ca_key).map_err(gen_err)?;
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(gen_err)?;
    let mut sans = Vec::new();
    for h in hosts {
        sans.push(SanType::DnsName((*h).to_string().try_into().map_err(gen_err)?));
    }
    let mut p = params(hosts.first().copied().unwrap_or("simulator"), sans, 2);
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let cert = p.signed_by(&key, &ca).map_err(gen_err)?;
    write_public(&pki.ca, &ca.pem())?;
    write_public(&pki.cert, &format!("{}{}", cert.pem(), ca.pem()))?;
    write_private(&pki.key, &key.serialize_pem())?;
    Ok(pki)
}
