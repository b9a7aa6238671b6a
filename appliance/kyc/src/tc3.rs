//! Tencent Cloud API 3.0 request signing, TC3-HMAC-SHA256, as the vendor documents it: the KYC adapter signs with it
//! and the conformance simulator checks with it.
//!
//! - CanonicalRequest: `POST\n/\n\n`, the signed headers (`content-type` and `host`, lower case, `k:v\n` each), `\n`,
//!   `content-type;host\n`, then hex(SHA-256(body)).
//! - StringToSign: `TC3-HMAC-SHA256\n{timestamp}\n{UTC date}/{service}/tc3_request\n`, then
//!   hex(SHA-256(CanonicalRequest)).
//! - The key: HMAC("TC3" + SecretKey, date), then HMAC(·, service), then HMAC(·, "tc3_request"); the signature is
//!   hex(HMAC(key, StringToSign)).

use vbank_crypto::hash::{hmac_sha256, sha256};
use vbank_crypto::to_hex;

/// The headers signed.
pub const SIGNED_HEADERS: &str = "content-type;host";

/// What is signed of one request.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// The product's service name, e.g. `ocr`, `faceid`.
    pub service: &'a str,
    /// The endpoint host, e.g. `ocr.tencentcloudapi.com`.
    pub host: &'a str,
    /// The `Content-Type` header as sent.
    pub content_type: &'a str,
    /// The JSON body as sent.
    pub body: &'a [u8],
    /// `X-TC-Timestamp`, Unix seconds.
    pub timestamp: u64,
}

/// The UTC date of a Unix time, `YYYY-MM-DD`.
pub fn utc_date(timestamp: u64) -> String {
    let (y, m, d) = vbank_log::civil_from_days((timestamp / 86_400) as i64);
    format!("{y:04}-{m:02}-{d:02}")
}

/// The canonical request.
pub fn canonical_request(r: &Request<'_>) -> String {
    format!(
        "POST\n/\n\ncontent-type:{}\nhost:{}\n\n{SIGNED_HEADERS}\n{}",
        r.content_type,
        r.host,
        to_hex(&sha256(r.body))
    )
}

/// The signature, hex.
pub fn signature(secret_key: &str, r: &Request<'_>) -> String {
    let date = utc_date(r.timestamp);
    let scope = format!("{date}/{}/tc3_request", r.service);
    let to_sign =
        format!("TC3-HMAC-SHA256\n{}\n{scope}\n{}", r.timestamp, to_hex(&sha256(canonical_request(r).as_bytes())));
    let k_date = hmac_sha256(format!("TC3{secret_key}").as_bytes(), date.as_bytes());
    let k_service = hmac_sha256(&k_date, r.service.as_bytes());
    let k_signing = hmac_sha256(&k_service, b"tc3_request");
    to_hex(&hmac_sha256(&k_signing, to_sign.as_bytes()))
}

/// The `Authorization` header.
pub fn authorization(secret_id: &str, secret_key: &str, r: &Request<'_>) -> String {
    format!(
        "TC3-HMAC-SHA256 Credential={secret_id}/{}/{}/tc3_request, SignedHeaders={SIGNED_HEADERS}, Signature={}",
        utc_date(r.timestamp),
        r.service,
        signature(secret_key, r)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Tencent's published example (API 3.0 signature documentation).
    fn published() -> Request<'static> {
        Request {
            service: "cvm",
            host: "cvm.tencentcloudapi.com",
            content_type: "application/json; charset=utf-8",
            body: br#"{"Limit": 1, "Filters": [{"Values": ["\u672a\u547d\u540d"], "Name": "instance-name"}]}"#,
            timestamp: 1_551_113_065,
        }
    }

    #[test]
    fn the_published_vector_signs_as_documented() {
        let r = published();
        assert_eq!(utc_date(r.timestamp), "2019-02-25");
        assert_eq!(
            to_hex(&sha256(canonical_request(&r).as_bytes())),
            "5ffe6a04c0664d6b969fab9a13bdab201d63ee709638e2749d62a09ca18d7031"
        );
        assert_eq!(
            signature("Gu5t9xGARNpq86cd98joQYCN3EXAMPLE", &r),
            "72e494ea809ad7a8c8f7a4507b9bddcbaa8e581f516e8da2f66e2c5a96525168"
        );
        let auth = authorization("AKIDz8krbsJ5yKBZQpn74WFkmLPx3EXAMPLE", "Gu5t9xGARNpq86cd98joQYCN3EXAMPLE", &r);
        assert!(auth.starts_with("TC3-HMAC-SHA256 Credential=AKIDz8krbsJ5yKBZQpn74WFkmLPx3EXAMPLE/2019-02-25/cvm/"));
    }

    #[test]
    fn any_change_to_what_is_signed_changes_the_signature() {
        let good = signature("Gu5t9xGARNpq86cd98joQYCN3EXAMPLE", &published());
        assert_ne!(signature("wrong-key", &published()), good);
        assert_ne!(signature("Gu5t9xGARNpq86cd98joQYCN3EXAMPLE", &Request { body: b"{}", ..published() }), good);
        assert_ne!(
            signature("Gu5t9xGARNpq86cd98joQYCN3EXAMPLE", &Request { timestamp: 1_551_113_066, ..published() }),
            good
        );
    }
}
