//! Who is on the other end of an mTLS connection, and what they may call.

use rustls_pki_types::CertificateDer;
use vbank_config::Service;
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

/// The DNS name that identifies a service in its certificate: `keyd.vbank.internal`.
pub fn service_dns_name(svc: Service) -> String {
    format!("{}.vbank.internal", svc.name())
}

/// The authenticated peer of a connection, put in each request's extensions by the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Peer {
    /// A vbank service, proven by a client certificate from the internal CA.
    Service(Service),
    /// A client certificate from the internal CA that names no vbank service.
    UnknownCertificate,
    /// No client certificate (browsers, apps, admin scrapers).
    Anonymous,
}

impl Peer {
    /// The peer of a connection, from the (already verified) certificate chain it presented.
    pub fn from_chain(chain: Option<&[CertificateDer<'_>]>) -> Peer {
        let Some(leaf) = chain.and_then(|c| c.first()) else {
            return Peer::Anonymous;
        };
        let Ok((_, cert)) = X509Certificate::from_der(leaf) else {
            return Peer::UnknownCertificate;
        };
        let Ok(Some(san)) = cert.subject_alternative_name() else {
            return Peer::UnknownCertificate;
        };
        for name in &san.value.general_names {
            if let GeneralName::DNSName(dns) = name
                && let Some(svc) = dns.strip_suffix(".vbank.internal").and_then(Service::from_name)
            {
                return Peer::Service(svc);
            }
        }
        Peer::UnknownCertificate
    }

    /// A short name for logs and errors.
    pub fn describe(&self) -> String {
        match self {
            Peer::Service(s) => s.name().to_string(),
            Peer::UnknownCertificate => "unknown-certificate".to_string(),
            Peer::Anonymous => "anonymous".to_string(),
        }
    }
}

/// Which services may call which endpoints of one service. Default deny: a path no rule covers is refused.
#[derive(Debug, Clone, Default)]
pub struct AccessPolicy {
    rules: Vec<(String, Vec<Service>)>,
}

impl AccessPolicy {
    /// An empty policy (denies everything).
    pub fn new() -> Self {
        Self::default()
    }

    /// Allow `callers` to call every path under `prefix`. The longest matching prefix decides.
    pub fn allow(mut self, prefix: &str, callers: &[Service]) -> Self {
        self.rules.push((prefix.to_string(), callers.to_vec()));
        self
    }

    /// Whether `peer` may call `path`.
    pub fn permits(&self, peer: &Peer, path: &str) -> bool {
        let Peer::Service(svc) = peer else {
            return false;
        };
        self.rules
            .iter()
            .filter(|(prefix, _)| path_has_prefix(path, prefix))
            .max_by_key(|(prefix, _)| prefix.len())
            .is_some_and(|(_, callers)| callers.contains(svc))
    }
}

/// `/v1/keys` covers `/v1/keys` and `/v1/keys/x`, not `/v1/keysX`.
fn path_has_prefix(path: &str, prefix: &str) -> bool {
    path == prefix
        || (path.starts_with(prefix) && (prefix.ends_with('/') || path.as_bytes().get(prefix.len()) == Some(&b'/')))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn longest_prefix_decides_and_default_is_deny() {
        let p = AccessPolicy::new()
            .allow("/v1", &[Service::Cli])
            .allow("/v1/dek", &[Service::Recorder])
            .allow("/v1/token", &[Service::Gateway, Service::Cli]);
        let rec = Peer::Service(Service::Recorder);
        let gw = Peer::Service(Service::Gateway);
        assert!(p.permits(&rec, "/v1/dek/open"));
        assert!(!p.permits(&gw, "/v1/dek/open"));
        assert!(p.permits(&gw, "/v1/token"));
        assert!(!p.permits(&rec, "/v1/tokenx"));
        assert!(!p.permits(&Peer::Service(Service::Cli), "/v1/dek"));
        assert!(p.permits(&Peer::Service(Service::Cli), "/v1/other"));
        assert!(!p.permits(&Peer::Anonymous, "/v1/token"));
        assert!(!p.permits(&Peer::UnknownCertificate, "/v1/token"));
        assert!(!p.permits(&gw, "/elsewhere"));
    }
}
