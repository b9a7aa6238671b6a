//! The vendors' IO: one HTTPS endpoint per vendor with kept-alive connections, and the rule every vendor call
//! follows — a deadline, at most one automatic retry and only of an unbilled transient failure, and a circuit
//! breaker so a vendor that keeps failing answers at once. The requests and what the answers mean are the sans-IO
//! protocols in `vbank_kyc::vendor`.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use vbank_config::{KycConfig, VendorConfig};
use vbank_crypto::SecretBytes;
use vbank_kyc::vendor::{self, Breaker, Decision, HttpRequest, IdentityProtocol, Verdict};
use vbank_service::client::{ClientConfig, Connection, Method};

use crate::KycServiceError;

/// Failures in a row that open the breaker, and how long it stays open.
pub const BREAKER: (u32, Duration) = (5, Duration::from_secs(30));
/// Automatic attempts for an unbilled transient failure (the first included).
const ATTEMPTS: u32 = 2;
/// Idle connections kept per vendor.
const IDLE: usize = 4;

/// One vendor's HTTPS endpoint.
pub struct Endpoint {
    host: String,
    /// `connect` from the configuration; without it the host is resolved for each new connection, so a DNS outage
    /// at boot makes calls retryable failures rather than stopping the service.
    addr: Option<SocketAddr>,
    tls: Arc<ClientConfig>,
    timeout: Duration,
    idle: Mutex<Vec<Connection>>,
}

fn bad(vendor: &str, what: &str, e: &dyn std::fmt::Display) -> KycServiceError {
    KycServiceError::Config(format!("[kyc.{vendor}] {what}: {e}"))
}

impl Endpoint {
    /// From `[kyc.{vendor}]`.
    pub fn new(cfg: &VendorConfig, vendor: &str, timeout: Duration) -> Result<Endpoint, KycServiceError> {
        Endpoint::for_host(cfg, &cfg.host, vendor, timeout)
    }

    /// From `[kyc.{vendor}]`, for another of the vendor's hosts.
    pub fn for_host(
        cfg: &VendorConfig,
        host: &str,
        vendor: &str,
        timeout: Duration,
    ) -> Result<Endpoint, KycServiceError> {
        if host.is_empty() || host.contains(['/', ':', ' ']) {
            return Err(bad(
                vendor,
                "host",
                &format!("{host:?} is not a host name (write only the name, e.g. api.vendor.cn)"),
            ));
        }
        let addr = cfg.connect;
        let certs = vbank_tls::load_certs(&cfg.ca).map_err(|e| bad(vendor, "ca", &e))?;
        let mut roots = rustls::RootCertStore::empty();
        for c in certs {
            roots.add(c).map_err(|e| bad(vendor, "ca", &e))?;
        }
        let tls = ClientConfig::builder_with_provider(vbank_tls::provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| bad(vendor, "tls", &e))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Endpoint { host: host.to_string(), addr, tls: Arc::new(tls), timeout, idle: Mutex::default() })
    }

    fn kept(&self) -> Option<Connection> {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        while let Some(c) = idle.pop() {
            if c.is_open() {
                return Some(c);
            }
        }
        None
    }

    /// Send `r` (POST) within the deadline, on a kept connection when one is open: the vendor's status and body, or
    /// what its silence means — unbilled and retryable when nothing reached it (refused, TLS failed), possibly billed
    /// and never retried when it did not answer in time (it may still answer, and bill).
    pub async fn send(&self, r: &HttpRequest) -> Result<(u16, Bytes), Decision> {
        let headers: Vec<(&str, &str)> = r.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let fut = async {
            let mut c = match self.kept() {
                Some(c) => c,
                None => {
                    let addr = match self.addr {
                        Some(a) => a,
                        None => resolve(&self.host).await?,
                    };
                    Connection::open(self.tls.clone(), addr, &self.host, self.timeout)
                        .await
                        .map_err(|e| e.to_string())?
                }
            };
            let answer = c
                .request_with(Method::POST, &r.path, &headers, Some(r.body.clone().into()))
                .await
                .map_err(|e| e.to_string())?;
            let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
            if idle.len() < IDLE {
                idle.push(c);
            }
            Ok::<_, String>(answer)
        };
        match tokio::time::timeout(self.timeout, fut).await {
            Ok(Ok((status, _, body))) => Ok((status.as_u16(), body)),
            Ok(Err(e)) => Err(Decision {
                retryable: true,
                ..Decision::local(Verdict::Unavailable(format!("cannot reach the vendor: {e}")))
            }),
            Err(_) => Err(Decision {
                billed: true,
                ..Decision::local(Verdict::Unavailable(format!("no answer within {} s", self.timeout.as_secs())))
            }),
        }
    }
}

/// The vendor's address now, from the node's resolver.
async fn resolve(host: &str) -> Result<SocketAddr, String> {
    let unresolved = |why: String| {
        format!("cannot resolve {host}: {why} (check the node's DNS resolver, or set connect = \"IP:443\")")
    };
    tokio::net::lookup_host((host, 443))
        .await
        .map_err(|e| unresolved(e.to_string()))?
        .next()
        .ok_or_else(|| unresolved("no address".into()))
}

/// The rule every vendor call follows, with its breaker.
pub struct Guard {
    breaker: Mutex<Breaker>,
    started: Instant,
}

impl Default for Guard {
    fn default() -> Guard {
        Guard { breaker: Mutex::new(Breaker::new(BREAKER.0, BREAKER.1)), started: Instant::now() }
    }
}

impl Guard {
    /// Whether the breaker refuses calls now.
    pub fn is_open(&self) -> bool {
        self.breaker.lock().unwrap_or_else(|p| p.into_inner()).is_open(self.started.elapsed())
    }

    /// Run `attempt` under the breaker, once more if it failed unbilled and transiently.
    pub async fn run<T, F: Future<Output = Result<T, Decision>>>(
        &self,
        attempt: impl Fn() -> F,
    ) -> Result<T, Decision> {
        let mut last = None;
        for _ in 0..ATTEMPTS {
            if !self.breaker.lock().unwrap_or_else(|p| p.into_inner()).allow(self.started.elapsed()) {
                let why = format!("the vendor failed repeatedly; paused for {} s", BREAKER.1.as_secs());
                return Err(Decision::local(Verdict::Unavailable(why)));
            }
            let d = attempt().await;
            let failed =
                matches!(&d, Err(d) if matches!(d.verdict, Verdict::Unavailable(_) | Verdict::Misconfigured(_)));
            self.breaker.lock().unwrap_or_else(|p| p.into_inner()).record(failed, self.started.elapsed());
            match d {
                Err(d) if d.retryable && !d.billed => last = Some(d),
                done => return done,
            }
        }
        Err(last.unwrap_or_else(|| Decision::local(Verdict::Unavailable("no attempt was made".into()))))
    }
}

pub(crate) fn load_secret(
    r: &Option<vbank_config::SecretRef>,
    vendor: &str,
    what: &str,
) -> Result<SecretBytes, KycServiceError> {
    let r = r.as_ref().ok_or_else(|| KycServiceError::Config(format!("[kyc.{vendor}] {what} is not set")))?;
    r.load().map(|s| SecretBytes::new(s.expose().trim_ascii().to_vec())).map_err(|e| bad(vendor, what, &e))
}

fn text(s: SecretBytes, vendor: &str, what: &str) -> Result<String, KycServiceError> {
    String::from_utf8(s.expose().to_vec()).map_err(|e| bad(vendor, what, &e))
}

fn now_s() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// A configured identity vendor (联网核查).
pub struct IdentityVendor {
    /// `tencent`, `alibaba` or `nciic`.
    pub name: &'static str,
    protocol: Box<dyn IdentityProtocol>,
    endpoint: Endpoint,
    guard: Guard,
}

impl IdentityVendor {
    /// `vendor` from its `[kyc.{vendor}]` section; its secrets are read now.
    pub fn new(cfg: &KycConfig, vendor: &str) -> Result<IdentityVendor, KycServiceError> {
        let timeout = Duration::from_secs(u64::from(cfg.timeout_s));
        let (id_key, secret_key) = vbank_config::credential_keys(vendor);
        let (name, v, protocol): (&'static str, _, Box<dyn IdentityProtocol>) = match vendor {
            "tencent" => {
                let v = &cfg.tencent;
                let encrypt_to = match &v.encrypt_to {
                    Some(p) => {
                        let pem = std::fs::read_to_string(p).map_err(|e| bad(vendor, "encrypt_to", &e))?;
                        Some(
                            vbank_crypto::sm2sig::Sm2PublicKey::from_pem(&pem)
                                .map_err(|e| bad(vendor, "encrypt_to", &e))?,
                        )
                    }
                    None => None,
                };
                let id = text(load_secret(&v.key_id, vendor, id_key)?, vendor, id_key)?;
                let key = load_secret(&v.secret, vendor, secret_key)?;
                ("tencent", v, Box::new(vendor::tencent::Tencent::new(&v.host, &id, key, encrypt_to)))
            }
            "alibaba" => {
                let v = &cfg.alibaba;
                let id = text(load_secret(&v.key_id, vendor, id_key)?, vendor, id_key)?;
                let key = load_secret(&v.secret, vendor, secret_key)?;
                ("alibaba", v, Box::new(vendor::alibaba::Alibaba::new(&v.host, &id, key)))
            }
            "nciic" => {
                let v = &cfg.nciic;
                let license = load_secret(&v.secret, vendor, secret_key)?;
                ("nciic", v, Box::new(vendor::nciic::Nciic::new(license, &v.sbm, &v.business, &v.place)))
            }
            other => return Err(KycServiceError::Config(format!("[kyc] identity: no vendor {other:?}"))),
        };
        Ok(IdentityVendor { name, protocol, endpoint: Endpoint::new(v, vendor, timeout)?, guard: Guard::default() })
    }

    /// What the attestation names as the engine.
    pub fn engine(&self) -> &'static str {
        self.protocol.engine()
    }

    /// Whether its breaker is open (it failed repeatedly and is paused).
    pub fn is_paused(&self) -> bool {
        self.guard.is_open()
    }

    /// Check `name` and `id_number`.
    pub async fn verify(&self, name: &str, id_number: &str) -> Decision {
        let decided =
            self.guard
                .run(|| async {
                    let r = self.protocol.request(name, id_number, now_s()).map_err(|e| {
                        Decision::local(Verdict::Misconfigured(format!("the request cannot be made: {e}")))
                    })?;
                    let d = match self.endpoint.send(&r).await {
                        Ok((status, body)) => self.protocol.decide(status, &body),
                        Err(d) => d,
                    };
                    match d.verdict {
                        Verdict::Unavailable(_) | Verdict::Misconfigured(_) => Err(d),
                        _ => Ok(d),
                    }
                })
                .await;
        decided.unwrap_or_else(|d| d)
    }
}

/// The identity rule: ask `vendors` in turn, going on to the next only when one is unavailable and did not bill;
/// the decision and the engine that gave it. `timed` is told each vendor's name and how long it took.
pub async fn ask_in_turn(
    vendors: &[Arc<IdentityVendor>],
    name: &str,
    number: &str,
    mut timed: impl FnMut(&'static str, Duration),
) -> (Decision, &'static str) {
    let why = "no vendor is configured ([kyc] identity = \"off\")".to_string();
    let mut answer = (Decision::local(Verdict::Misconfigured(why)), "none");
    for v in vendors {
        let started = Instant::now();
        let d = v.verify(name, number).await;
        timed(v.name, started.elapsed());
        let go_on = matches!(d.verdict, Verdict::Unavailable(_)) && !d.billed;
        answer = (d, v.engine());
        if !go_on {
            break;
        }
    }
    answer
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(host: &str) -> VendorConfig {
        VendorConfig {
            host: host.into(),
            connect: None,
            ca: "/etc/ssl/certs/ca-certificates.crt".into(),
            key_id: None,
            secret: None,
            encrypt_to: None,
            ocr_host: String::new(),
            sbm: String::new(),
            business: String::new(),
            place: String::new(),
        }
    }

    #[tokio::test]
    async fn a_host_that_does_not_resolve_fails_the_call_not_the_start() {
        // `.invalid` never resolves (RFC 6761): as with a DNS server down at boot, the service starts and each call
        // is an unbilled, retryable failure that names the host.
        let e = Endpoint::new(&config("vendor.invalid"), "nciic", Duration::from_secs(5)).expect("starts");
        let r = HttpRequest { path: "/".into(), headers: vec![], body: b"{}".to_vec() };
        let d = e.send(&r).await.expect_err("cannot be reached");
        assert!(d.retryable && !d.billed, "{d:?}");
        assert!(format!("{d:?}").contains("cannot resolve vendor.invalid"), "{d:?}");
    }

    #[test]
    fn a_url_where_a_host_name_belongs_is_refused() {
        let e =
            Endpoint::new(&config("https://api.vendor.cn/"), "nciic", Duration::from_secs(5)).err().expect("refused");
        assert!(e.to_string().contains("is not a host name"), "{e}");
    }
}
