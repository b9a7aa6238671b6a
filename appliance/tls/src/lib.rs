//! TLS for vbank, on rustls.
//!
//! - [`public_server_config`]: what browsers and apps meet (TLS 1.3; 1.2 only when `[tls] min_version = "1.2"`).
//! - [`service_server_config`] / [`service_client_config`]: mTLS between services, each with its own certificate from
//!   the internal CA; [`Peer`] names the caller and [`AccessPolicy`] says which caller may reach which endpoint.
//! - [`devca::ensure_dev_pki`]: a development CA for `vbank up` (and an SM2 one with `[tls] sm = true`).
//! - 国密 TLS 1.3 (RFC 8998, [`vbank_gmtls`]): with `[tls] sm = true`, listeners get a [`ServerTls`] holding both
//!   configurations and pick one per connection from the ClientHello; `sm_internal_only` makes internal links SM-only.

pub mod devca;
mod identity;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig, SupportedProtocolVersion};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use vbank_config::{Service, TlsConfig, TlsVersion};

pub use identity::{AccessPolicy, Peer, service_dns_name};

/// Why TLS material could not be loaded or used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A file could not be read or written.
    #[error("{}: {source} (hint: check the path in [tls] and that the service user may read it)", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A file held no usable PEM object of the expected kind.
    #[error("{}: {what} (hint: give a PEM file; certificate chains leaf first)", path.display())]
    Pem {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        what: String,
    },
    /// rustls refused the material (e.g. key does not match certificate).
    #[error(
        "TLS configuration refused: {0} (hint: each certificate must be X.509 v3 with its DNS names as subjectAltName, \
         and each key must belong to its certificate)"
    )]
    Rustls(#[from] rustls::Error),
    /// The client verifier could not be built from the internal CA.
    #[error("cannot use the internal CA for client verification: {0}")]
    Verifier(String),
    /// The development CA could not generate a key or certificate.
    #[error("development CA: {0}")]
    Generate(String),
}

impl TlsError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> TlsError {
        TlsError::Io { path: path.to_path_buf(), source }
    }
}

/// Whether a service's listener asks callers for a certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// Internal APIs: no certificate from the internal CA, no connection.
    Required,
    /// Admin listeners: anonymous scrapers welcome, services identified when they present one.
    Optional,
}

/// The crypto provider every vbank TLS endpoint uses.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

fn versions(v: TlsVersion) -> &'static [&'static SupportedProtocolVersion] {
    static V13: [&SupportedProtocolVersion; 1] = [&rustls::version::TLS13];
    static V12: [&SupportedProtocolVersion; 2] = [&rustls::version::TLS13, &rustls::version::TLS12];
    match v {
        TlsVersion::V1_3 => &V13,
        TlsVersion::V1_2 => &V12,
    }
}

/// Read a PEM certificate chain.
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = std::fs::read(path).map_err(|e| TlsError::io(path, e))?;
    let certs: Result<Vec<_>, _> = CertificateDer::pem_slice_iter(&pem).collect();
    let certs = certs.map_err(|e| TlsError::Pem { path: path.to_path_buf(), what: e.to_string() })?;
    if certs.is_empty() {
        return Err(TlsError::Pem { path: path.to_path_buf(), what: "no CERTIFICATE block".to_string() });
    }
    Ok(certs)
}

/// Read a PEM private key (PKCS#8, SEC1 or PKCS#1).
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = std::fs::read(path).map_err(|e| TlsError::io(path, e))?;
    PrivateKeyDer::from_pem_slice(&pem)
        .map_err(|e| TlsError::Pem { path: path.to_path_buf(), what: format!("no private key: {e}") })
}

fn roots(ca: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for c in load_certs(ca)? {
        roots.add(c).map_err(TlsError::Rustls)?;
    }
    Ok(roots)
}

/// A listener's TLS: a standard configuration, an RFC 8998 one, or both (chosen per connection by the ClientHello).
#[derive(Debug, Clone)]
pub struct ServerTls {
    /// Standard TLS (browsers); `None` on SM-only internal listeners.
    pub standard: Option<Arc<ServerConfig>>,
    /// 国密 TLS 1.3; `None` unless `[tls] sm = true`.
    pub sm: Option<Arc<ServerConfig>>,
}

impl ServerTls {
    /// Standard TLS only.
    pub fn standard(cfg: Arc<ServerConfig>) -> ServerTls {
        ServerTls { standard: Some(cfg), sm: None }
    }

    /// The configuration for a client offering `suites`: SM when it offers the SM suite and this listener has SM.
    /// With only one configuration, that one: rustls then refuses an incompatible client with a handshake alert.
    pub fn choose(&self, suites: &[rustls::CipherSuite]) -> Arc<ServerConfig> {
        match (&self.standard, &self.sm) {
            (Some(std), Some(sm)) => {
                if vbank_gmtls::offers_sm(suites) {
                    sm.clone()
                } else {
                    std.clone()
                }
            }
            (Some(c), None) | (None, Some(c)) => c.clone(),
            (None, None) => unreachable!("ServerTls is always built with at least one configuration"),
        }
    }
}

fn sm_provider() -> Arc<CryptoProvider> {
    Arc::new(vbank_gmtls::provider())
}

fn sm13() -> &'static [&'static SupportedProtocolVersion] {
    static V13: [&SupportedProtocolVersion; 1] = [&rustls::version::TLS13];
    &V13
}

fn sm_server(
    pair: &vbank_config::CertPair,
    verifier: Option<Arc<dyn rustls::server::danger::ClientCertVerifier>>,
) -> Result<Arc<ServerConfig>, TlsError> {
    let b = ServerConfig::builder_with_provider(sm_provider()).with_protocol_versions(sm13())?;
    let b = match verifier {
        Some(v) => b.with_client_cert_verifier(v),
        None => b.with_no_client_auth(),
    };
    let mut cfg = b.with_single_cert(load_certs(&pair.cert)?, load_key(&pair.key)?)?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

fn client_verifier(
    provider: Arc<CryptoProvider>,
    ca: &Path,
    auth: ClientAuth,
) -> Result<Arc<dyn rustls::server::danger::ClientCertVerifier>, TlsError> {
    let roots = Arc::new(roots(ca)?);
    let builder = WebPkiClientVerifier::builder_with_provider(roots, provider);
    match auth {
        ClientAuth::Required => builder.build(),
        ClientAuth::Optional => builder.allow_unauthenticated().build(),
    }
    .map_err(|e| TlsError::Verifier(e.to_string()))
}

/// The public listener's TLS: standard (browsers) and, with `[tls] sm = true`, RFC 8998 on the same port.
pub fn public_server_tls(tls: &TlsConfig) -> Result<ServerTls, TlsError> {
    let sm = if tls.sm.enabled { Some(sm_server(&tls.sm.public, None)?) } else { None };
    Ok(ServerTls { standard: Some(public_server_config(tls)?), sm })
}

/// A service listener's TLS: standard and/or SM, by `[tls] sm` and `sm_internal_only`.
pub fn service_server_tls(tls: &TlsConfig, svc: Service, auth: ClientAuth) -> Result<ServerTls, TlsError> {
    let sm = if tls.sm.enabled {
        let v = client_verifier(sm_provider(), &tls.sm.internal_ca, auth)?;
        Some(sm_server(tls.sm.service(svc), Some(v))?)
    } else {
        None
    };
    let standard = if tls.sm.internal_only { None } else { Some(service_server_config(tls, svc, auth)?) };
    Ok(ServerTls { standard, sm })
}

/// A client configuration for calls to other vbank services: SM when `[tls] sm_internal_only`, else standard.
pub fn internal_client_config(tls: &TlsConfig, svc: Service) -> Result<Arc<ClientConfig>, TlsError> {
    if tls.sm.internal_only { service_client_config_sm(tls, svc) } else { service_client_config(tls, svc) }
}

/// An RFC 8998 client configuration presenting `svc`'s SM2 certificate and trusting the SM2 internal CA.
pub fn service_client_config_sm(tls: &TlsConfig, svc: Service) -> Result<Arc<ClientConfig>, TlsError> {
    let pair = tls.sm.service(svc);
    let cfg = ClientConfig::builder_with_provider(sm_provider())
        .with_protocol_versions(sm13())?
        .with_root_certificates(roots(&tls.sm.internal_ca)?)
        .with_client_auth_cert(load_certs(&pair.cert)?, load_key(&pair.key)?)?;
    Ok(Arc::new(cfg))
}

/// An RFC 8998 client configuration without a certificate, trusting the SM2 CA (SM-suite clients, tests).
pub fn anonymous_client_config_sm(tls: &TlsConfig) -> Result<Arc<ClientConfig>, TlsError> {
    let cfg = ClientConfig::builder_with_provider(sm_provider())
        .with_protocol_versions(sm13())?
        .with_root_certificates(roots(&tls.sm.internal_ca)?)
        .with_no_client_auth();
    Ok(Arc::new(cfg))
}

/// The server configuration for the public listener (browsers, apps): no client certificate, HTTP/2 and 1.1.
pub fn public_server_config(tls: &TlsConfig) -> Result<Arc<ServerConfig>, TlsError> {
    let mut cfg = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(versions(tls.min_version))?
        .with_no_client_auth()
        .with_single_cert(load_certs(&tls.public.cert)?, load_key(&tls.public.key)?)?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// The server configuration for one service's own listeners, with its certificate and the internal CA.
pub fn service_server_config(tls: &TlsConfig, svc: Service, auth: ClientAuth) -> Result<Arc<ServerConfig>, TlsError> {
    let roots = Arc::new(roots(&tls.internal_ca)?);
    let builder = WebPkiClientVerifier::builder_with_provider(roots, provider());
    let verifier = match auth {
        ClientAuth::Required => builder.build(),
        ClientAuth::Optional => builder.allow_unauthenticated().build(),
    }
    .map_err(|e| TlsError::Verifier(e.to_string()))?;
    let pair = tls.service(svc);
    let mut cfg = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(versions(tls.min_version))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(load_certs(&pair.cert)?, load_key(&pair.key)?)?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// The client configuration a service uses to call another: presents its own certificate, trusts only the internal CA.
pub fn service_client_config(tls: &TlsConfig, svc: Service) -> Result<Arc<ClientConfig>, TlsError> {
    let pair = tls.service(svc);
    let cfg = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(versions(tls.min_version))?
        .with_root_certificates(roots(&tls.internal_ca)?)
        .with_client_auth_cert(load_certs(&pair.cert)?, load_key(&pair.key)?)?;
    Ok(Arc::new(cfg))
}

/// A client configuration that trusts the internal CA and presents no certificate (health probes, `vbank up`).
pub fn anonymous_client_config(tls: &TlsConfig) -> Result<Arc<ClientConfig>, TlsError> {
    let cfg = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(versions(tls.min_version))?
        .with_root_certificates(roots(&tls.internal_ca)?)
        .with_no_client_auth();
    Ok(Arc::new(cfg))
}

#[cfg(test)]
mod tests;
