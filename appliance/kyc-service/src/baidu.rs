//! Baidu AI Cloud's IO: the access token (fetched on first use, kept until shortly before it expires, fetched again
//! once when the vendor calls it stale), ID-card OCR and `person/verify`, each under the vendor rule (deadline,
//! bounded retry of unbilled transient failures, breaker).

use std::time::{Duration, Instant};

use vbank_config::KycConfig;
use vbank_crypto::SecretBytes;
use vbank_kyc::vendor::Card;
use vbank_kyc::vendor::baidu::{self, Answer};
use vbank_kyc::vendor::{Decision, HttpRequest, Verdict};
use zeroize::Zeroizing;

use crate::KycServiceError;
use crate::vendor::{Endpoint, Guard, load_secret};

/// A token is fetched again this long before the vendor says it expires.
const EARLY: Duration = Duration::from_secs(3600);

/// A configured Baidu AI Cloud application.
pub struct Baidu {
    endpoint: Endpoint,
    api_key: Zeroizing<String>,
    secret_key: SecretBytes,
    token: tokio::sync::Mutex<Option<(Zeroizing<String>, Instant)>>,
    guard: Guard,
}

impl Baidu {
    /// From `[kyc.baidu]`; the secrets are read now.
    pub fn new(cfg: &KycConfig) -> Result<Baidu, KycServiceError> {
        let timeout = Duration::from_secs(u64::from(cfg.timeout_s));
        let api_key = load_secret(&cfg.baidu.key_id, "baidu", "api_key")?;
        let api_key = Zeroizing::new(String::from_utf8_lossy(api_key.expose()).into_owned());
        Ok(Baidu {
            endpoint: Endpoint::new(&cfg.baidu, "baidu", timeout)?,
            api_key,
            secret_key: load_secret(&cfg.baidu.secret, "baidu", "secret_key")?,
            token: tokio::sync::Mutex::default(),
            guard: Guard::default(),
        })
    }

    /// Whether its breaker is open.
    pub fn is_paused(&self) -> bool {
        self.guard.is_open()
    }

    async fn token(&self, fresh: bool) -> Result<Zeroizing<String>, Decision> {
        let mut held = self.token.lock().await;
        if let Some((t, _)) = held.as_ref().filter(|(_, until)| !fresh && Instant::now() < *until) {
            return Ok(t.clone());
        }
        let secret = Zeroizing::new(String::from_utf8_lossy(self.secret_key.expose()).into_owned());
        let r = baidu::token_request(&self.api_key, &secret);
        let t = match self.endpoint.send(&r).await {
            Ok((status, body)) => baidu::token(status, &body)?,
            Err(d) => return Err(d),
        };
        let life = Duration::from_secs(t.expires_in).saturating_sub(EARLY).max(Duration::from_secs(60));
        let token = Zeroizing::new(t.access_token);
        *held = Some((token.clone(), Instant::now() + life));
        Ok(token)
    }

    async fn ask<T>(
        &self,
        build: impl Fn(&str) -> HttpRequest,
        parse: impl Fn(u16, &[u8]) -> Answer<T>,
    ) -> Result<(T, Option<String>), Decision> {
        self.guard
            .run(|| async {
                for fresh in [false, true] {
                    let token = self.token(fresh).await?;
                    let answer = match self.endpoint.send(&build(&token)).await {
                        Ok((status, body)) => parse(status, &body),
                        Err(d) => Answer::Failed(d),
                    };
                    match answer {
                        Answer::Done(t, log_id) => return Ok((t, log_id)),
                        Answer::Failed(d) => return Err(d),
                        Answer::TokenExpired => continue,
                    }
                }
                Err(Decision::local(Verdict::Misconfigured("a fresh token was refused too".into())))
            })
            .await
    }

    /// Read an ID card's `side` (`front` or `back`) from `image`.
    pub async fn read_card(&self, image: &[u8], side: &str) -> Result<(Card, Option<String>), Decision> {
        self.ask(|t| baidu::idcard_request(t, image, side), baidu::idcard).await
    }

    /// The live face in `image` against the authority's photo of `name`/`id_number`: the score (0–100).
    pub async fn verify_face(
        &self,
        image: &[u8],
        name: &str,
        id_number: &str,
    ) -> Result<(f64, Option<String>), Decision> {
        self.ask(|t| baidu::verify_request(t, image, name, id_number), baidu::verify).await
    }
}
