//! Alibaba Cloud OpenAPI V3 request signing, ACS3-HMAC-SHA256, as the vendor documents it: the KYC adapter signs with
//! it and the conformance simulator checks with it.
//!
//! - CanonicalRequest: `METHOD\n/\n{query}\n`, the signed headers (lower case, sorted, `k:v\n` each), `\n`, their
//!   names joined by `;`, `\n`, then hex(SHA-256(body)) — the same value the request carries in
//!   `x-acs-content-sha256`.
//! - StringToSign: `ACS3-HMAC-SHA256\n` + hex(SHA-256(CanonicalRequest)); the signature is hex(HMAC-SHA256(secret,
//!   StringToSign)).
//! - `Authorization: ACS3-HMAC-SHA256 Credential={AccessKeyId},SignedHeaders={names},Signature={hex}`.

use vbank_crypto::hash::{hmac_sha256, sha256};
use vbank_crypto::to_hex;

/// The algorithm's name, first in `Authorization`.
pub const ALGORITHM: &str = "ACS3-HMAC-SHA256";

/// RFC 3986 percent-encoding, as the vendor canonicalises query strings and form bodies (space is `%20`).
pub fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Percent-decoding of a form or query value; `None` when it is not valid UTF-8 or a `%` is malformed.
pub fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// `k=v&…`, percent-encoded, sorted by name: a form body, or the canonical query string.
pub fn form(params: &[(&str, &str)]) -> String {
    let mut p: Vec<(String, String)> = params.iter().map(|(k, v)| (percent_encode(k), percent_encode(v))).collect();
    p.sort();
    p.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("&")
}

/// `x-acs-date` for a Unix time: ISO 8601 UTC, `YYYY-MM-DDTHH:MM:SSZ`.
pub fn acs_date(unix_s: u64) -> String {
    let (y, m, d) = vbank_log::civil_from_days((unix_s / 86_400) as i64);
    let t = unix_s % 86_400;
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", t / 3600, t / 60 % 60, t % 60)
}

/// The canonical request of `method` on `/` with `query` (already canonical), the signed `headers` (any case, any
/// order) and `body`; and the signed header names.
pub fn canonical_request(method: &str, query: &str, headers: &[(&str, &str)], body: &[u8]) -> (String, String) {
    let mut h: Vec<(String, String)> =
        headers.iter().map(|(k, v)| (k.to_ascii_lowercase(), v.trim().to_string())).collect();
    h.sort();
    let names = h.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>().join(";");
    let lines: String = h.iter().map(|(k, v)| format!("{k}:{v}\n")).collect();
    (format!("{method}\n/\n{query}\n{lines}\n{names}\n{}", to_hex(&sha256(body))), names)
}

/// The signature, hex.
pub fn signature(secret: &str, canonical_request: &str) -> String {
    let to_sign = format!("{ALGORITHM}\n{}", to_hex(&sha256(canonical_request.as_bytes())));
    to_hex(&hmac_sha256(secret.as_bytes(), to_sign.as_bytes()))
}

/// The `Authorization` header for a request whose signed headers are `headers`.
pub fn authorization(
    key_id: &str,
    secret: &str,
    method: &str,
    query: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> String {
    let (cr, names) = canonical_request(method, query, headers, body);
    format!("{ALGORITHM} Credential={key_id},SignedHeaders={names},Signature={}", signature(secret, &cr))
}

/// The parts of an `Authorization` header: key id, signed header names, signature.
pub fn parse_authorization(h: &str) -> Option<(&str, &str, &str)> {
    let rest = h.strip_prefix(ALGORITHM)?.trim_start();
    let mut key = None;
    let mut names = None;
    let mut sig = None;
    for part in rest.split(',') {
        let (k, v) = part.trim().split_once('=')?;
        match k {
            "Credential" => key = Some(v),
            "SignedHeaders" => names = Some(v),
            "Signature" => sig = Some(v),
            _ => return None,
        }
    }
    Some((key?, names?, sig?))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Computed independently with the OpenSSL CLI:
    /// `printf 'ACS3-HMAC-SHA256\n%s' "$(printf '%s' "$CR" | openssl dgst -sha256 -r | cut -c1-64)" |
    ///  openssl dgst -sha256 -hmac YourAccessKeySecret -r`.
    #[test]
    fn matches_an_independent_computation() {
        let headers = [
            ("host", "cloudauth.aliyuncs.com"),
            ("x-acs-action", "Id2MetaVerify"),
            ("x-acs-content-sha256", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
            ("x-acs-date", "2026-11-27T08:00:00Z"),
            ("x-acs-signature-nonce", "3156853299f313e23d1673dc12e1703d"),
            ("x-acs-version", "2019-03-07"),
        ];
        let (cr, names) = canonical_request("POST", "", &headers, b"");
        assert_eq!(names, "host;x-acs-action;x-acs-content-sha256;x-acs-date;x-acs-signature-nonce;x-acs-version");
        assert!(cr.starts_with("POST\n/\n\nhost:cloudauth.aliyuncs.com\n"), "{cr}");
        assert_eq!(
            signature("YourAccessKeySecret", &cr),
            "6bc57587692cbd007fd806142bda96e9e3d53c8ad64ee96a52169e2ca08a0a5f"
        );
    }

    #[test]
    fn encoding_round_trips_and_sorts() {
        assert_eq!(percent_encode("测试 a+b*~"), "%E6%B5%8B%E8%AF%95%20a%2Bb%2A~");
        assert_eq!(percent_decode(&percent_encode("测试 a+b*~")).as_deref(), Some("测试 a+b*~"));
        assert_eq!(percent_decode("%E6%B5"), None, "not UTF-8");
        assert_eq!(percent_decode("%G1"), None);
        assert_eq!(form(&[("b", "2"), ("a", "1 1")]), "a=1%201&b=2");
        assert_eq!(acs_date(1_795_766_400), "2026-11-27T08:00:00Z");
    }

    #[test]
    fn authorization_parses_back() {
        let a = authorization("AK", "S", "POST", "", &[("host", "h")], b"x");
        let (k, n, s) = parse_authorization(&a).unwrap();
        assert_eq!((k, n, s.len()), ("AK", "host", 64));
        assert!(parse_authorization("TC3-HMAC-SHA256 Credential=x").is_none());
    }
}
