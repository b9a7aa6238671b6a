//! Baidu AI Cloud, the vendor's side: the client-credentials token (unknown client, expiry), ID-card OCR and
//! `person/verify` with their `error_code`s and QPS limits. It reads no pictures: OCR answers what
//! [`Simulator::queue_card`] queued (else 216633, the card could not be read), and `person/verify` scores a known
//! person 90 (a fault's result sets another score).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Map, Value, json};

use super::{Reply, Simulator};
use crate::acs3::percent_decode;
use crate::vendor::baidu::{IDCARD_PATH, TOKEN_PATH, VERIFY_PATH};

/// A token lasts 30 days, as the vendor's do.
const TOKEN_LIFE_S: u64 = 30 * 86_400;

pub(super) fn error(sim: &Simulator, code: i64, message: &str) -> Reply {
    Reply::json(200, json!({"error_code": code, "error_msg": message, "log_id": sim.requests}))
}

pub(super) fn score(sim: &Simulator, score: f64) -> Reply {
    Reply::json(
        200,
        json!({"error_code": 0, "error_msg": "SUCCESS", "log_id": sim.requests, "result": {"score": score}}),
    )
}

fn params(s: &str) -> Vec<(String, String)> {
    s.split('&')
        .filter_map(|kv| kv.split_once('='))
        .filter_map(|(k, v)| Some((k.to_string(), percent_decode(v)?)))
        .collect()
}

fn param<'a>(p: &'a [(String, String)], name: &str) -> Option<&'a str> {
    p.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

pub(super) fn answer(sim: &mut Simulator, path: &str, body: &[u8], now_s: u64) -> Reply {
    let Some((api_key, secret_key)) = sim.baidu.clone() else {
        return Reply::json(
            401,
            json!({"error": "invalid_client", "error_description": "Baidu is not simulated here"}),
        );
    };
    let (route, query) = path.split_once('?').unwrap_or((path, ""));
    let query = params(query);
    if route == TOKEN_PATH {
        let mut p = params(&String::from_utf8_lossy(body));
        p.extend(query);
        if param(&p, "grant_type") != Some("client_credentials") {
            return Reply::json(400, json!({"error": "unsupported_grant_type", "error_description": "grant type"}));
        }
        if param(&p, "client_id") != Some(api_key.as_str()) {
            return Reply::json(401, json!({"error": "invalid_client", "error_description": "unknown client id"}));
        }
        if param(&p, "client_secret") != Some(secret_key.as_str()) {
            return Reply::json(
                401,
                json!({"error": "invalid_client", "error_description": "Client authentication failed"}),
            );
        }
        let mut raw = [0u8; 16];
        let _ = vbank_crypto::random(&mut raw);
        let token = format!("24.{}.{TOKEN_LIFE_S}.{now_s}", vbank_crypto::to_hex(&raw));
        sim.baidu_tokens.insert(token.clone(), now_s + TOKEN_LIFE_S);
        return Reply::json(
            200,
            json!({"access_token": token, "expires_in": TOKEN_LIFE_S, "scope": "public vis-ocr_ocr"}),
        );
    }
    match param(&query, "access_token").and_then(|t| sim.baidu_tokens.get(t)) {
        None => return error(sim, 110, "Access token invalid or no longer valid"),
        Some(until) if *until <= now_s => return error(sim, 111, "Access token expired"),
        Some(_) => {}
    }
    match route {
        IDCARD_PATH => idcard(sim, body, now_s),
        VERIFY_PATH => verify(sim, body, now_s),
        _ => error(sim, 3, "Unsupported openapi method"),
    }
}

fn idcard(sim: &mut Simulator, body: &[u8], now_s: u64) -> Reply {
    if !sim.within_limit("idcard", now_s) {
        return error(sim, 18, "Open api qps request limit reached");
    }
    let p = params(&String::from_utf8_lossy(body));
    let Some(image) = param(&p, "image").filter(|i| !i.is_empty()) else { return error(sim, 216200, "empty image") };
    if B64.decode(image).is_err() {
        return error(sim, 216201, "image format error");
    }
    if !matches!(param(&p, "id_card_side"), Some("front" | "back")) {
        return error(sim, 216100, "invalid param: id_card_side");
    }
    let Some(card) = sim.cards.pop_front() else { return error(sim, 216633, "recognize idcard error") };
    let words: Map<String, Value> = card.into_iter().map(|(k, v)| (k, json!({"words": v}))).collect();
    Reply::json(
        200,
        json!({"log_id": sim.requests, "words_result_num": words.len(), "words_result": words,
               "image_status": "normal", "risk_type": "normal", "idcard_number_type": 1}),
    )
}

fn verify(sim: &mut Simulator, body: &[u8], now_s: u64) -> Reply {
    if !sim.within_limit("person/verify", now_s) {
        return error(sim, 18, "Open api qps request limit reached");
    }
    let Ok(v) = serde_json::from_slice::<Value>(body) else { return error(sim, 222001, "param[image] is null") };
    let s = |k: &str| v[k].as_str().unwrap_or_default();
    if s("image").is_empty() || B64.decode(s("image")).is_err() {
        return error(sim, 222200, "request body should be json format or image is invalid");
    }
    if crate::id::parse(s("id_card_number"), crate::id::Date::from_unix(now_s)).is_err() || s("name").is_empty() {
        return error(sim, 222360, "id number or name illegal");
    }
    match sim.people.get(s("id_card_number")) {
        None => error(sim, 222354, "authority photo not exist"),
        Some(p) if p.name != s("name") => error(sim, 222351, "id number and name not match"),
        Some(_) => score(sim, 90.0),
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Fault, Simulator};
    use crate::vendor::baidu::{self, Answer, HOST};
    use crate::vendor::{HttpRequest, Verdict};

    const NOW: u64 = 1_795_776_000;

    fn send(s: &mut Simulator, r: &HttpRequest, now: u64) -> super::Reply {
        let mut h = r.headers.clone();
        h.push(("Host".into(), HOST.into()));
        s.handle(&r.path, &h, &r.body, now)
    }

    fn token(s: &mut Simulator) -> String {
        let reply = send(s, &baidu::token_request("ak", "sk"), NOW);
        baidu::token(reply.status, &reply.body).unwrap().access_token
    }

    #[test]
    fn the_token_is_required_and_expires() {
        let mut s = Simulator::new().baidu("ak", "sk");
        let reply = send(&mut s, &baidu::token_request("ak", "nope"), NOW);
        assert!(
            matches!(baidu::token(reply.status, &reply.body), Err(d) if matches!(d.verdict, Verdict::Misconfigured(_)))
        );
        let t = token(&mut s);
        s.queue_card(vec![("姓名".into(), "张三".into())]);
        let r = baidu::idcard_request(&t, b"png", "front");
        assert!(matches!(baidu::idcard(200, &send(&mut s, &r, NOW).body), Answer::Done(..)));
        let late = send(&mut s, &r, NOW + 31 * 86_400);
        assert_eq!(baidu::idcard(late.status, &late.body), Answer::TokenExpired);
        let r = baidu::idcard_request("24.forged", b"png", "front");
        assert_eq!(baidu::idcard(200, &send(&mut s, &r, NOW).body), Answer::TokenExpired);
    }

    #[test]
    fn ocr_answers_what_was_queued_and_verify_knows_the_records() {
        let mut s = Simulator::new().baidu("ak", "sk");
        s.add_person("11010519491231002X", "张三", None);
        let t = token(&mut s);
        let r = baidu::idcard_request(&t, b"png", "front");
        let Answer::Failed(d) = baidu::idcard(200, &send(&mut s, &r, NOW).body) else { panic!() };
        assert!(matches!(d.verdict, Verdict::BadInput(_)) && !d.billed, "nothing queued: unreadable");
        s.queue_card(vec![("公民身份号码".into(), "11010519491231002X".into())]);
        let Answer::Done(card, _) = baidu::idcard(200, &send(&mut s, &r, NOW).body) else { panic!() };
        assert_eq!(card.get("公民身份号码"), Some("11010519491231002X"));

        let ask = |s: &mut Simulator, name: &str, id: &str| {
            let reply = send(s, &baidu::verify_request(&t, b"jpg", name, id), NOW);
            baidu::verify(reply.status, &reply.body)
        };
        assert!(
            matches!(ask(&mut s, "张三", "11010519491231002X"), Answer::Done(score, _) if score >= baidu::SAME_PERSON)
        );
        assert!(
            matches!(ask(&mut s, "李四", "11010519491231002X"), Answer::Failed(d) if d.verdict == Verdict::Mismatch)
        );
        assert!(
            matches!(ask(&mut s, "王五", "440524188001010014"), Answer::Failed(d) if d.verdict == Verdict::NoRecord)
        );
        s.inject(Fault::Result("41.5".into()));
        assert!(
            matches!(ask(&mut s, "张三", "11010519491231002X"), Answer::Done(score, _) if score < baidu::SAME_PERSON)
        );
        s.inject(Fault::Error("18".into()));
        assert!(matches!(ask(&mut s, "张三", "11010519491231002X"), Answer::Failed(d) if d.retryable));
    }
}
