//! 证件识别 and 人脸比对: the customer holds their ID card to the camera; the recorder decodes what the camera shows now
//! and OCR (`vbank-kyc-ocr`) reads it. The fields read stay here, per call, for [`READ_KEPT`]: the teller sees them
//! masked and verifies identity "from the card" without the full number ever reaching the gateway or the console.
//! The card's portrait, encoded, is the reference the customer's live face is then compared with ([`face_compare`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use serde_json::json;
use tokio::sync::{OnceCell, Semaphore};
use vbank_crypto::to_hex;
use vbank_kyc::mask;
use vbank_kyc::vendor::Card;
use vbank_kyc::vendor::Decision;
use vbank_kyc_ocr::card::Back;
use vbank_kyc_ocr::{Ocr, card};

use crate::compare::{self, Comparer};
use zeroize::Zeroizing;

use crate::{ApiState, now_us, ocr_rule, problem, respond, still};

/// How long a card read is kept for the identity check of the same call.
pub const READ_KEPT: Duration = Duration::from_secs(2 * 3600);
/// OCR runs at most this many pictures at once (each takes a core for most of a second).
const AT_ONCE: usize = 2;

/// The name and number read from a call's card.
pub struct CardRead {
    /// 姓名.
    pub name: Option<Zeroizing<String>>,
    /// 公民身份号码.
    pub id_number: Option<Zeroizing<String>>,
    at: Instant,
}

/// The OCR and face models (loaded once, in the background at start), the reads and card portraits kept per call.
#[derive(Clone)]
pub struct Reader {
    ocr: Arc<OnceCell<Result<Ocr, String>>>,
    pub(crate) comparer: Arc<OnceCell<Result<Comparer, String>>>,
    permits: Arc<Semaphore>,
    reads: Arc<Mutex<HashMap<String, CardRead>>>,
    portraits: Arc<Mutex<HashMap<String, (Instant, dlib_face_recognition::FaceEncoding)>>>,
}

impl Reader {
    /// A reader whose models load from `dir` in the background; `ready` is told when they have.
    pub fn start(dir: std::path::PathBuf, ready: impl FnOnce(Result<(), String>) + Send + 'static) -> Reader {
        let r = Reader {
            ocr: Arc::default(),
            comparer: Arc::default(),
            permits: Arc::new(Semaphore::new(AT_ONCE)),
            reads: Arc::default(),
            portraits: Arc::default(),
        };
        let (ocr, comparer) = (r.ocr.clone(), r.comparer.clone());
        tokio::spawn(async move {
            let loaded =
                tokio::task::spawn_blocking(move || (Ocr::load(&dir).map_err(|e| e.to_string()), Comparer::load(&dir)))
                    .await
                    .unwrap_or_else(|e| (Err(e.to_string()), Err(e.to_string())));
            let both = match (&loaded.0, &loaded.1) {
                (Ok(_), Ok(_)) => Ok(()),
                (Err(e), _) | (_, Err(e)) => Err(e.clone()),
            };
            let _ = ocr.set(loaded.0);
            let _ = comparer.set(loaded.1);
            ready(both);
        });
        r
    }

    pub(crate) fn portrait(&self, call: &str) -> Option<dlib_face_recognition::FaceEncoding> {
        let mut p = self.portraits.lock().unwrap_or_else(|p| p.into_inner());
        p.retain(|_, (at, _)| at.elapsed() < READ_KEPT);
        p.get(call).map(|(_, e)| e.clone())
    }

    /// The name and number read for `call`, if still kept (taken: a read is used once).
    pub fn take(&self, call: &str) -> Option<CardRead> {
        let mut reads = self.reads.lock().unwrap_or_else(|p| p.into_inner());
        reads.retain(|_, r| r.at.elapsed() < READ_KEPT);
        reads.remove(call)
    }

    /// The name and number read for `call`, if still kept, left in place.
    pub(crate) fn peek(&self, call: &str) -> Option<(Zeroizing<String>, Zeroizing<String>)> {
        let reads = self.reads.lock().unwrap_or_else(|p| p.into_inner());
        let r = reads.get(call).filter(|r| r.at.elapsed() < READ_KEPT)?;
        Some((r.name.clone()?, r.id_number.clone()?))
    }

    fn keep(&self, call: &str, read: CardRead) {
        self.reads.lock().unwrap_or_else(|p| p.into_inner()).insert(call.to_string(), read);
    }
}

/// What [`on_camera`] gives back: the engine's result, the time it took, the still's SM3 (for the attestation) and
/// the still itself (PNG, for a vendor when the configuration asks for one).
pub(crate) type OnCamera<T> = (T, Duration, String, Vec<u8>);

/// Run `engine` on the customer's camera now (a still from the recorder, decoded) off the async threads, under the
/// engines' concurrency limit; or the answer that says why not.
pub(crate) async fn on_camera<T: Send + 'static>(
    s: &ApiState,
    recording: &str,
    engine: impl FnOnce(image::RgbImage) -> Result<T, String> + Send + 'static,
) -> Result<OnCamera<T>, Response> {
    let png = still(&s.cfg, recording)
        .await
        .map_err(|e| problem(StatusCode::CONFLICT, format!("no picture of the customer's camera: {e}")))?;
    let image_sm3 = to_hex(&vbank_crypto::hash::sm3(&png));
    let permit = s.reader.permits.clone().acquire_owned().await;
    let ran = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        let image = image::load_from_memory(&png).map_err(|e| format!("the recorder's still does not decode: {e}"))?;
        let started = Instant::now();
        engine(image.to_rgb8()).map(|v| (v, started.elapsed(), png))
    })
    .await;
    match ran {
        Ok(Ok((v, took, png))) => Ok((v, took, image_sm3, png)),
        Ok(Err(e)) => Err(problem(StatusCode::INTERNAL_SERVER_ERROR, e)),
        Err(e) => Err(problem(StatusCode::INTERNAL_SERVER_ERROR, format!("the engine stopped: {e}"))),
    }
}

#[derive(Deserialize)]
pub(crate) struct CardIn {
    call: String,
    recording: String,
    /// `front` (人像面) or `back` (国徽面).
    side: String,
}

fn masked_address(a: &str) -> String {
    let shown: String = a.chars().take(6).collect();
    if a.chars().count() > 6 { format!("{shown}…") } else { shown }
}

/// The vendor's read of the same still, when `[kyc] ocr` asks for one: the card, or the failure decided.
async fn vendor_read(s: &ApiState, png: &[u8], side: &str) -> Option<Result<(Card, Option<String>), Decision>> {
    let vendor = s.ocr_vendor.as_ref()?;
    let started = Instant::now();
    let read = vendor.read_card(png, side).await;
    s.metrics.vendor_seconds(vendor.name(), started.elapsed());
    Some(read)
}

/// Read the customer's ID card from their camera now: on the appliance, by the vendor, or both (`[kyc] ocr`).
pub(crate) async fn id_card(State(s): State<ApiState>, Json(r): Json<CardIn>) -> Response {
    if r.side != "front" && r.side != "back" {
        return problem(StatusCode::BAD_REQUEST, "side is \"front\" (人像面) or \"back\" (国徽面)");
    }
    let local = vbank_config::card_local(&s.cfg.kyc.ocr);
    if local && !matches!(s.reader.ocr.get(), Some(Ok(_))) {
        let why = match s.reader.ocr.get() {
            Some(Err(e)) => format!("OCR is not available on this node: {e}"),
            _ => "OCR is still loading its models: try again in a few seconds".into(),
        };
        return problem(StatusCode::SERVICE_UNAVAILABLE, why);
    }
    let (ocr, comparer) = (s.reader.ocr.clone(), s.reader.comparer.clone());
    let front_side = r.side == "front";
    let read = on_camera(&s, &r.recording, move |image| {
        let lines = match ocr.get() {
            Some(Ok(ocr)) if local => ocr.read(&image).map_err(|e| format!("OCR failed: {e}"))?,
            _ => Vec::new(),
        };
        // The card's portrait: the reference for comparing the customer's live face.
        let portrait = match comparer.get() {
            Some(Ok(c)) if front_side => compare::best_face(&image).and_then(|f| c.encode(&image, &f)),
            _ => None,
        };
        Ok((lines, portrait))
    })
    .await;
    let ((lines, portrait), took, image_sm3, png) = match read {
        Ok(r) => r,
        Err(refused) => return refused,
    };
    s.metrics.engine_seconds("id-card", took);
    let vendor = vendor_read(&s, &png, &r.side).await;
    let vendor_log_id = vendor.as_ref().and_then(|v| v.as_ref().ok()).and_then(|(_, id)| id.clone());
    let vendor_note = match &vendor {
        Some(Err(d)) => Some(format!("厂商识别未完成 · The vendor's read failed: {}", d.message())),
        _ => None,
    };
    const LOCAL_OCR: &str = "PP-OCRv4 (rapidocr-onnxruntime 1.4.4) on tract";
    let engine = match (local, &s.ocr_vendor) {
        (true, Some(v)) => format!("{LOCAL_OCR} + {}", v.engines().0),
        (false, Some(v)) => v.engines().0.to_string(),
        _ => LOCAL_OCR.to_string(),
    };
    let key = s.token_key.expose();
    let (shown, result) = if r.side == "front" {
        let today = vbank_kyc::id::Date::from_unix(now_us() / 1_000_000);
        let (mut f, agree) = match (local, &vendor) {
            (true, Some(Ok((card, _)))) => ocr_rule::merge_front(card::front(&lines, today), card),
            (false, Some(Ok((card, _)))) => (ocr_rule::front_from_vendor(card), true),
            _ => (card::front(&lines, today), true),
        };
        f.warnings.extend(vendor_note);
        let complete = f.name.is_some() && f.id_number.is_some();
        let verdict = match (complete, agree) {
            (true, true) => "read",
            (true, false) => "engines-disagree",
            _ => "incomplete",
        };
        let message = match verdict {
            "read" => "证件已识别 · The card was read".to_string(),
            "engines-disagree" => "两个识别引擎结果不一致，请目视核对后手工输入 · The engines disagree: check the card by \
                                   eye and type the name and number"
                .to_string(),
            _ => "未能读全姓名与号码：请客户将证件人像面正对摄像头、靠近并保持不动 · Name and number not both read: ask the \
                  customer to hold the photo side flat, closer, and still"
                .to_string(),
        };
        let shown = json!({
            "verdict": verdict, "message": message,
            "name": f.name.as_deref().map(mask::name), "id_number": f.id_number.as_deref().map(|n| s.masking.id(n)),
            "sex": f.sex, "ethnicity": f.ethnicity, "address": f.address.as_deref().map(masked_address),
            "warnings": f.warnings,
        });
        let result = json!({
            "result": verdict,
            "name_token": f.name.as_deref().map(|n| mask::token(key, "name", n)),
            "id_token": f.id_number.as_deref().map(|n| mask::token(key, "id", n)),
            "warnings": shown["warnings"],
        });
        if let Some(p) = portrait {
            s.reader.portraits.lock().unwrap_or_else(|p| p.into_inner()).insert(r.call.clone(), (Instant::now(), p));
        }
        if verdict == "read" {
            s.reader.keep(
                &r.call,
                CardRead {
                    name: f.name.map(Zeroizing::new),
                    id_number: f.id_number.map(Zeroizing::new),
                    at: Instant::now(),
                },
            );
        }
        (shown, result)
    } else {
        let b = match (local, &vendor) {
            (false, Some(Ok((card, _)))) => ocr_rule::back_from_vendor(card),
            (true, Some(Ok((card, _)))) => {
                let (l, v) = (card::back(&lines), ocr_rule::back_from_vendor(card));
                Back { authority: l.authority.or(v.authority), validity: l.validity.or(v.validity) }
            }
            _ => card::back(&lines),
        };
        let verdict = if b.authority.is_some() && b.validity.is_some() { "read" } else { "incomplete" };
        let message = if verdict == "read" {
            "国徽面已识别 · The emblem side was read".to_string()
        } else {
            "未能读全签发机关与有效期限：请客户将国徽面正对摄像头 · Authority and validity not both read: ask the \
             customer to show the emblem side flat and closer"
                .to_string()
        };
        let shown = json!({"verdict": verdict, "message": message, "authority": b.authority, "validity": b.validity,
                           "warnings": vendor_note.into_iter().collect::<Vec<_>>()});
        (shown.clone(), json!({"result": verdict, "authority": b.authority, "validity": b.validity}))
    };
    s.metrics.check("id-card", shown["verdict"].as_str().unwrap_or("?"));
    log::info!(
        "call {}: ID card {} side: {} ({} lines, {} ms)",
        r.call,
        r.side,
        shown["verdict"],
        lines.len(),
        took.as_millis()
    );
    let mut personal_data = vec![json!({"item": "one still of the customer's camera; name and ID number read from it",
        "kept": format!("not kept; the read is held in memory for this call's identity check for at most {} h", READ_KEPT.as_secs() / 3600),
        "deleted": "the still at once; the read when the identity check uses it, or after 2 h"})];
    if vendor.is_some() {
        let to = s.ocr_vendor.as_ref().map_or("the vendor", |v| v.name());
        personal_data.push(json!({"item": format!("the same still, sent to {to} for OCR"), "kept": "by the vendor under its contract; not here",
                                  "deleted": "as the bank's contract with the vendor says"}));
    }
    let attestation = json!({
        "kind": "kyc", "step": "id-card", "side": r.side, "call": r.call,
        "inputs": {"image_sm3": image_sm3, "source": "customer/camera keyframe decoded by the recorder"},
        "result": result["result"], "read": result, "engine": engine, "request_id": vendor_log_id,
        "at_us": now_us(), "personal_data": personal_data,
    });
    respond(&s, attestation, shown).await
}
