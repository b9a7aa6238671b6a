//! The Tencent Cloud FaceID adapter's IO: one HTTPS request per identity check, signed (TC3-HMAC-SHA256) by the
//! sans-IO core, with a deadline, at most one automatic retry and only of an unbilled transient failure, and a circuit
//! breaker so a vendor that keeps failing answers at once.

use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use vbank_config::TencentConfig;
use vbank_crypto::SecretBytes;
use vbank_kyc::vendor::{self, Breaker, Decision, Verdict};
use vbank_service::client::{ClientConfig, Connection, Method};

use crate::KycServiceError;

/// Failures in a row that open the breaker, and how long it stays open.
const BREAKER: (u32, Duration) = (5, Duration::from_secs(30));
/// Automatic attempts for an unbilled transient failure (the first included).
const ATTEMPTS: u32 = 2;

/// A configured Tencent Cloud FaceID account.
pub struct Tencent {
    host: String,
    addr: SocketAddr,
    tls: Arc<ClientConfig>,
    secret_id: String,
    secret_key: SecretBytes,
    timeout: Duration,
    breaker: Mutex<Breaker>,
    started: Instant,
}

impl Tencent {
    /// From `[kyc.tencent]`; the secrets are read now.
    pub fn new(cfg: &TencentConfig, timeout: Duration) -> Result<Tencent, KycServiceError> {
        let bad = |what: &str, e: &dyn std::fmt::Display| KycServiceError::Config(format!("[kyc.tencent] {what}: {e}"));
        let secret = |r: &Option<vbank_config::SecretRef>, what: &str| {
            let r = r.as_ref().ok_or_else(|| KycServiceError::Config(format!("[kyc.tencent] {what} is not set")))?;
            r.load().map(|s| SecretBytes::new(s.expose().trim_ascii().to_vec())).map_err(|e| bad(what, &e))
        };
        let secret_id = String::from_utf8(secret(&cfg.secret_id, "secret_id")?.expose().to_vec())
            .map_err(|e| bad("secret_id", &e))?;
        let secret_key = secret(&cfg.secret_key, "secret_key")?;
        let addr = match cfg.connect {
            Some(a) => a,
            None => (cfg.host.as_str(), 443)
                .to_socket_addrs()
                .map_err(|e| bad("host", &e))?
                .next()
                .ok_or_else(|| bad("host", &"no address"))?,
        };
        let certs = vbank_tls::load_certs(&cfg.ca).map_err(|e| bad("ca", &e))?;
        let mut roots = rustls::RootCertStore::empty();
        for c in certs {
            roots.add(c).map_err(|e| bad("ca", &e))?;
        }
        let tls = ClientConfig::builder_with_provider(vbank_tls::provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| bad("tls", &e))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Tencent {
            host: cfg.host.clone(),
            addr,
            tls: Arc::new(tls),
            secret_id,
            secret_key,
            timeout,
            breaker: Mutex::new(Breaker::new(BREAKER.0, BREAKER.1)),
            started: Instant::now(),
        })
    }

    /// Check `name` and `id_number` (IdCardVerification).
    pub async fn verify(&self, name: &str, id_number: &str) -> Decision {
        let mut last = None;
        for _ in 0..ATTEMPTS {
            if !self.breaker.lock().unwrap_or_else(|p| p.into_inner()).allow(self.started.elapsed()) {
                return Decision {
                    verdict: Verdict::Unavailable("the vendor failed repeatedly; paused for 30 s".into()),
                    billed: false,
                    retryable: false,
                    request_id: None,
                };
            }
            let d = self.once(name, id_number).await;
            let failed = matches!(d.verdict, Verdict::Unavailable(_) | Verdict::Misconfigured(_));
            self.breaker.lock().unwrap_or_else(|p| p.into_inner()).record(failed, self.started.elapsed());
            if !d.retryable || d.billed {
                return d;
            }
            last = Some(d);
        }
        last.unwrap_or(Decision {
            verdict: Verdict::Unavailable("no attempt was made".into()),
            billed: false,
            retryable: false,
            request_id: None,
        })
    }

    async fn once(&self, name: &str, id_number: &str) -> Decision {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let key = String::from_utf8_lossy(self.secret_key.expose()).into_owned();
        let (headers, body) =
            vendor::tencent_id_card_verification_request(&self.host, &self.secret_id, &key, name, id_number, now);
        drop(zeroize::Zeroizing::new(key));
        let headers: Vec<(&str, &str)> =
            headers.iter().filter(|(k, _)| k != "Host").map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let fut = async {
            let mut c = Connection::open(self.tls.clone(), self.addr, &self.host, self.timeout).await?;
            c.request_with(Method::POST, "/", &headers, Some(body.into())).await
        };
        match tokio::time::timeout(self.timeout, fut).await {
            Ok(Ok((status, _, body))) => vendor::tencent_id_card_verification(status.as_u16(), &body),
            // Connection refused or TLS failure: nothing reached the vendor, so nothing was billed.
            Ok(Err(e)) => Decision {
                verdict: Verdict::Unavailable(format!("cannot reach the vendor: {e}")),
                billed: false,
                retryable: true,
                request_id: None,
            },
            // The request may have been answered (and billed) after we gave up: never retried.
            Err(_) => Decision {
                verdict: Verdict::Unavailable(format!("no answer within {} s", self.timeout.as_secs())),
                billed: true,
                retryable: false,
                request_id: None,
            },
        }
    }
}
