//! Alibaba Cloud `Id2MetaVerify`, the vendor's side: ACS3 signature over the signed headers and the body hash, the
//! `x-acs-date` window, nonce replay, the QPS limit, and `BizCode` 1 / 2 / 3.

use serde_json::json;

use super::{ACS_SKEW_S, Reply, Simulator};
use crate::acs3;
use crate::vendor::alibaba::{ACTION, VERSION};

pub(super) fn error(sim: &Simulator, status: u16, code: &str, message: &str) -> Reply {
    Reply::json(status, json!({"RequestId": sim.request_id(), "Code": code, "Message": message}))
}

pub(super) fn result(sim: &Simulator, biz_code: &str) -> Reply {
    Reply::json(
        200,
        json!({"RequestId": sim.request_id(), "Code": "200", "Message": "success", "ResultObject": {"BizCode": biz_code}}),
    )
}

/// Seconds since the epoch of an `x-acs-date` (`YYYY-MM-DDTHH:MM:SSZ`).
fn parse_date(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    if b.len() != 20 || b[4] != b'-' || b[10] != b'T' || b[19] != b'Z' {
        return None;
    }
    let n = |r: std::ops::Range<usize>| s.get(r)?.parse::<u64>().ok();
    let (y, m, d) = (n(0..4)?, n(5..7)?, n(8..10)?);
    let days = crate::id::Date { year: y as u16, month: m as u8, day: d as u8 }.days_since_epoch()?;
    Some(days * 86_400 + n(11..13)? * 3600 + n(14..16)? * 60 + n(17..19)?)
}

pub(super) fn answer(sim: &mut Simulator, headers: &[(String, String)], body: &[u8], now_s: u64) -> Reply {
    let header = |name: &str| {
        headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str()).unwrap_or_default()
    };
    let Some((host, key_id, secret)) = sim.alibaba.clone() else {
        return error(sim, 404, "InvalidAccessKeyId.NotFound", "Alibaba Cloud is not simulated here");
    };
    let Some((id, names, signature)) = acs3::parse_authorization(header("Authorization")) else {
        return error(sim, 400, "IncompleteSignature", "malformed Authorization");
    };
    if id != key_id {
        return error(sim, 404, "InvalidAccessKeyId.NotFound", "Specified access key is not found.");
    }
    let required =
        ["host", "x-acs-action", "x-acs-content-sha256", "x-acs-date", "x-acs-signature-nonce", "x-acs-version"];
    let names: Vec<&str> = names.split(';').collect();
    if required.iter().any(|r| !names.contains(r)) {
        return error(sim, 400, "IncompleteSignature", "a required header is not signed");
    }
    let signed: Vec<(&str, &str)> = names.iter().map(|n| (*n, header(n))).collect();
    let (cr, _) = acs3::canonical_request("POST", "", &signed, body);
    let hash_ok = header("x-acs-content-sha256") == vbank_crypto::to_hex(&vbank_crypto::hash::sha256(body));
    if !hash_ok || header("host") != host || acs3::signature(&secret, &cr) != signature {
        return error(sim, 400, "SignatureDoesNotMatch", "Specified signature is not matched with our calculation.");
    }
    match parse_date(header("x-acs-date")) {
        Some(t) if t.abs_diff(now_s) <= ACS_SKEW_S => {}
        _ => return error(sim, 400, "InvalidTimeStamp.Expired", "Specified time stamp or date value is expired."),
    }
    if !sim.alibaba_nonces.insert(header("x-acs-signature-nonce").to_string()) {
        return error(sim, 400, "SignatureNonceUsed", "Specified signature nonce was used already.");
    }
    if header("x-acs-action") != ACTION || header("x-acs-version") != VERSION {
        return error(sim, 404, "InvalidAction.NotFound", "this simulator answers cloudauth Id2MetaVerify");
    }
    if !sim.within_limit("Id2MetaVerify", now_s) {
        return error(sim, 400, "Throttling.User", "Request was denied due to user flow control.");
    }
    let form = String::from_utf8_lossy(body);
    let param = |name: &str| {
        form.split('&')
            .find_map(|kv| kv.split_once('=').filter(|(k, _)| *k == name).and_then(|(_, v)| acs3::percent_decode(v)))
    };
    let (Some(number), Some(name)) = (param("IdentifyNum"), param("UserName")) else {
        return error(sim, 200, "400", "IdentifyNum and UserName are required");
    };
    if param("ParamType").as_deref() != Some("normal") {
        return error(sim, 200, "401", "ParamType must be normal");
    }
    if crate::id::parse(&number, crate::id::Date::from_unix(now_s)).is_err() || name.trim().is_empty() {
        return error(sim, 200, "401", "IdentifyNum or UserName is illegal");
    }
    let biz = match sim.people.get(&number) {
        Some(p) if p.name == name => "1",
        Some(_) => "2",
        None => "3",
    };
    result(sim, biz)
}

#[cfg(test)]
mod tests {
    use vbank_crypto::SecretBytes;

    use super::super::{Fault, Simulator};
    use crate::vendor::alibaba::{Alibaba, HOST, decide};
    use crate::vendor::{Decision, IdentityProtocol, Verdict};

    const NOW: u64 = 1_795_776_000;

    fn ask(s: &mut Simulator, secret: &str, id: &str, name: &str, ts: u64) -> Decision {
        let a = Alibaba::new(HOST, "LTAIsim", SecretBytes::new(secret.as_bytes().to_vec()));
        let mut r = a.request(name, id, ts).unwrap();
        r.headers.push(("Host".into(), HOST.into()));
        let reply = s.handle(&r.path, &r.headers, &r.body, NOW);
        decide(reply.status, &reply.body)
    }

    fn sim() -> Simulator {
        let mut s = Simulator::new().alibaba(HOST, "LTAIsim", "sim-secret");
        s.add_person("11010519491231002X", "张三", None);
        s
    }

    #[test]
    fn every_biz_code_signature_and_window() {
        let mut s = sim();
        assert_eq!(ask(&mut s, "sim-secret", "11010519491231002X", "张三", NOW).verdict, Verdict::Match);
        assert_eq!(ask(&mut s, "sim-secret", "11010519491231002X", "李四", NOW).verdict, Verdict::Mismatch);
        assert_eq!(ask(&mut s, "sim-secret", "440524188001010014", "王五", NOW).verdict, Verdict::NoRecord);
        assert!(matches!(ask(&mut s, "sim-secret", "11204416541220243X", "张三", NOW).verdict, Verdict::BadInput(_)));
        let d = ask(&mut s, "wrong", "11010519491231002X", "张三", NOW);
        assert!(matches!(d.verdict, Verdict::Misconfigured(ref m) if m.contains("SignatureDoesNotMatch")), "{d:?}");
        let d = ask(&mut s, "sim-secret", "11010519491231002X", "张三", NOW - 901);
        assert!(matches!(d.verdict, Verdict::Misconfigured(ref m) if m.contains("InvalidTimeStamp")), "{d:?}");
    }

    #[test]
    fn a_replayed_request_or_a_changed_body_is_refused() {
        let mut s = sim();
        let a = Alibaba::new(HOST, "LTAIsim", SecretBytes::new(b"sim-secret".to_vec()));
        let mut r = a.request("张三", "11010519491231002X", NOW).unwrap();
        r.headers.push(("Host".into(), HOST.into()));
        assert_eq!(decide(200, &s.handle("/", &r.headers, &r.body, NOW).body).verdict, Verdict::Match);
        let again = s.handle("/", &r.headers, &r.body, NOW);
        assert!(String::from_utf8_lossy(&again.body).contains("SignatureNonceUsed"));
        let mut r = a.request("张三", "11010519491231002X", NOW).unwrap();
        r.headers.push(("Host".into(), HOST.into()));
        let forged = b"IdentifyNum=11010519491231002X&ParamType=normal&UserName=%E6%9D%8E";
        assert!(
            String::from_utf8_lossy(&s.handle("/", &r.headers, forged, NOW).body).contains("SignatureDoesNotMatch")
        );
    }

    #[test]
    fn throttling_and_faults() {
        let mut s = sim().with_qps(1);
        s.add_person("11010519491231002X", "张三", None);
        assert_eq!(ask(&mut s, "sim-secret", "11010519491231002X", "张三", NOW).verdict, Verdict::Match);
        let d = ask(&mut s, "sim-secret", "11010519491231002X", "张三", NOW);
        assert!(d.retryable && !d.billed, "{d:?}");
        let mut s = sim();
        s.inject(Fault::Result("2".into()));
        assert_eq!(ask(&mut s, "sim-secret", "11010519491231002X", "张三", NOW).verdict, Verdict::Mismatch);
        s.inject(Fault::Error("ServiceUnavailable".into()));
        assert!(ask(&mut s, "sim-secret", "11010519491231002X", "张三", NOW).retryable);
    }
}
