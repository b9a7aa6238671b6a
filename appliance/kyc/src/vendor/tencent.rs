//! Tencent Cloud FaceID `IdCardVerification` (API 3.0): the TC3-signed request, optionally with the ID number
//! encrypted (SM4-GCM under a one-time key, the key SM2-encrypted to Tencent's published public key, as its
//! 敏感数据加密 guide describes), and what every documented answer means.
//!
//! Only the ID number is encrypted: the protocol carries one IV per request, and GCM must never use an IV twice under
//! a key, so encrypting a second field with the same key and IV (as the vendor's SDK does) would leak both.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Value, json};
use vbank_crypto::SecretBytes;
use vbank_crypto::aead::{self, AeadAlg};
use vbank_crypto::sm2sig::{Sm2PrivateKey, Sm2PublicKey};

use super::{Decision, HttpRequest, IdentityProtocol, Verdict, decided};

/// Tencent Cloud FaceID's endpoint host.
pub const HOST: &str = "faceid.tencentcloudapi.com";
/// Tencent Cloud OCR's endpoint host.
pub const OCR_HOST: &str = "ocr.tencentcloudapi.com";
/// The `Encryption.Algorithm` for 国密 field encryption.
pub const SM4_GCM: &str = "SM4-GCM";

/// A configured FaceID account.
pub struct Tencent {
    pub(crate) host: String,
    pub(crate) ocr_host: String,
    secret_id: String,
    secret_key: SecretBytes,
    encrypt_to: Option<Sm2PublicKey>,
}

impl Tencent {
    /// Sign as `secret_id`/`secret_key` for `host`; with `encrypt_to`, the ID number travels SM4-GCM encrypted.
    pub fn new(host: &str, secret_id: &str, secret_key: SecretBytes, encrypt_to: Option<Sm2PublicKey>) -> Tencent {
        Tencent { host: host.into(), ocr_host: OCR_HOST.into(), secret_id: secret_id.into(), secret_key, encrypt_to }
    }

    /// Answer OCR at `host` instead of [`OCR_HOST`].
    pub fn with_ocr_host(mut self, host: &str) -> Tencent {
        self.ocr_host = host.into();
        self
    }

    /// `body` as a signed API 3.0 request of `service` at `host`: `action` of `version`, at `now_s`.
    pub(crate) fn signed(
        &self,
        (service, host): (&str, &str),
        (action, version): (&str, &str),
        body: Vec<u8>,
        now_s: u64,
    ) -> HttpRequest {
        let content_type = "application/json; charset=utf-8";
        let key = zeroize::Zeroizing::new(String::from_utf8_lossy(self.secret_key.expose()).into_owned());
        let r = crate::tc3::Request { service, host, content_type, body: &body, timestamp: now_s };
        let headers = [
            ("Content-Type", content_type.to_string()),
            ("X-TC-Action", action.to_string()),
            ("X-TC-Version", version.to_string()),
            ("X-TC-Timestamp", now_s.to_string()),
            ("Authorization", crate::tc3::authorization(&self.secret_id, &key, &r)),
        ];
        HttpRequest { path: "/".into(), headers: headers.into_iter().map(|(k, v)| (k.to_string(), v)).collect(), body }
    }
}

impl IdentityProtocol for Tencent {
    fn engine(&self) -> &'static str {
        if self.encrypt_to.is_some() {
            "tencent faceid IdCardVerification (SM4-GCM)"
        } else {
            "tencent faceid IdCardVerification"
        }
    }

    fn request(&self, name: &str, id_number: &str, now_s: u64) -> Result<HttpRequest, String> {
        let body = match &self.encrypt_to {
            None => json!({"IdCard": id_number, "Name": name}),
            Some(to) => {
                let mut b = encrypt_field(to, "IdCard", id_number)?;
                b["Name"] = name.into();
                b
            }
        };
        let body = body.to_string().into_bytes();
        Ok(self.signed(("faceid", &self.host), ("IdCardVerification", "2018-03-01"), body, now_s))
    }

    fn decide(&self, status: u16, body: &[u8]) -> Decision {
        decide(status, body)
    }
}

/// `{field: base64(SM4-GCM ciphertext), "Encryption": {…}}` for one field, under a fresh key SM2-encrypted to `to`.
pub fn encrypt_field(to: &Sm2PublicKey, field: &str, value: &str) -> Result<Value, String> {
    // The vendor's SDK makes the key 16 alphanumeric characters; the same form is sure to be read back the same way.
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut raw = zeroize::Zeroizing::new([0u8; 16]);
    vbank_crypto::random(raw.as_mut()).map_err(|e| e.to_string())?;
    let key = zeroize::Zeroizing::new(raw.map(|b| ALPHABET[b as usize % ALPHABET.len()]));
    let mut iv = [0u8; 12];
    vbank_crypto::random(&mut iv).map_err(|e| e.to_string())?;
    let sealed = aead::seal(AeadAlg::Sm4Gcm, key.as_ref(), &iv, b"", value.as_bytes()).map_err(|e| e.to_string())?;
    let (ct, tag) = sealed.split_at(sealed.len() - aead::TAG_LEN);
    let blob = vbank_crypto::sm2enc::encrypt_raw(to, key.as_ref()).map_err(|e| e.to_string())?;
    Ok(json!({
        field: B64.encode(ct),
        "Encryption": {"EncryptList": [field], "CiphertextBlob": B64.encode(blob), "Iv": B64.encode(iv),
                       "Algorithm": SM4_GCM, "TagList": [B64.encode(tag)]},
    }))
}

/// The vendor's side of [`encrypt_field`]: the fields of `body` named in its `Encryption`, decrypted in place.
pub fn decrypt_fields(key: &Sm2PrivateKey, body: &mut Value) -> Result<(), String> {
    let e = body["Encryption"].clone();
    if e.is_null() {
        return Ok(());
    }
    if e["Algorithm"] != SM4_GCM {
        return Err(format!("unsupported Encryption.Algorithm {}", e["Algorithm"]));
    }
    let b64 = |v: &Value| v.as_str().and_then(|s| B64.decode(s).ok()).ok_or("a field is not base64");
    let sym = vbank_crypto::sm2enc::decrypt_raw(key, &b64(&e["CiphertextBlob"])?).map_err(|_| "CiphertextBlob")?;
    let iv: [u8; 12] = b64(&e["Iv"])?.try_into().map_err(|_| "Iv is not 12 bytes")?;
    let fields = e["EncryptList"].as_array().ok_or("no EncryptList")?;
    let tags = e["TagList"].as_array().ok_or("no TagList")?;
    if fields.len() != tags.len() {
        return Err("EncryptList and TagList differ in length".into());
    }
    for (f, t) in fields.iter().zip(tags) {
        let f = f.as_str().ok_or("EncryptList holds a non-string")?;
        let mut sealed = b64(&body[f])?;
        sealed.extend(b64(t)?);
        let plain = aead::open(AeadAlg::Sm4Gcm, sym.expose(), &iv, b"", &sealed)
            .map_err(|_| format!("{f} does not decrypt"))?;
        body[f] = String::from_utf8_lossy(plain.expose()).into_owned().into();
    }
    Ok(())
}

/// Tencent Cloud FaceID `IdCardVerification` (API 3.0): HTTP status and body.
pub fn decide(status: u16, body: &[u8]) -> Decision {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(result: &str) -> Decision {
        let body = format!(r#"{{"Response":{{"Result":"{result}","Description":"x","RequestId":"req-1"}}}}"#);
        decide(200, body.as_bytes())
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
        for d in [ok("0"), ok("-1"), decide(200, b"{\"Resp"), ok("9")] {
            assert!(d.billed && !d.retryable, "{d:?}");
        }
    }

    #[test]
    fn errors_and_transport_failures() {
        let err = |code: &str| {
            let body = format!(r#"{{"Response":{{"Error":{{"Code":"{code}","Message":"m"}},"RequestId":"r"}}}}"#);
            decide(200, body.as_bytes())
        };
        assert!(matches!(err("AuthFailure.SignatureFailure").verdict, Verdict::Misconfigured(_)));
        assert!(err("RequestLimitExceeded").retryable);
        assert!(matches!(err("InvalidParameterValue.IdCard").verdict, Verdict::BadInput(_)));
        let down = decide(503, b"");
        assert!(down.retryable && !down.billed);
        assert!(down.message().contains("联网核查服务暂不可用"));
    }

    #[test]
    fn the_id_number_travels_sm4_gcm_encrypted_and_only_the_vendor_reads_it() {
        let vendor = Sm2PrivateKey::generate().unwrap();
        let t = Tencent::new(HOST, "AKID", SecretBytes::new(b"key".to_vec()), Some(vendor.public_key()));
        let r = t.request("测试甲", "11010519491231002X", 1_795_766_400).unwrap();
        let text = String::from_utf8(r.body.clone()).unwrap();
        assert!(!text.contains("11010519491231002X") && text.contains("SM4-GCM"), "{text}");
        let mut body: Value = serde_json::from_slice(&r.body).unwrap();
        decrypt_fields(&vendor, &mut body).unwrap();
        assert_eq!(body["IdCard"], "11010519491231002X");
        // Another key cannot; an altered ciphertext does not decrypt.
        let mut other: Value = serde_json::from_slice(&r.body).unwrap();
        assert!(decrypt_fields(&Sm2PrivateKey::generate().unwrap(), &mut other).is_err());
        let mut altered: Value = serde_json::from_slice(&r.body).unwrap();
        altered["Encryption"]["TagList"][0] = B64.encode([0u8; 16]).into();
        assert!(decrypt_fields(&vendor, &mut altered).unwrap_err().contains("IdCard"));
    }
}
