//! The vendors that read ID cards and compare faces (`[kyc] ocr`, `face_compare`): Tencent (`IDCardOCR`,
//! `ImageRecognitionV2`) and Baidu (idcard OCR, `person/verify`), behind one type, each call under the vendor rule.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use vbank_config::KycConfig;
use vbank_kyc::vendor::tencent::Tencent;
use vbank_kyc::vendor::{Card, Decision, Verdict, tencent_cards};

use crate::KycServiceError;
use crate::baidu::Baidu;
use crate::vendor::{Endpoint, Guard, load_secret};

/// Tencent's OCR and face check: two hosts, one account.
pub struct TencentCards {
    protocol: Tencent,
    ocr: Endpoint,
    faceid: Endpoint,
    guard: Guard,
}

/// A vendor that reads cards and compares faces.
pub enum CardVendor {
    /// Tencent Cloud.
    Tencent(TencentCards),
    /// Baidu AI Cloud.
    Baidu(Baidu),
}

fn now_s() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl CardVendor {
    /// `vendor` (`tencent` or `baidu`) from its `[kyc.{vendor}]` section; its secrets are read now.
    pub fn new(cfg: &KycConfig, vendor: &str) -> Result<CardVendor, KycServiceError> {
        let timeout = Duration::from_secs(u64::from(cfg.timeout_s));
        match vendor {
            "baidu" => Ok(CardVendor::Baidu(Baidu::new(cfg)?)),
            "tencent" => {
                let t = &cfg.tencent;
                let id = load_secret(&t.key_id, vendor, "secret_id")?;
                let id = String::from_utf8_lossy(id.expose()).into_owned();
                let key = load_secret(&t.secret, vendor, "secret_key")?;
                Ok(CardVendor::Tencent(TencentCards {
                    protocol: Tencent::new(&t.host, &id, key, None).with_ocr_host(&t.ocr_host),
                    ocr: Endpoint::for_host(t, &t.ocr_host, vendor, timeout)?,
                    faceid: Endpoint::new(t, vendor, timeout)?,
                    guard: Guard::default(),
                }))
            }
            other => Err(KycServiceError::Config(format!("[kyc] ocr/face_compare: no card vendor {other:?}"))),
        }
    }

    /// `tencent` or `baidu`.
    pub fn name(&self) -> &'static str {
        match self {
            CardVendor::Tencent(_) => "tencent",
            CardVendor::Baidu(_) => "baidu",
        }
    }

    /// The engines the attestations name.
    pub fn engines(&self) -> (&'static str, &'static str) {
        match self {
            CardVendor::Tencent(_) => ("tencent ocr IDCardOCR", "tencent faceid ImageRecognitionV2"),
            CardVendor::Baidu(_) => ("baidu ocr idcard", "baidu face person/verify"),
        }
    }

    /// The score at and above which the vendor documents the same person.
    pub fn same_person(&self) -> f64 {
        match self {
            CardVendor::Tencent(_) => tencent_cards::SAME_PERSON,
            CardVendor::Baidu(_) => vbank_kyc::vendor::baidu::SAME_PERSON,
        }
    }

    /// Whether its breaker is open.
    pub fn is_paused(&self) -> bool {
        match self {
            CardVendor::Tencent(t) => t.guard.is_open(),
            CardVendor::Baidu(b) => b.is_paused(),
        }
    }

    /// Read an ID card's `side` (`front` or `back`) from `image`.
    pub async fn read_card(&self, image: &[u8], side: &str) -> Result<(Card, Option<String>), Decision> {
        match self {
            CardVendor::Baidu(b) => b.read_card(image, side).await,
            CardVendor::Tencent(t) => {
                t.guard
                    .run(|| async {
                        let (status, body) = t.ocr.send(&t.protocol.ocr_request(image, side, now_s())).await?;
                        tencent_cards::ocr(status, &body)
                    })
                    .await
            }
        }
    }

    /// The live face in `image` against the authority's photo of `name`/`id_number`: the score (0–100).
    pub async fn verify_face(
        &self,
        image: &[u8],
        name: &str,
        id_number: &str,
    ) -> Result<(f64, Option<String>), Decision> {
        match self {
            CardVendor::Baidu(b) => b.verify_face(image, name, id_number).await,
            CardVendor::Tencent(t) => {
                t.guard
                    .run(|| async {
                        let r = t.protocol.face_request(image, name, id_number, now_s());
                        let (status, body) = t.faceid.send(&r).await?;
                        tencent_cards::face(status, &body)
                    })
                    .await
            }
        }
    }
}

/// Whether a failed vendor call leaves the local engine's answer to stand (it is the vendor that failed, not the
/// customer's card or face).
pub fn vendor_failed(d: &Decision) -> bool {
    matches!(d.verdict, Verdict::Unavailable(_) | Verdict::Misconfigured(_))
}
