//! Tencent FaceID `IdCardVerification`, the vendor's side: TC3 signature (unknown SecretId, wrong signature, a
//! timestamp more than five minutes off), the QPS limit, SM4-GCM field decryption, and every documented result.

use serde_json::{Value, json};

use super::{MAX_SKEW_S, Reply, Simulator};
use crate::tc3;
use crate::vendor::tencent::OCR_HOST;

/// `IDCardOCR`: what was queued (the simulator reads no images), in Tencent's field names.
fn ocr(sim: &mut Simulator, body: &[u8]) -> Reply {
    let Ok(v) = serde_json::from_slice::<Value>(body) else {
        return error(sim, "InvalidParameter", "the body is not JSON");
    };
    if v["ImageBase64"].as_str().is_none_or(str::is_empty) {
        return error(sim, "InvalidParameter.EngineImageDecodeFailed", "no image");
    }
    let Some(card) = sim.cards.pop_front() else {
        return error(sim, "FailedOperation.ImageNoIdCard", "照片未检测到身份证");
    };
    let names = [
        ("姓名", "Name"),
        ("性别", "Sex"),
        ("民族", "Nation"),
        ("出生", "Birth"),
        ("住址", "Address"),
        ("公民身份号码", "IdNum"),
        ("签发机关", "Authority"),
        ("有效期限", "ValidDate"),
    ];
    let mut r = json!({"AdvancedInfo": "{\"WarnInfos\":[]}"});
    for (zh, en) in names {
        let value = card.iter().find(|(k, _)| k == zh).map(|(_, v)| v.as_str()).unwrap_or_default();
        r[en] = value.into();
    }
    envelope(sim, r)
}

/// `ImageRecognitionV2`: a known person scores 90 (the simulator compares no faces).
fn face(sim: &mut Simulator, body: &[u8], now_s: u64) -> Reply {
    let Ok(v) = serde_json::from_slice::<Value>(body) else {
        return error(sim, "InvalidParameter", "the body is not JSON");
    };
    let (id, name) = (v["IdCard"].as_str().unwrap_or_default(), v["Name"].as_str().unwrap_or_default());
    if v["ImageBase64"].as_str().is_none_or(str::is_empty) {
        return error(sim, "InvalidParameter", "ImageBase64");
    }
    let (result, score) = if crate::id::parse(id, crate::id::Date::from_unix(now_s)).is_err() {
        ("FailedOperation.IdFormatError", 0.0)
    } else {
        match sim.people.get(id) {
            None => ("FailedOperation.IdNoExistSystem", 0.0),
            Some(p) if p.name != name => ("FailedOperation.IdNameMisMatch", 0.0),
            Some(_) => ("Success", 90.0),
        }
    };
    envelope(sim, json!({"Result": result, "Sim": score, "Description": result}))
}

pub(super) fn envelope(sim: &Simulator, response: Value) -> Reply {
    let mut r = response;
    r["RequestId"] = sim.request_id().into();
    Reply::json(200, json!({"Response": r}))
}

pub(super) fn error(sim: &Simulator, code: &str, message: &str) -> Reply {
    envelope(sim, json!({"Error": {"Code": code, "Message": message}}))
}

pub(super) fn result(sim: &Simulator, result: &str, description: &str) -> Reply {
    envelope(sim, json!({"Result": result, "Description": description}))
}

pub(super) fn answer(sim: &mut Simulator, headers: &[(String, String)], body: &[u8], now_s: u64) -> Reply {
    let header = |name: &str| {
        headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str()).unwrap_or_default()
    };
    let Some((host, known_id, key)) = sim.tencent.clone() else {
        return error(sim, "AuthFailure.SecretIdNotFound", "Tencent is not simulated here");
    };
    let Ok(timestamp) = header("X-TC-Timestamp").parse::<u64>() else {
        return error(sim, "MissingParameter", "X-TC-Timestamp");
    };
    if timestamp.abs_diff(now_s) > MAX_SKEW_S {
        return error(sim, "AuthFailure.SignatureExpire", "the signature is more than 5 minutes off");
    }
    let auth = header("Authorization");
    let field = |name: &str| auth.split([' ', ',']).find_map(|p| p.trim().strip_prefix(name)).unwrap_or_default();
    let credential: Vec<&str> = field("Credential=").split('/').collect();
    let [secret_id, date, service, "tc3_request"] = credential[..] else {
        return error(sim, "AuthFailure.SignatureFailure", "malformed Authorization");
    };
    if secret_id != known_id {
        return error(sim, "AuthFailure.SecretIdNotFound", "unknown SecretId");
    }
    let request = tc3::Request { service, host: header("Host"), content_type: header("Content-Type"), body, timestamp };
    let expected_host = if service == "ocr" { OCR_HOST } else { host.as_str() };
    let good = field("SignedHeaders=") == tc3::SIGNED_HEADERS
        && date == tc3::utc_date(timestamp)
        && request.host == expected_host
        && tc3::signature(&key, &request) == field("Signature=");
    if !good {
        return error(sim, "AuthFailure.SignatureFailure", "the signature does not match");
    }
    let action = match (header("X-TC-Action"), service) {
        ("IdCardVerification", "faceid") => "IdCardVerification",
        ("ImageRecognitionV2", "faceid") => "ImageRecognitionV2",
        ("IDCardOCR", "ocr") => "IDCardOCR",
        _ => {
            return error(
                sim,
                "InvalidAction",
                "this simulator answers IdCardVerification, ImageRecognitionV2, IDCardOCR",
            );
        }
    };
    if !sim.within_limit(action, now_s) {
        return error(sim, "RequestLimitExceeded", "too many requests this second");
    }
    match action {
        "IDCardOCR" => return ocr(sim, body),
        "ImageRecognitionV2" => return face(sim, body, now_s),
        _ => {}
    }
    let Ok(mut v) = serde_json::from_slice::<Value>(body) else {
        return error(sim, "InvalidParameter", "the body is not JSON");
    };
    if !v["Encryption"].is_null() {
        let Some(key) = &sim.tencent_key else {
            return error(sim, "FailedOperation.DecryptSystemError", "encryption is not enabled for this account");
        };
        if let Err(e) = crate::vendor::tencent::decrypt_fields(key, &mut v) {
            return error(sim, "FailedOperation.DecryptSystemError", &e);
        }
    }
    let (id, name) = (v["IdCard"].as_str().unwrap_or_default(), v["Name"].as_str().unwrap_or_default());
    let today = crate::id::Date::from_unix(now_s);
    let (code, description) = if crate::id::parse(id, today).is_err() {
        ("-2", "非法身份证号（长度、校验位等不正确）")
    } else if name.trim().is_empty() || name.chars().count() > 30 || name.chars().any(|c| c.is_ascii_digit()) {
        ("-3", "非法姓名（长度、格式等不正确）")
    } else {
        match sim.people.get(id) {
            Some(p) if p.name == name => ("0", "姓名和身份证号一致"),
            Some(_) => ("-1", "姓名和身份证号不一致"),
            None => ("-5", "库中无此身份证记录"),
        }
    };
    result(sim, code, description)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use vbank_crypto::SecretBytes;
    use vbank_crypto::sm2sig::Sm2PrivateKey;

    use super::super::{Fault, Simulator};
    use crate::vendor::tencent::{HOST, Tencent, decide};
    use crate::vendor::{Decision, HttpRequest, IdentityProtocol, Verdict};

    const NOW: u64 = 1_795_776_000;

    fn adapter(key: &str) -> Tencent {
        Tencent::new(HOST, "AKIDsim", SecretBytes::new(key.as_bytes().to_vec()), None)
    }

    /// The adapter's own request, as it would send it (with `Host`).
    fn signed(t: &Tencent, id: &str, name: &str, ts: u64) -> HttpRequest {
        let mut r = t.request(name, id, ts).unwrap();
        r.headers.push(("Host".into(), HOST.into()));
        r
    }

    fn sim() -> Simulator {
        let mut s = Simulator::new().tencent(HOST, "AKIDsim", "sim-secret");
        s.add_person("11010519491231002X", "张三", None);
        s
    }

    fn ask(s: &mut Simulator, key: &str, id: &str, name: &str, ts: u64) -> Decision {
        let r = signed(&adapter(key), id, name, ts);
        let reply = s.handle(&r.path, &r.headers, &r.body, NOW);
        decide(reply.status, &reply.body)
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
        let mut r = signed(&adapter("sim-secret"), "11010519491231002X", "张三", NOW);
        r.headers.retain(|(k, _)| k != "Authorization");
        r.headers.push((
            "Authorization".into(),
            "TC3-HMAC-SHA256 Credential=AKIDnobody/2026-11-27/faceid/tc3_request".into(),
        ));
        let reply = s.handle("/", &r.headers, &r.body, NOW);
        assert!(String::from_utf8_lossy(&reply.body).contains("AuthFailure.SecretIdNotFound"));
        // The body is signed: changing it after signing fails.
        let r = signed(&adapter("sim-secret"), "11010519491231002X", "张三", NOW);
        let forged = serde_json::json!({"IdCard": "11010519491231002X", "Name": "李四"}).to_string();
        let reply = s.handle("/", &r.headers, forged.as_bytes(), NOW);
        assert!(String::from_utf8_lossy(&reply.body).contains("SignatureFailure"));
    }

    #[test]
    fn an_encrypted_id_number_is_read_only_with_the_vendors_key() {
        let vendor = Sm2PrivateKey::generate().unwrap();
        let t = Tencent::new(HOST, "AKIDsim", SecretBytes::new(b"sim-secret".to_vec()), Some(vendor.public_key()));
        let mut plain = sim();
        let r = signed(&t, "11010519491231002X", "张三", NOW);
        let reply = plain.handle("/", &r.headers, &r.body, NOW);
        assert!(String::from_utf8_lossy(&reply.body).contains("DecryptSystemError"), "no key: refused");
        let mut s = sim().tencent_encryption(vendor);
        s.add_person("11010519491231002X", "张三", None);
        let reply = s.handle("/", &r.headers, &r.body, NOW);
        assert_eq!(decide(reply.status, &reply.body).verdict, Verdict::Match);
    }

    #[test]
    fn the_qps_limit_answers_request_limit_exceeded_and_is_retryable() {
        let mut s = sim().with_qps(2);
        s.add_person("11010519491231002X", "张三", None);
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
        let r = signed(&adapter("sim-secret"), "11010519491231002X", "张三", NOW);
        let reply = s.handle("/", &r.headers, &r.body, NOW);
        assert_eq!(reply.stall, Some(Duration::from_secs(30)));
        assert_eq!(decide(reply.status, &reply.body).verdict, Verdict::Match);
    }
}

#[cfg(test)]
mod card_tests {
    use vbank_crypto::SecretBytes;

    use super::super::Simulator;
    use crate::vendor::tencent::{HOST, Tencent};
    use crate::vendor::tencent_cards::{SAME_PERSON, face, ocr};
    use crate::vendor::{HttpRequest, Verdict};

    const NOW: u64 = 1_795_776_000;

    fn send(s: &mut Simulator, mut r: HttpRequest, host: &str) -> super::Reply {
        r.headers.push(("Host".into(), host.into()));
        s.handle(&r.path, &r.headers, &r.body, NOW)
    }

    #[test]
    fn ocr_and_face_are_signed_for_their_own_services() {
        let t = Tencent::new(HOST, "AKIDsim", SecretBytes::new(b"sim-secret".to_vec()), None);
        let mut s = Simulator::new().tencent(HOST, "AKIDsim", "sim-secret");
        s.add_person("11010519491231002X", "张三", None);
        let r = send(&mut s, t.ocr_request(b"png", "front", NOW), super::OCR_HOST);
        assert!(matches!(ocr(r.status, &r.body).unwrap_err().verdict, Verdict::BadInput(_)), "nothing queued");
        s.queue_card(vec![("姓名".into(), "张三".into()), ("公民身份号码".into(), "11010519491231002X".into())]);
        let r = send(&mut s, t.ocr_request(b"png", "front", NOW), super::OCR_HOST);
        assert_eq!(ocr(r.status, &r.body).unwrap().0.get("姓名"), Some("张三"));
        // Signed for FaceID's host, sent as OCR: refused.
        let r = send(&mut s, t.ocr_request(b"png", "front", NOW), HOST);
        assert!(String::from_utf8_lossy(&r.body).contains("SignatureFailure"));

        let r = send(&mut s, t.face_request(b"jpg", "张三", "11010519491231002X", NOW), HOST);
        assert!(face(r.status, &r.body).unwrap().0 >= SAME_PERSON);
        let r = send(&mut s, t.face_request(b"jpg", "李四", "11010519491231002X", NOW), HOST);
        assert_eq!(face(r.status, &r.body).unwrap_err().verdict, Verdict::Mismatch);
    }
}
