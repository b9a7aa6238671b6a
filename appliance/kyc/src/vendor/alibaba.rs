//! Alibaba Cloud 实人认证 `Id2MetaVerify` (身份二要素核验, OpenAPI V3 signed with ACS3-HMAC-SHA256): the request, and
//! what every documented answer means (`BizCode` 1 一致, 2 不一致, 3 查无记录; the platform's error codes).

use vbank_crypto::SecretBytes;

use super::{Decision, HttpRequest, IdentityProtocol, Verdict, decided};
use crate::acs3;

/// The endpoint host.
pub const HOST: &str = "cloudauth.aliyuncs.com";
/// The action.
pub const ACTION: &str = "Id2MetaVerify";
/// The API version.
pub const VERSION: &str = "2019-03-07";
/// The form body's content type.
pub const FORM: &str = "application/x-www-form-urlencoded";

/// A configured Alibaba Cloud account.
pub struct Alibaba {
    host: String,
    key_id: String,
    key_secret: SecretBytes,
}

impl Alibaba {
    /// Sign as `key_id`/`key_secret` (an AccessKey) for `host`.
    pub fn new(host: &str, key_id: &str, key_secret: SecretBytes) -> Alibaba {
        Alibaba { host: host.into(), key_id: key_id.into(), key_secret }
    }
}

/// The headers an `Id2MetaVerify` request signs, in the order sent.
pub fn signed_headers(host: &str, body: &[u8], now_s: u64, nonce: &str) -> Vec<(String, String)> {
    [
        ("host", host.to_string()),
        ("content-type", FORM.to_string()),
        ("x-acs-action", ACTION.to_string()),
        ("x-acs-version", VERSION.to_string()),
        ("x-acs-date", acs3::acs_date(now_s)),
        ("x-acs-signature-nonce", nonce.to_string()),
        ("x-acs-content-sha256", vbank_crypto::to_hex(&vbank_crypto::hash::sha256(body))),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

impl IdentityProtocol for Alibaba {
    fn engine(&self) -> &'static str {
        "alibaba cloudauth Id2MetaVerify"
    }

    fn request(&self, name: &str, id_number: &str, now_s: u64) -> Result<HttpRequest, String> {
        let body = acs3::form(&[("ParamType", "normal"), ("IdentifyNum", id_number), ("UserName", name)]).into_bytes();
        let mut nonce = [0u8; 16];
        vbank_crypto::random(&mut nonce).map_err(|e| e.to_string())?;
        let mut headers = signed_headers(&self.host, &body, now_s, &vbank_crypto::to_hex(&nonce));
        let secret = zeroize::Zeroizing::new(String::from_utf8_lossy(self.key_secret.expose()).into_owned());
        let signed: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let auth = acs3::authorization(&self.key_id, &secret, "POST", "", &signed, &body);
        headers.retain(|(k, _)| k != "host");
        headers.push(("Authorization".into(), auth));
        Ok(HttpRequest { path: "/".into(), headers, body })
    }

    fn decide(&self, status: u16, body: &[u8]) -> Decision {
        decide(status, body)
    }
}

/// `Id2MetaVerify`: HTTP status and body.
pub fn decide(status: u16, body: &[u8]) -> Decision {
    if (500..600).contains(&status) || status == 429 {
        return decided(Verdict::Unavailable(format!("HTTP {status}")), false, true, None);
    }
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) else {
        // It may have been answered and billed: never retried automatically.
        return decided(Verdict::Unavailable("an unreadable answer".into()), true, false, None);
    };
    let request_id = v["RequestId"].as_str().map(str::to_string);
    let code = v["Code"].as_str().unwrap_or_default();
    let message = v["Message"].as_str().unwrap_or_default();
    if code != "200" {
        let why = format!("{code}: {message}");
        return match code {
            c if c.starts_with("Throttling") || c == "ServiceUnavailable" || c == "InternalError" || c == "500" => {
                decided(Verdict::Unavailable(why), false, true, request_id)
            }
            "400" | "401" | "MissingParameter" => decided(Verdict::BadInput(why), false, false, request_id),
            c if c.starts_with("InvalidParameter") => decided(Verdict::BadInput(why), false, false, request_id),
            c if c.starts_with("InvalidAccessKeyId")
                || c.starts_with("SignatureDoesNotMatch")
                || c.starts_with("InvalidTimeStamp")
                || c.starts_with("Forbidden")
                || matches!(c, "402" | "404" | "410" | "411" | "412") =>
            {
                decided(Verdict::Misconfigured(why), false, false, request_id)
            }
            "" => decided(Verdict::Unavailable("an answer without a code".into()), true, false, request_id),
            _ => decided(Verdict::Unavailable(why), false, false, request_id),
        };
    }
    match v["ResultObject"]["BizCode"].as_str() {
        Some("1") => decided(Verdict::Match, true, false, request_id),
        Some("2") => decided(Verdict::Mismatch, true, false, request_id),
        Some("3") => decided(Verdict::NoRecord, false, false, request_id),
        other => decided(Verdict::Unavailable(format!("unknown BizCode {other:?}")), true, false, request_id),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(biz: &str) -> Decision {
        decide(
            200,
            format!(r#"{{"RequestId":"r1","Code":"200","Message":"success","ResultObject":{{"BizCode":"{biz}"}}}}"#)
                .as_bytes(),
        )
    }

    fn err(status: u16, code: &str) -> Decision {
        decide(status, format!(r#"{{"RequestId":"r2","Code":"{code}","Message":"m"}}"#).as_bytes())
    }

    #[test]
    fn every_documented_answer_is_decided() {
        assert_eq!((ok("1").verdict, ok("1").billed), (Verdict::Match, true));
        assert_eq!((ok("2").verdict, ok("2").billed), (Verdict::Mismatch, true));
        assert_eq!((ok("3").verdict, ok("3").billed), (Verdict::NoRecord, false));
        assert!(ok("9").billed && !ok("9").retryable);
        assert_eq!(ok("1").request_id.as_deref(), Some("r1"));
        assert!(matches!(err(400, "SignatureDoesNotMatch").verdict, Verdict::Misconfigured(_)));
        assert!(matches!(err(404, "InvalidAccessKeyId.NotFound").verdict, Verdict::Misconfigured(_)));
        assert!(matches!(err(200, "412").verdict, Verdict::Misconfigured(_)), "in arrears: bank IT");
        assert!(matches!(err(200, "401").verdict, Verdict::BadInput(_)));
        assert!(err(400, "Throttling.User").retryable && !err(400, "Throttling.User").billed);
        assert!(decide(503, b"").retryable);
        assert!(decide(200, b"{\"Code\":").billed, "garbled: maybe billed, never retried");
    }

    #[test]
    fn the_request_is_signed_over_the_form_body() {
        let a = Alibaba::new(HOST, "LTAIkey", SecretBytes::new(b"secret".to_vec()));
        let r = a.request("测试甲", "11010519491231002X", 1_795_766_400).unwrap();
        let body = String::from_utf8(r.body.clone()).unwrap();
        assert_eq!(body, "IdentifyNum=11010519491231002X&ParamType=normal&UserName=%E6%B5%8B%E8%AF%95%E7%94%B2");
        let h = |n: &str| r.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(n)).map(|(_, v)| v.clone());
        let auth = h("Authorization").unwrap();
        let (key, names, sig) = acs3::parse_authorization(&auth).unwrap();
        assert_eq!(key, "LTAIkey");
        assert!(names.contains("host") && names.contains("x-acs-content-sha256"), "{names}");
        let mut signed: Vec<(String, String)> =
            r.headers.iter().filter(|(k, _)| k != "Authorization").cloned().collect();
        signed.push(("host".into(), HOST.into()));
        let signed: Vec<(&str, &str)> = signed.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let (cr, _) = acs3::canonical_request("POST", "", &signed, &r.body);
        assert_eq!(acs3::signature("secret", &cr), sig);
        assert_eq!(h("x-acs-date").as_deref(), Some("2026-11-27T08:00:00Z"));
    }
}
