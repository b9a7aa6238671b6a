//! Masking of personal data and removal of secrets from log text and fields.
//!
//! Applied to every message and every structured field before it leaves the process, whatever the sink. The rules
//! err on the side of masking: an 18-digit run that merely looks like an ID number is masked too.

use std::borrow::Cow;
use std::sync::OnceLock;

use regex::{Captures, Regex};

/// Field names whose values are secrets: replaced entirely.
const SECRET_FIELDS: &[&str] = &[
    "pin",
    "password",
    "passwd",
    "secret",
    "token",
    "authorization",
    "cookie",
    "key",
    "private_key",
    "api_key",
    "session",
];

/// Field names whose values are personal data: masked.
const PERSONAL_FIELDS: &[&str] =
    &["name", "customer_name", "id_number", "id_no", "phone", "mobile", "address", "email"];

struct Patterns {
    /// GB 11643 citizen ID: 6-digit region, 8-digit birth date, 3-digit sequence, check digit or X.
    id18: Regex,
    /// Legacy 15-digit ID (all digits).
    id15: Regex,
    /// Mainland mobile numbers, optionally with +86.
    mobile: Regex,
    /// `Bearer <token>` in headers echoed into messages.
    bearer: Regex,
    /// `pin=…`, `password: …` and the like inside free text.
    secret_kv: Regex,
}

fn patterns() -> &'static Patterns {
    static P: OnceLock<Patterns> = OnceLock::new();
    P.get_or_init(|| Patterns {
        id18: Regex::new(r"(^|[^0-9])([0-9]{6})([0-9]{8})([0-9]{3})([0-9Xx])($|[^0-9A-Za-z])").expect("static regex"),
        id15: Regex::new(r"(^|[^0-9])([0-9]{6})([0-9]{5})([0-9]{4})($|[^0-9])").expect("static regex"),
        mobile: Regex::new(r"(^|[^0-9])((?:\+?86[- ]?)?1[3-9][0-9])([0-9]{4})([0-9]{4})($|[^0-9])")
            .expect("static regex"),
        bearer: Regex::new(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]+").expect("static regex"),
        secret_kv: Regex::new(
            r#"(?i)\b(pin|password|passwd|secret|token|api_key|private_key)(\s*[=:]\s*)("[^"]*"|[^\s&,;]+)"#,
        )
        .expect("static regex"),
    })
}

/// How one match is rewritten.
type Mask = fn(&Captures) -> String;

/// Mask ID numbers and phone numbers and strip secrets from free text.
pub fn redact_text(text: &str) -> Cow<'_, str> {
    let p = patterns();
    let rules: [(&Regex, Mask); 5] = [
        (&p.id18, |c| format!("{}{}********{}{}{}", &c[1], &c[2], &c[4], &c[5], &c[6])),
        (&p.id15, |c| format!("{}{}*****{}{}", &c[1], &c[2], &c[4], &c[5])),
        (&p.mobile, |c| format!("{}{}****{}{}", &c[1], &c[2], &c[4], &c[5])),
        (&p.bearer, |c| format!("{} <redacted>", &c[1])),
        (&p.secret_kv, |c| format!("{}{}<redacted>", &c[1], &c[2])),
    ];
    // Text with nothing to mask stays borrowed: the common case costs no allocation.
    let mut out: Option<String> = None;
    for (re, f) in rules {
        let cur = out.as_deref().unwrap_or(text);
        if re.is_match(cur) {
            // Adjacent matches share their delimiter, so one pass can miss the second: run twice.
            let once = re.replace_all(cur, f).into_owned();
            out = Some(re.replace_all(&once, f).into_owned());
        }
    }
    out.map_or(Cow::Borrowed(text), Cow::Owned)
}

/// What a structured field's value becomes, by the field's name.
pub fn redact_field<'a>(name: &str, value: &'a str) -> Cow<'a, str> {
    let lower = name.to_ascii_lowercase();
    let last = lower.rsplit(['.', '_']).next().unwrap_or(&lower);
    if SECRET_FIELDS.contains(&lower.as_str()) || SECRET_FIELDS.contains(&last) {
        return Cow::Borrowed("<redacted>");
    }
    if PERSONAL_FIELDS.contains(&lower.as_str()) || lower.starts_with("pii") {
        return Cow::Owned(mask_personal(value));
    }
    redact_text(value)
}

/// Mask a personal value: names keep first and last character (张*三), other values keep little of their ends.
pub fn mask_personal(value: &str) -> String {
    let chars: Vec<char> = value.chars().collect();
    match chars.len() {
        0 => String::new(),
        1 => "*".to_string(),
        2 => format!("{}*", chars[0]),
        n if n <= 4 => format!("{}*{}", chars[0], chars[n - 1]),
        n => {
            let keep = (n / 4).min(6);
            let head: String = chars[..keep].iter().collect();
            let tail: String = chars[n - keep.min(4)..].iter().collect();
            format!("{head}{}{tail}", "*".repeat(n - keep - keep.min(4)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_numbers_are_masked() {
        assert_eq!(redact_text("id 110101199003078888 ok"), "id 110101********8888 ok");
        assert_eq!(redact_text("11010119900307123X"), "110101********123X");
        assert_eq!(redact_text("/c?id=110101199003078888&x=1"), "/c?id=110101********8888&x=1");
        assert_eq!(redact_text("110101199003078888,110101199003071234"), "110101********8888,110101********1234");
        assert_eq!(redact_text("legacy 110101900307123"), "legacy 110101*****7123");
    }

    #[test]
    fn phones_are_masked() {
        assert_eq!(redact_text("call 13812345678"), "call 138****5678");
        assert_eq!(redact_text("+8613812345678"), "+86138****5678");
    }

    #[test]
    fn secrets_are_removed() {
        assert_eq!(redact_text("Authorization: Bearer abc.def.ghi"), "Authorization: Bearer <redacted>");
        assert_eq!(redact_text("login pin=123456 failed"), "login pin=<redacted> failed");
        assert_eq!(redact_text(r#"password: "hunter2""#), "password: <redacted>");
        assert_eq!(redact_field("hsm_pin", "1234"), "<redacted>");
        assert_eq!(redact_field("token", "x"), "<redacted>");
    }

    #[test]
    fn personal_fields_are_masked() {
        assert_eq!(redact_field("name", "张三"), "张*");
        assert_eq!(redact_field("name", "张小三"), "张*三");
        assert_eq!(redact_field("customer_name", "欧阳小娜"), "欧*娜");
        assert_eq!(redact_field("id_number", "110101199003078888"), "1101**********8888");
        assert_eq!(redact_field("room", "r-42"), "r-42");
    }

    #[test]
    fn ordinary_text_is_untouched() {
        let s = "listening on 127.0.0.1:8443 after 12345 ms";
        assert!(matches!(redact_text(s), Cow::Borrowed(_)));
        // 19 digits is not an ID number.
        assert_eq!(redact_text("1234567890123456789"), "1234567890123456789");
    }
}
