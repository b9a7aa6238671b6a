//! A conformance simulator of Tencent Cloud FaceID `IdCardVerification` (API 3.0), without IO: the vendor's
//! documented wire protocol — TC3-HMAC-SHA256 signatures checked (unknown SecretId, wrong signature, a timestamp
//! more than five minutes off), a per-action QPS limit, every documented result — and faults injected on demand
//! (5xx, an error envelope in a 200, a garbled body, a stall). Tests and DR drills talk to it as they would to the
//! vendor; the `vbank kyc simulate` edge serves it over HTTPS.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use serde_json::{Value, json};

use crate::tc3;

/// A fault to inject into the next answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Answer with this HTTP status and an empty body.
    Status(u16),
    /// Answer 200 with this error code in the envelope.
    Error(String),
    /// Answer 200 with this `Result` (e.g. `-4` the authority's database failed, `-7` the daily quota).
    Result(String),
    /// Answer 200 with a truncated body.
    Garbled,
    /// Hold the answer this long first (the edge sleeps; a client with a shorter timeout gives up).
    Stall(Duration),
}

/// An answer: status, body, and how long the edge waits before sending it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// HTTP status.
    pub status: u16,
    /// JSON body.
    pub body: Vec<u8>,
    /// Wait this long first.
    pub stall: Option<Duration>,
}

/// The simulated vendor.
#[derive(Debug)]
pub struct Simulator {
    host: String,
    secrets: HashMap<String, String>,
    qps: u32,
    second: (u64, u32),
    people: HashMap<String, String>,
    faults: VecDeque<Fault>,
    requests: u64,
}

/// Documented: 100 requests a second for IdCardVerification.
pub const QPS: u32 = 100;
/// Documented: a signature older or newer than five minutes is refused.
pub const MAX_SKEW_S: u64 = 300;

impl Simulator {
    /// A simulator answering at `host` for one SecretId/SecretKey pair.
    pub fn new(host: &str, secret_id: &str, secret_key: &str) -> Simulator {
        Simulator {
            host: host.into(),
            secrets: HashMap::from([(secret_id.to_string(), secret_key.to_string())]),
            qps: QPS,
            second: (0, 0),
            people: HashMap::new(),
            faults: VecDeque::new(),
            requests: 0,
        }
    }

    /// Lower the QPS limit (to test it without a hundred requests).
    pub fn with_qps(mut self, qps: u32) -> Simulator {
        self.qps = qps;
        self
    }

    /// A person in the simulated authority's records.
    pub fn add_person(&mut self, id_number: &str, name: &str) {
        self.people.insert(id_number.to_string(), name.to_string());
    }

    /// Inject `fault` into the next answer (faults queue up).
    pub fn inject(&mut self, fault: Fault) {
        self.faults.push_back(fault);
    }

    fn envelope(&self, response: Value) -> Reply {
        let mut r = response;
        r["RequestId"] = format!("sim-{:08}", self.requests).into();
        Reply { status: 200, body: json!({"Response": r}).to_string().into_bytes(), stall: None }
    }

    fn error(&self, code: &str, message: &str) -> Reply {
        self.envelope(json!({"Error": {"Code": code, "Message": message}}))
    }

    /// Answer one request: `headers` as received (names in any case), `body` as received, `now_s` Unix seconds.
    pub fn handle(&mut self, headers: &[(String, String)], body: &[u8], now_s: u64) -> Reply {
        self.requests += 1;
        let mut stall = None;
        while let Some(f) = self.faults.pop_front() {
            match f {
                Fault::Stall(d) => stall = Some(d),
                Fault::Status(s) => return Reply { status: s, body: Vec::new(), stall },
                Fault::Error(code) => return Reply { stall, ..self.error(&code, "injected") },
                Fault::Result(r) => {
                    return Reply { stall, ..self.envelope(json!({"Result": r, "Description": "injected"})) };
                }
                Fault::Garbled => {
                    let mut b = self.envelope(json!({"Result": "0"})).body;
                    b.truncate(b.len() / 2);
                    return Reply { status: 200, body: b, stall };
                }
            }
            if stall.is_some() && self.faults.is_empty() {
                break;
            }
        }
        let reply = self.answer(headers, body, now_s);
        Reply { stall, ..reply }
    }

    fn answer(&mut self, headers: &[(String, String)], body: &[u8], now_s: u64) -> Reply {
        let header = |name: &str| {
            headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str()).unwrap_or_default()
        };
        let Ok(timestamp) = header("X-TC-Timestamp").parse::<u64>() else {
            return self.error("MissingParameter", "X-TC-Timestamp");
        };
        if timestamp.abs_diff(now_s) > MAX_SKEW_S {
            return self.error("AuthFailure.SignatureExpire", "the signature is more than 5 minutes off");
        }
        let auth = header("Authorization");
        let field = |name: &str| auth.split([' ', ',']).find_map(|p| p.trim().strip_prefix(name)).unwrap_or_default();
        let credential: Vec<&str> = field("Credential=").split('/').collect();
        let [secret_id, date, service, "tc3_request"] = credential[..] else {
            return self.error("AuthFailure.SignatureFailure", "malformed Authorization");
        };
        let Some(key) = self.secrets.get(secret_id) else {
            return self.error("AuthFailure.SecretIdNotFound", "unknown SecretId");
        };
        let request =
            tc3::Request { service, host: header("Host"), content_type: header("Content-Type"), body, timestamp };
        let good = field("SignedHeaders=") == tc3::SIGNED_HEADERS
            && date == tc3::utc_date(timestamp)
            && request.host == self.host
            && tc3::signature(key, &request) == field("Signature=");
        if !good {
            return self.error("AuthFailure.SignatureFailure", "the signature does not match");
        }
        if header("X-TC-Action") != "IdCardVerification" || service != "faceid" {
            return self.error("InvalidAction", "this simulator answers faceid IdCardVerification");
        }
        if self.second.0 != now_s {
            self.second = (now_s, 0);
        }
        self.second.1 += 1;
        if self.second.1 > self.qps {
            return self.error("RequestLimitExceeded", "too many requests this second");
        }
        let Ok(v) = serde_json::from_slice::<Value>(body) else {
            return self.error("InvalidParameter", "the body is not JSON");
        };
        let (id, name) = (v["IdCard"].as_str().unwrap_or_default(), v["Name"].as_str().unwrap_or_default());
        let today = crate::id::Date::from_unix(now_s);
        let (result, description) = if crate::id::parse(id, today).is_err() {
            ("-2", "非法身份证号（长度、校验位等不正确）")
        } else if name.trim().is_empty() || name.chars().count() > 30 || name.chars().any(|c| c.is_ascii_digit()) {
            ("-3", "非法姓名（长度、格式等不正确）")
        } else {
            match self.people.get(id) {
                Some(n) if n == name => ("0", "姓名和身份证号一致"),
                Some(_) => ("-1", "姓名和身份证号不一致"),
                None => ("-5", "库中无此身份证记录"),
            }
        };
        self.envelope(json!({"Result": result, "Description": description}))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vendor::{
        TENCENT_FACEID_HOST as HOST, Verdict, tencent_id_card_verification, tencent_id_card_verification_request,
    };

    const NOW: u64 = 1_795_776_000;

    /// The adapter's own request, as it would send it.
    fn signed(key: &str, id: &str, name: &str, ts: u64) -> (Vec<(String, String)>, Vec<u8>) {
        tencent_id_card_verification_request(HOST, "AKIDsim", key, name, id, ts)
    }

    fn sim() -> Simulator {
        let mut s = Simulator::new(HOST, "AKIDsim", "sim-secret");
        s.add_person("11010519491231002X", "张三");
        s
    }

    fn ask(s: &mut Simulator, key: &str, id: &str, name: &str, ts: u64) -> crate::vendor::Decision {
        let (h, b) = signed(key, id, name, ts);
        let r = s.handle(&h, &b, NOW);
        tencent_id_card_verification(r.status, &r.body)
    }

    #[test]
    fn the_adapters_decisions_cover_every_result_the_simulator_gives() {
        let mut s = sim();
        assert_eq!(ask(&mut s, "sim-secret", "11010519491231002X", "张三", NOW).verdict, Verdict::Match);
        assert_eq!(ask(&mut s, "sim-secret", "11010519491231002X", "李四", NOW).verdict, Verdict::Mismatch);
        assert_eq!(ask(&mut s, "sim-secret", "440524188001010014", "王五", NOW).verdict, Verdict::NoRecord);
        assert!(matches!(ask(&mut s, "sim-secret", "11204416541220243X", "张三", NOW).verdict, Verdict::BadInput(_)));
        assert!(matches!(ask(&mut s, "sim-secret", "11010519491231002X", "", NOW).verdict, Verdict::BadInput(_)));
    }

    #[test]
    fn signatures_are_checked_as_the_vendor_does() {
        let mut s = sim();
        let d = ask(&mut s, "wrong-secret", "11010519491231002X", "张三", NOW);
        assert!(matches!(d.verdict, Verdict::Misconfigured(ref m) if m.contains("SignatureFailure")), "{d:?}");
        let d = ask(&mut s, "sim-secret", "11010519491231002X", "张三", NOW - 301);
        assert!(matches!(d.verdict, Verdict::Misconfigured(ref m) if m.contains("SignatureExpire")), "{d:?}");
        let (mut h, b) = signed("sim-secret", "11010519491231002X", "张三", NOW);
        h.retain(|(k, _)| k != "Authorization");
        h.push(("Authorization".into(), "TC3-HMAC-SHA256 Credential=AKIDnobody/2026-11-27/faceid/tc3_request".into()));
        let r = s.handle(&h, &b, NOW);
        assert!(String::from_utf8_lossy(&r.body).contains("AuthFailure.SecretIdNotFound"));
        // The body is signed: changing it after signing fails.
        let (h, _) = signed("sim-secret", "11010519491231002X", "张三", NOW);
        let forged = json!({"IdCard": "11010519491231002X", "Name": "李四"}).to_string();
        let r = s.handle(&h, forged.as_bytes(), NOW);
        assert!(String::from_utf8_lossy(&r.body).contains("SignatureFailure"));
    }

    #[test]
    fn the_qps_limit_answers_request_limit_exceeded_and_is_retryable() {
        let mut s = sim().with_qps(2);
        for _ in 0..2 {
            assert_eq!(ask(&mut s, "sim-secret", "11010519491231002X", "张三", NOW).verdict, Verdict::Match);
        }
        let d = ask(&mut s, "sim-secret", "11010519491231002X", "张三", NOW);
        assert!(d.retryable && !d.billed, "{d:?}");
    }

    #[test]
    fn injected_faults_come_out_as_documented_failures() {
        let mut s = sim();
        s.inject(Fault::Status(502));
        assert!(ask(&mut s, "sim-secret", "11010519491231002X", "张三", NOW).retryable);
        s.inject(Fault::Error("InternalError".into()));
        assert!(ask(&mut s, "sim-secret", "11010519491231002X", "张三", NOW).retryable);
        s.inject(Fault::Result("-7".into()));
        let quota = ask(&mut s, "sim-secret", "11010519491231002X", "张三", NOW);
        assert!(matches!(quota.verdict, Verdict::Unavailable(_)) && !quota.retryable);
        s.inject(Fault::Garbled);
        let garbled = ask(&mut s, "sim-secret", "11010519491231002X", "张三", NOW);
        assert!(garbled.billed && !garbled.retryable, "maybe billed: never retried");
        s.inject(Fault::Stall(Duration::from_secs(30)));
        let (h, b) = signed("sim-secret", "11010519491231002X", "张三", NOW);
        let r = s.handle(&h, &b, NOW);
        assert_eq!(r.stall, Some(Duration::from_secs(30)));
        assert_eq!(tencent_id_card_verification(r.status, &r.body).verdict, Verdict::Match);
    }
}
