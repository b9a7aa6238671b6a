//! What a vendor's answer to a citizen-identity check (联网核查: name + ID number) means, without IO: the verdict a
//! teller acts on, whether the check was billed, and whether it may be tried again automatically. A billed check is
//! never retried automatically, and neither is an answer that might have been billed (a garbled 200).
//! [`Breaker`] stops calling a vendor that keeps failing, so tellers get a clear message at once instead of a wait.

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

fn decided(verdict: Verdict, billed: bool, retryable: bool, request_id: Option<String>) -> Decision {
    Decision { verdict, billed, retryable, request_id }
}

/// Tencent Cloud FaceID's endpoint host.
pub const TENCENT_FACEID_HOST: &str = "faceid.tencentcloudapi.com";

/// A Tencent Cloud FaceID `IdCardVerification` request (API 3.0), signed with TC3-HMAC-SHA256 at `timestamp`: the
/// headers to send (with `Host`) and the JSON body. `host` is the vendor's, or the simulator's in tests and drills.
pub fn tencent_id_card_verification_request(
    host: &str,
    secret_id: &str,
    secret_key: &str,
    name: &str,
    id_number: &str,
    timestamp: u64,
) -> (Vec<(String, String)>, Vec<u8>) {
    let body = serde_json::json!({"IdCard": id_number, "Name": name}).to_string().into_bytes();
    let content_type = "application/json; charset=utf-8";
    let r = crate::tc3::Request { service: "faceid", host, content_type, body: &body, timestamp };
    let headers = [
        ("Host", host.to_string()),
        ("Content-Type", content_type.to_string()),
        ("X-TC-Action", "IdCardVerification".to_string()),
        ("X-TC-Version", "2018-03-01".to_string()),
        ("X-TC-Timestamp", timestamp.to_string()),
        ("Authorization", crate::tc3::authorization(secret_id, secret_key, &r)),
    ];
    (headers.into_iter().map(|(k, v)| (k.to_string(), v)).collect(), body)
}

/// Tencent Cloud FaceID `IdCardVerification` (API 3.0): HTTP status and body.
pub fn tencent_id_card_verification(status: u16, body: &[u8]) -> Decision {
    if (500..600).contains(&status) || status == 429 {
        return decided(Verdict::Unavailable(format!("HTTP {status}")), false, true, None);
    }
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) else {
        // It may have been answered and billed: never retried automatically.
        return decided(Verdict::Unavailable("an unreadable answer".into()), true, false, None);
    };
    let r = &v["Response"];
    let request_id = r["RequestId"].as_str().map(str::to_string);
    if let Some(code) = r["Error"]["Code"].as_str() {
        let message = r["Error"]["Message"].as_str().unwrap_or_default().to_string();
        return match code {
            "RequestLimitExceeded" | "InternalError" | "ResourceUnavailable" => {
                decided(Verdict::Unavailable(code.into()), false, true, request_id)
            }
            c if c.starts_with("AuthFailure") => {
                decided(Verdict::Misconfigured(format!("{c}: {message}")), false, false, request_id)
            }
            c if c.starts_with("InvalidParameter") => {
                decided(Verdict::BadInput(format!("{c}: {message}")), false, false, request_id)
            }
            c => decided(Verdict::Unavailable(format!("{c}: {message}")), false, false, request_id),
        };
    }
    let Some(result) = r["Result"].as_str() else {
        return decided(Verdict::Unavailable("an answer without a result".into()), true, false, request_id);
    };
    match result {
        "0" => decided(Verdict::Match, true, false, request_id),
        "-1" => decided(Verdict::Mismatch, true, false, request_id),
        "-2" => decided(Verdict::BadInput("the ID number is malformed".into()), false, false, request_id),
        "-3" => decided(Verdict::BadInput("the name is malformed".into()), false, false, request_id),
        "-5" => decided(Verdict::NoRecord, false, false, request_id),
        "-4" => decided(Verdict::Unavailable("the authority's database failed".into()), false, true, request_id),
        "-6" => decided(Verdict::Unavailable("the authority is being upgraded".into()), false, false, request_id),
        "-7" => decided(Verdict::Unavailable("today's quota is used up".into()), false, false, request_id),
        other => decided(Verdict::Unavailable(format!("unknown result {other}")), true, false, request_id),
    }
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

    fn ok(result: &str) -> Decision {
        let body = format!(r#"{{"Response":{{"Result":"{result}","Description":"x","RequestId":"req-1"}}}}"#);
        tencent_id_card_verification(200, body.as_bytes())
    }

    #[test]
    fn every_documented_result_is_decided() {
        assert_eq!((ok("0").verdict, ok("0").billed), (Verdict::Match, true));
        assert_eq!((ok("-1").verdict, ok("-1").billed), (Verdict::Mismatch, true));
        assert!(matches!(ok("-2").verdict, Verdict::BadInput(_)));
        assert!(matches!(ok("-3").verdict, Verdict::BadInput(_)));
        assert_eq!(ok("-5").verdict, Verdict::NoRecord);
        for r in ["-4", "-6", "-7"] {
            assert!(matches!(ok(r).verdict, Verdict::Unavailable(_)), "{r}");
            assert!(!ok(r).billed, "{r} is not billed");
        }
        assert!(ok("-4").retryable && !ok("-7").retryable, "a quota does not come back by retrying");
        assert_eq!(ok("0").request_id.as_deref(), Some("req-1"));
    }

    #[test]
    fn billed_or_possibly_billed_answers_are_never_retried() {
        for d in [ok("0"), ok("-1"), tencent_id_card_verification(200, b"{\"Resp"), ok("9")] {
            assert!(d.billed && !d.retryable, "{d:?}");
        }
    }

    #[test]
    fn errors_and_transport_failures() {
        let err = |code: &str| {
            let body = format!(r#"{{"Response":{{"Error":{{"Code":"{code}","Message":"m"}},"RequestId":"r"}}}}"#);
            tencent_id_card_verification(200, body.as_bytes())
        };
        assert!(matches!(err("AuthFailure.SignatureFailure").verdict, Verdict::Misconfigured(_)));
        assert!(err("RequestLimitExceeded").retryable);
        assert!(matches!(err("InvalidParameterValue.IdCard").verdict, Verdict::BadInput(_)));
        let down = tencent_id_card_verification(503, b"");
        assert!(down.retryable && !down.billed);
        assert!(down.message().contains("联网核查服务暂不可用"));
    }

    #[test]
    fn the_breaker_opens_after_failures_and_tries_again_after_cooling_down() {
        let s = Duration::from_secs;
        let mut b = Breaker::new(3, s(30));
        for t in 0..3 {
            assert!(b.allow(s(t)));
            b.record(true, s(t));
        }
        assert!(!b.allow(s(10)), "open");
        assert!(b.allow(s(33)), "half open: one trial");
        b.record(true, s(33));
        assert!(!b.allow(s(34)), "the trial failed: open again");
        assert!(b.allow(s(64)));
        b.record(false, s(64));
        assert!(b.allow(s(65)) && b.allow(s(66)), "closed after a success");
    }
}
