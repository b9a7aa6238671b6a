//! A conformance simulator of the identity vendors, without IO: each vendor's documented wire protocol — Tencent
//! FaceID (TC3-HMAC-SHA256, SM4-GCM field encryption), Alibaba Cloud `Id2MetaVerify` (ACS3-HMAC-SHA256, nonces),
//! the NCIIC SOAP interface (licence), Baidu's OAuth token, ID-card OCR and `person/verify` — with signatures
//! checked, a per-action QPS limit, every documented result and error, and faults injected on demand (5xx, an error
//! envelope in a 200, a garbled body, a stall). Tests and DR drills talk to it as they would to the vendors; the
//! `vbank kyc simulate` edge serves it over HTTPS, telling the vendors apart by path and headers.

mod alibaba;
mod baidu;
mod nciic;
mod tencent;

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::Duration;

use vbank_crypto::sm2sig::Sm2PrivateKey;

/// A fault to inject into the next answer, whichever vendor it comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Answer with this HTTP status and an empty body.
    Status(u16),
    /// Answer 200 with this error code in the vendor's error envelope (`RequestLimitExceeded`, `Throttling.User`,
    /// NCIIC `-90`, Baidu `18`).
    Error(String),
    /// Answer 200 with this result (Tencent `-4`/`-7`, Alibaba `BizCode`, NCIIC `errormesage`, Baidu score).
    Result(String),
    /// Answer 200 with the real answer cut in half.
    Garbled,
    /// Hold the answer this long first (the edge sleeps; a client with a shorter timeout gives up).
    Stall(Duration),
}

/// An answer: status, body, content type, and how long the edge waits before sending it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// HTTP status.
    pub status: u16,
    /// Body.
    pub body: Vec<u8>,
    /// `Content-Type`.
    pub content_type: &'static str,
    /// Wait this long first.
    pub stall: Option<Duration>,
}

impl Reply {
    pub(crate) fn json(status: u16, v: serde_json::Value) -> Reply {
        Reply { status, body: v.to_string().into_bytes(), content_type: "application/json", stall: None }
    }

    pub(crate) fn xml(status: u16, text: String) -> Reply {
        Reply { status, body: text.into_bytes(), content_type: "text/xml; charset=utf-8", stall: None }
    }
}

/// A citizen in the simulated authority's records.
#[derive(Debug, Clone)]
pub struct Person {
    /// 姓名.
    pub name: String,
    /// The authority's photo (JPEG), returned by NCIIC as `xp`.
    pub photo: Option<Vec<u8>>,
}

/// Which vendor a request is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Vendor {
    Tencent,
    Alibaba,
    Nciic,
    Baidu,
}

/// The simulated vendors.
#[derive(Default)]
pub struct Simulator {
    tencent: Option<(String, String, String)>,
    tencent_key: Option<Sm2PrivateKey>,
    alibaba: Option<(String, String, String)>,
    alibaba_nonces: HashSet<String>,
    nciic_license: Option<String>,
    baidu: Option<(String, String)>,
    baidu_tokens: HashMap<String, u64>,
    limit: Option<u32>,
    seconds: HashMap<&'static str, (u64, u32)>,
    people: HashMap<String, Person>,
    cards: VecDeque<Vec<(String, String)>>,
    faults: VecDeque<Fault>,
    requests: u64,
}

impl std::fmt::Debug for Simulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Simulator({} people, {} requests)", self.people.len(), self.requests)
    }
}

/// Documented (Tencent, Alibaba): a signature more than this many seconds off is refused.
pub const MAX_SKEW_S: u64 = 300;
/// Alibaba's window for `x-acs-date`.
pub const ACS_SKEW_S: u64 = 900;

/// Each action's QPS limit: Tencent's documented figures; for the others the default of a newly opened account.
fn qps(action: &str) -> u32 {
    match action {
        "IdCardVerification" => 100,
        "IDCardOCR" | "ImageRecognitionV2" => 20,
        "Id2MetaVerify" => 100,
        "nciicCheck" => 50,
        "idcard" | "person/verify" => 10,
        _ => 10,
    }
}

impl Simulator {
    /// A simulator with no vendor enabled; enable each with its credentials.
    pub fn new() -> Simulator {
        Simulator::default()
    }

    /// Tencent FaceID at `host`, for one SecretId/SecretKey pair.
    pub fn tencent(mut self, host: &str, secret_id: &str, secret_key: &str) -> Simulator {
        self.tencent = Some((host.into(), secret_id.into(), secret_key.into()));
        self
    }

    /// Tencent's private key for SM4-GCM field encryption (the adapter encrypts to its public half).
    pub fn tencent_encryption(mut self, key: Sm2PrivateKey) -> Simulator {
        self.tencent_key = Some(key);
        self
    }

    /// Alibaba Cloud at `host`, for one AccessKey.
    pub fn alibaba(mut self, host: &str, key_id: &str, key_secret: &str) -> Simulator {
        self.alibaba = Some((host.into(), key_id.into(), key_secret.into()));
        self
    }

    /// NCIIC, for one licence.
    pub fn nciic(mut self, license: &str) -> Simulator {
        self.nciic_license = Some(license.trim().into());
        self
    }

    /// Baidu AI Cloud, for one API key and secret key.
    pub fn baidu(mut self, api_key: &str, secret_key: &str) -> Simulator {
        self.baidu = Some((api_key.into(), secret_key.into()));
        self
    }

    /// Lower every action's QPS limit (to test it without a hundred requests).
    pub fn with_qps(mut self, qps: u32) -> Simulator {
        self.limit = Some(qps);
        self
    }

    /// A person in the simulated authority's records.
    pub fn add_person(&mut self, id_number: &str, name: &str, photo: Option<Vec<u8>>) {
        self.people.insert(id_number.to_string(), Person { name: name.to_string(), photo });
    }

    /// What Baidu's OCR reads from the next picture (the simulator does not read images): fields by Chinese name.
    pub fn queue_card(&mut self, fields: Vec<(String, String)>) {
        self.cards.push_back(fields);
    }

    /// Inject `fault` into the next answer (faults queue up).
    pub fn inject(&mut self, fault: Fault) {
        self.faults.push_back(fault);
    }

    fn request_id(&self) -> String {
        format!("sim-{:08}", self.requests)
    }

    /// Count one request of `action` at `now_s`; false when over the limit this second.
    fn within_limit(&mut self, action: &'static str, now_s: u64) -> bool {
        let limit = self.limit.unwrap_or_else(|| qps(action));
        let s = self.seconds.entry(action).or_insert((now_s, 0));
        if s.0 != now_s {
            *s = (now_s, 0);
        }
        s.1 += 1;
        s.1 <= limit
    }

    /// Answer one request: its path (with query), `headers` as received (names in any case), `body`, and `now_s`
    /// Unix seconds.
    pub fn handle(&mut self, path: &str, headers: &[(String, String)], body: &[u8], now_s: u64) -> Reply {
        self.requests += 1;
        let header = |name: &str| headers.iter().any(|(k, _)| k.eq_ignore_ascii_case(name));
        let vendor = if path.starts_with(crate::vendor::nciic::PATH) {
            Vendor::Nciic
        } else if path.starts_with("/oauth/") || path.starts_with("/rest/") {
            Vendor::Baidu
        } else if header("X-TC-Action") {
            Vendor::Tencent
        } else if header("x-acs-action") {
            Vendor::Alibaba
        } else {
            return Reply::json(404, serde_json::json!({"error": "no simulated vendor answers this path"}));
        };
        let mut stall = None;
        let mut garbled = false;
        while let Some(f) = self.faults.pop_front() {
            let reply = match f {
                Fault::Stall(d) => {
                    stall = Some(d);
                    continue;
                }
                Fault::Garbled => {
                    garbled = true;
                    break;
                }
                Fault::Status(s) => Reply { status: s, body: Vec::new(), content_type: "text/plain", stall: None },
                Fault::Error(code) => self.error(vendor, &code),
                Fault::Result(r) => self.result(vendor, &r),
            };
            return Reply { stall, ..reply };
        }
        let mut reply = match vendor {
            Vendor::Tencent => tencent::answer(self, headers, body, now_s),
            Vendor::Alibaba => alibaba::answer(self, headers, body, now_s),
            Vendor::Nciic => nciic::answer(self, body, now_s),
            Vendor::Baidu => baidu::answer(self, path, body, now_s),
        };
        if garbled {
            reply.body.truncate(reply.body.len() / 2);
        }
        Reply { stall, ..reply }
    }

    fn error(&self, vendor: Vendor, code: &str) -> Reply {
        match vendor {
            Vendor::Tencent => tencent::error(self, code, "injected"),
            Vendor::Alibaba => alibaba::error(self, 400, code, "injected"),
            Vendor::Nciic => nciic::refused(code, "injected"),
            Vendor::Baidu => baidu::error(self, code.parse().unwrap_or(1), "injected"),
        }
    }

    fn result(&self, vendor: Vendor, result: &str) -> Reply {
        match vendor {
            Vendor::Tencent => tencent::result(self, result, "injected"),
            Vendor::Alibaba => alibaba::result(self, result),
            Vendor::Nciic => nciic::message(result),
            Vendor::Baidu => baidu::score(self, result.parse().unwrap_or(0.0)),
        }
    }
}
