//! What a vendor's answer to a citizen-identity check (联网核查: name + ID number) means, without IO: the verdict a
//! teller acts on, whether the check was billed, and whether it may be tried again automatically. A billed check is
//! never retried automatically, and neither is an answer that might have been billed (a garbled 200).
//! [`Breaker`] stops calling a vendor that keeps failing, so tellers get a clear message at once instead of a wait.
//!
//! Each vendor's wire protocol is an [`IdentityProtocol`]: the signed request to send, and what its answer means. The
//! service's one HTTPS adapter runs any of them with the same deadline, retry rule and breaker.
//!
//! - [`tencent`]: Tencent Cloud FaceID `IdCardVerification` (API 3.0, TC3-HMAC-SHA256; SM4-GCM + SM2 field
//!   encryption on request).
//! - [`alibaba`]: Alibaba Cloud `Id2MetaVerify` (OpenAPI V3, ACS3-HMAC-SHA256).
//! - [`nciic`]: the NCIIC (公民身份信息系统) SOAP interface, as banks reach it through PBoC channels.
//! - [`baidu`]: Baidu AI Cloud's OAuth token, ID-card OCR and `person/verify` (face against the authority's photo);
//!   not an identity check on its own, so not an [`IdentityProtocol`]. [`tencent_cards`]: Tencent's `IDCardOCR` and
//!   `ImageRecognitionV2`, the same two capabilities.

pub mod alibaba;
pub mod baidu;
pub mod nciic;
pub mod tencent;
pub mod tencent_cards;

use std::time::Duration;

/// The outcome of an identity check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// 一致: the name and number match the authority's record.
    Match,
    /// 不一致: they do not.
    Mismatch,
    /// 库中无此号: the authority has no such number.
    NoRecord,
    /// The input was refused (a malformed number or name): fix it and ask again.
    BadInput(String),
    /// The check could not be made now (the authority or vendor is down, busy, or over quota).
    Unavailable(String),
    /// The vendor refused us (credentials, configuration): bank IT must act.
    Misconfigured(String),
}

/// A vendor's answer, decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// What it means.
    pub verdict: Verdict,
    /// The vendor charged for it (or may have: the answer could not be read).
    pub billed: bool,
    /// It may be tried again automatically (unbilled, transient).
    pub retryable: bool,
    /// The vendor's request id, for the attestation and for support.
    pub request_id: Option<String>,
    /// The authority's photo of the citizen, when the answer carries one (NCIIC's `xp`): shown to the teller, never
    /// kept.
    pub photo: Option<Vec<u8>>,
}

impl Decision {
    /// What the teller's console says, in Chinese and English.
    pub fn message(&self) -> String {
        match &self.verdict {
            Verdict::Match => "联网核查一致 · The identity matches the authority's record".into(),
            Verdict::Mismatch => {
                "联网核查不一致，请核对姓名与证件号码 · Name and number do not match: check both".into()
            }
            Verdict::NoRecord => {
                "库中无此号，请核对证件号码或转人工复核 · No such number: check it or refer for manual review".into()
            }
            Verdict::BadInput(why) => format!("请核对输入：{why} · Check the input: {why}"),
            Verdict::Unavailable(why) => format!(
                "联网核查服务暂不可用，请稍后重试或转人工复核 · The identity check is unavailable ({why}); try again later or refer for manual review"
            ),
            Verdict::Misconfigured(why) => {
                format!("核查服务配置有误，请联系科技部门 · The identity check is misconfigured ({why}): call bank IT")
            }
        }
    }
}

impl Decision {
    /// A decision reached without asking a vendor (bad input found locally, no vendor configured, the breaker open):
    /// unbilled, not retried.
    pub fn local(verdict: Verdict) -> Decision {
        decided(verdict, false, false, None)
    }
}

pub(crate) fn decided(verdict: Verdict, billed: bool, retryable: bool, request_id: Option<String>) -> Decision {
    Decision { verdict, billed, retryable, request_id, photo: None }
}

/// One HTTPS request to a vendor, built without IO.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpRequest {
    /// The path and query, e.g. `/` or `/nciic_ws/services/NciicServices`.
    pub path: String,
    /// Headers to send besides `Host` (the adapter sends the configured host).
    pub headers: Vec<(String, String)>,
    /// The body (`POST`).
    pub body: Vec<u8>,
}

/// An ID card as a vendor read it: the fields by their Chinese names (姓名, 性别, 民族, 出生, 住址, 公民身份号码;
/// 签发机关, 有效期限 or 签发日期 and 失效日期), and what the vendor warns of (copy, screen, temporary card, blur).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Card {
    /// Fields by their Chinese names.
    pub fields: Vec<(String, String)>,
    /// Warnings, in words a teller acts on.
    pub warnings: Vec<String>,
}

impl Card {
    /// A field by its Chinese name, when it is not empty.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.fields.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str()).filter(|v| !v.is_empty())
    }
}

/// A vendor's citizen-identity check (name + number → 一致 / 不一致 / 库中无此号), without IO.
pub trait IdentityProtocol: Send + Sync {
    /// What the attestation names as the engine, e.g. `tencent faceid IdCardVerification`.
    fn engine(&self) -> &'static str;
    /// The signed request for `name` and `id_number` at Unix time `now_s`.
    fn request(&self, name: &str, id_number: &str, now_s: u64) -> Result<HttpRequest, String>;
    /// What the vendor's answer (HTTP status and body) means.
    fn decide(&self, status: u16, body: &[u8]) -> Decision;
}

/// A circuit breaker per vendor: after `threshold` failures in a row it opens for `cool_down`, then lets one trial
/// through; success closes it.
#[derive(Debug, Clone)]
pub struct Breaker {
    threshold: u32,
    cool_down: Duration,
    failures: u32,
    open_until: Option<Duration>,
}

impl Breaker {
    /// A closed breaker.
    pub fn new(threshold: u32, cool_down: Duration) -> Breaker {
        Breaker { threshold, cool_down, failures: 0, open_until: None }
    }

    /// Whether a call may go at `now` (time since any fixed start).
    pub fn allow(&mut self, now: Duration) -> bool {
        match self.open_until {
            Some(until) if now < until => false,
            Some(_) => {
                // Half open: one trial; a failure opens it again at once.
                self.open_until = None;
                self.failures = self.threshold.saturating_sub(1);
                true
            }
            None => true,
        }
    }

    /// Whether it refuses calls at `now` (for readiness: the vendor is failing).
    pub fn is_open(&self, now: Duration) -> bool {
        self.open_until.is_some_and(|until| now < until)
    }

    /// The call's outcome: `failed` for transport errors, 5xx and unavailable verdicts.
    pub fn record(&mut self, failed: bool, now: Duration) {
        if !failed {
            self.failures = 0;
            return;
        }
        self.failures += 1;
        if self.failures >= self.threshold {
            self.open_until = Some(now + self.cool_down);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_breaker_opens_after_failures_and_tries_again_after_cooling_down() {
        let s = Duration::from_secs;
        let mut b = Breaker::new(3, s(30));
        for t in 0..3 {
            assert!(b.allow(s(t)));
            b.record(true, s(t));
        }
        assert!(!b.allow(s(10)), "open");
        assert!(b.is_open(s(10)));
        assert!(b.allow(s(33)), "half open: one trial");
        b.record(true, s(33));
        assert!(!b.allow(s(34)), "the trial failed: open again");
        assert!(b.allow(s(64)));
        b.record(false, s(64));
        assert!(b.allow(s(65)) && b.allow(s(66)) && !b.is_open(s(66)), "closed after a success");
    }
}
