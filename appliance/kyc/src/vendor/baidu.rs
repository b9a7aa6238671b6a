//! Baidu AI Cloud: the OAuth 2.0 client-credentials token (valid 30 days), ID-card OCR (`/rest/2.0/ocr/v1/idcard`,
//! fields keyed by their Chinese names, with `image_status` and `risk_type`), and `person/verify` (the live face
//! against the authority's photo of the citizen named, `score` 0–100, [`SAME_PERSON`] and above the same person).
//! Every answer carries `error_code`; a stale token (110, 111) is fetched again once, transparently.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Value, json};

use super::{Card, Decision, HttpRequest, Verdict, decided};
use crate::acs3::{form, percent_encode};

/// The endpoint host.
pub const HOST: &str = "aip.baidubce.com";
/// The token path.
pub const TOKEN_PATH: &str = "/oauth/2.0/token";
/// The ID-card OCR path.
pub const IDCARD_PATH: &str = "/rest/2.0/ocr/v1/idcard";
/// The face-against-authority path.
pub const VERIFY_PATH: &str = "/rest/2.0/face/v3/person/verify";
/// The vendor's documented threshold: a `person/verify` score at or above it is the same person.
pub const SAME_PERSON: f64 = 80.0;

/// A vendor answer: what was asked for (with the vendor's `log_id`), a token to fetch again, or a failure decided.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer<T> {
    /// The result and the vendor's log id.
    Done(T, Option<String>),
    /// The token was refused as invalid or expired: fetch a new one and ask again (nothing was billed).
    TokenExpired,
    /// It failed; the decision says whether it was billed and may be retried.
    Failed(Decision),
}

/// An access token and how long it lasts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    /// The token (a secret: it is put in request URLs, never in logs).
    pub access_token: String,
    /// Seconds it is valid for.
    pub expires_in: u64,
}

/// The token request; the credentials travel in the form body, not the URL.
pub fn token_request(api_key: &str, secret_key: &str) -> HttpRequest {
    let body = form(&[("grant_type", "client_credentials"), ("client_id", api_key), ("client_secret", secret_key)]);
    HttpRequest {
        path: TOKEN_PATH.into(),
        headers: vec![("Content-Type".into(), "application/x-www-form-urlencoded".into())],
        body: body.into_bytes(),
    }
}

/// The token answer.
pub fn token(status: u16, body: &[u8]) -> Result<Token, Decision> {
    let v: Value = serde_json::from_slice(body).map_err(|_| {
        let retryable = (500..600).contains(&status);
        decided(Verdict::Unavailable(format!("the token service answered HTTP {status}")), false, retryable, None)
    })?;
    if let Some(t) = v["access_token"].as_str() {
        return Ok(Token { access_token: t.to_string(), expires_in: v["expires_in"].as_u64().unwrap_or(86_400) });
    }
    let why = format!("{}: {}", v["error"].as_str().unwrap_or("?"), v["error_description"].as_str().unwrap_or(""));
    Err(decided(Verdict::Misconfigured(format!("the token was refused ({why})")), false, false, None))
}

/// What `error_code` means; `None` for 0 and for a stale token.
fn failure(code: i64, message: &str, log_id: Option<String>) -> Option<Decision> {
    let why = format!("{code} {message}");
    let d = match code {
        0 | 110 | 111 => return None,
        2 | 18 | 282000 | 222361 => decided(Verdict::Unavailable(why), false, true, log_id),
        4 | 17 | 19 => decided(Verdict::Unavailable(format!("quota used up ({why})")), false, false, log_id),
        6 | 14 | 216015 => decided(Verdict::Misconfigured(why), false, false, log_id),
        222351 => decided(Verdict::Mismatch, true, false, log_id),
        222354 | 222355 => decided(Verdict::NoRecord, false, false, log_id),
        100 | 216100 | 216101 | 216200..=216202 | 216630..=216634 | 222202 | 222360 | 223113..=223120 => {
            decided(Verdict::BadInput(why), false, false, log_id)
        }
        _ => decided(Verdict::Unavailable(why), false, false, log_id),
    };
    Some(d)
}

fn answer<T>(status: u16, body: &[u8], done: impl FnOnce(&Value) -> Option<T>) -> Answer<T> {
    if (500..600).contains(&status) {
        return Answer::Failed(decided(Verdict::Unavailable(format!("HTTP {status}")), false, true, None));
    }
    let Ok(v) = serde_json::from_slice::<Value>(body) else {
        return Answer::Failed(decided(Verdict::Unavailable("an unreadable answer".into()), true, false, None));
    };
    let log_id = match &v["log_id"] {
        Value::Number(n) => Some(n.to_string()),
        Value::String(s) => Some(s.clone()),
        _ => None,
    };
    let code = v["error_code"].as_i64().unwrap_or(0);
    if code == 110 || code == 111 {
        return Answer::TokenExpired;
    }
    if let Some(d) = failure(code, v["error_msg"].as_str().unwrap_or_default(), log_id.clone()) {
        return Answer::Failed(d);
    }
    match done(&v) {
        Some(t) => Answer::Done(t, log_id),
        None => Answer::Failed(decided(Verdict::Unavailable("an answer without a result".into()), true, false, log_id)),
    }
}

/// The ID card OCR request for a picture (PNG or JPEG) of one `side`, `front` or `back`, with risk detection
/// (copies, screens, temporary cards).
pub fn idcard_request(token: &str, image: &[u8], side: &str) -> HttpRequest {
    let image = B64.encode(image);
    let body = format!("image={}&id_card_side={}&detect_risk=true", percent_encode(&image), percent_encode(side));
    HttpRequest {
        path: format!("{IDCARD_PATH}?access_token={}", percent_encode(token)),
        headers: vec![("Content-Type".into(), "application/x-www-form-urlencoded".into())],
        body: body.into_bytes(),
    }
}

/// What `image_status` and `risk_type` warn of, in words a teller acts on.
fn warnings(image_status: &str, risk_type: &str) -> Vec<String> {
    let mut w = Vec::new();
    match risk_type {
        "normal" | "" => {}
        "copy" => w.push("疑似复印件 · Looks like a photocopy".to_string()),
        "temporary" => w.push("临时身份证 · A temporary ID card".to_string()),
        "screen" => w.push("疑似翻拍 · Looks like a photo of a screen".to_string()),
        other => w.push(format!("风险类型 {other} · Flagged as {other}")),
    }
    if !matches!(image_status, "normal" | "") {
        w.push(format!("图像状态 {image_status} · The picture is unusable ({image_status})"));
    }
    w
}

/// The ID card OCR answer.
pub fn idcard(status: u16, body: &[u8]) -> Answer<Card> {
    answer(status, body, |v| {
        let words = v["words_result"].as_object()?;
        let fields = words
            .iter()
            .map(|(k, w)| (k.clone(), w["words"].as_str().unwrap_or_default().trim().to_string()))
            .collect();
        let s = |k: &str| v[k].as_str().unwrap_or("normal");
        Some(Card { fields, warnings: warnings(s("image_status"), s("risk_type")) })
    })
}

/// The `person/verify` request: the live face (PNG or JPEG) against the authority's photo of `name`/`id_number`.
pub fn verify_request(token: &str, image: &[u8], name: &str, id_number: &str) -> HttpRequest {
    let body = json!({
        "image": B64.encode(image), "image_type": "BASE64", "id_card_number": id_number, "name": name,
        "quality_control": "NORMAL", "liveness_control": "NONE",
    });
    HttpRequest {
        path: format!("{VERIFY_PATH}?access_token={}", percent_encode(token)),
        headers: vec![("Content-Type".into(), "application/json".into())],
        body: body.to_string().into_bytes(),
    }
}

/// The `person/verify` answer: the score.
pub fn verify(status: u16, body: &[u8]) -> Answer<f64> {
    answer(status, body, |v| v["result"]["score"].as_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_cards_and_scores() {
        let t = token(200, br#"{"access_token":"24.abc","expires_in":2592000,"scope":"public"}"#).unwrap();
        assert_eq!(t, Token { access_token: "24.abc".into(), expires_in: 2_592_000 });
        let refused = token(401, br#"{"error":"invalid_client","error_description":"unknown client id"}"#);
        assert!(matches!(refused.unwrap_err().verdict, Verdict::Misconfigured(ref m) if m.contains("invalid_client")));
        assert!(token(503, b"").unwrap_err().retryable);

        let card = r#"{"log_id":1,"words_result_num":2,"image_status":"normal","risk_type":"copy",
                        "words_result":{"姓名":{"words":"测试甲"},"公民身份号码":{"words":"11010519491231002X"}}}"#;
        let Answer::Done(c, log) = idcard(200, card.as_bytes()) else { panic!() };
        assert_eq!((c.get("姓名"), c.get("公民身份号码")), (Some("测试甲"), Some("11010519491231002X")));
        assert!(c.warnings[0].contains("photocopy"), "{:?}", c.warnings);
        assert_eq!(log.as_deref(), Some("1"));
        assert_eq!(idcard(200, br#"{"error_code":111,"error_msg":"Access token expired"}"#), Answer::TokenExpired);
        let Answer::Failed(d) = idcard(200, br#"{"error_code":18,"error_msg":"Open api qps request limit reached"}"#)
        else {
            panic!()
        };
        assert!(d.retryable && !d.billed);
        let Answer::Failed(d) = idcard(200, br#"{"error_code":17,"error_msg":"Open api daily request limit reached"}"#)
        else {
            panic!()
        };
        assert!(!d.retryable);

        let Answer::Done(score, _) = verify(200, br#"{"error_code":0,"log_id":7,"result":{"score":92.5}}"#) else {
            panic!()
        };
        assert!(score >= SAME_PERSON);
        let Answer::Failed(d) = verify(200, br#"{"error_code":222351,"error_msg":"id number and name not match"}"#)
        else {
            panic!()
        };
        assert_eq!(d.verdict, Verdict::Mismatch);
        assert!(matches!(verify(200, b"{\"err"), Answer::Failed(d) if d.billed && !d.retryable));
    }

    #[test]
    fn requests_keep_secrets_out_of_the_url_where_the_protocol_allows() {
        let r = token_request("ak", "s/k+");
        assert_eq!(r.path, TOKEN_PATH);
        assert_eq!(
            String::from_utf8(r.body).unwrap(),
            "client_id=ak&client_secret=s%2Fk%2B&grant_type=client_credentials"
        );
        let r = idcard_request("24.a/b", b"\x89PNG", "front");
        assert_eq!(r.path, "/rest/2.0/ocr/v1/idcard?access_token=24.a%2Fb");
        assert!(String::from_utf8(r.body).unwrap().starts_with("image=iVBORw%3D%3D&id_card_side=front"));
    }
}
