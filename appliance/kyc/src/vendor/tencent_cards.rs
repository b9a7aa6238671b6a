//! Tencent Cloud's card and face checks (API 3.0, TC3-signed): `IDCardOCR` (ocr, 2018-11-19: the card's fields and
//! the `AdvancedInfo` warnings — copy, reshoot, PS, temporary card, invalid dates, border, blur) and
//! `ImageRecognitionV2` (faceid, 2018-03-01: the live face against the authority's photo of the person named, `Sim`
//! 0–100; [`SAME_PERSON`] and above, about one false accept in 1,000).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Value, json};

use super::tencent::Tencent;
use super::{Card, Decision, HttpRequest, Verdict, decided};

/// The vendor's documented threshold for `ImageRecognitionV2` (≈ 1/1000 false accepts).
pub const SAME_PERSON: f64 = 70.0;

/// The warnings `IDCardOCR` is asked for.
const OCR_CONFIG: &str = r#"{"CopyWarn":true,"BorderCheckWarn":true,"ReshootWarn":true,"DetectPsWarn":true,"TempIdWarn":true,"InvalidDateWarn":true}"#;

impl Tencent {
    /// `IDCardOCR` of `image` (PNG or JPEG), `side` `front` or `back`.
    pub fn ocr_request(&self, image: &[u8], side: &str, now_s: u64) -> HttpRequest {
        let side = if side == "back" { "BACK" } else { "FRONT" };
        let body = json!({"ImageBase64": B64.encode(image), "CardSide": side, "Config": OCR_CONFIG});
        self.signed(("ocr", &self.ocr_host), ("IDCardOCR", "2018-11-19"), body.to_string().into_bytes(), now_s)
    }

    /// `ImageRecognitionV2`: the live face in `image` against the authority's photo of `name`/`id_number`.
    pub fn face_request(&self, image: &[u8], name: &str, id_number: &str, now_s: u64) -> HttpRequest {
        let body = json!({"IdCard": id_number, "Name": name, "ImageBase64": B64.encode(image)});
        self.signed(("faceid", &self.host), ("ImageRecognitionV2", "2018-03-01"), body.to_string().into_bytes(), now_s)
    }
}

/// The API 3.0 envelope's `Response`, or the failure decided (transport, unreadable, an `Error`).
fn response(status: u16, body: &[u8]) -> Result<(Value, Option<String>), Decision> {
    if (500..600).contains(&status) || status == 429 {
        return Err(decided(Verdict::Unavailable(format!("HTTP {status}")), false, true, None));
    }
    let v: Value = serde_json::from_slice(body)
        .map_err(|_| decided(Verdict::Unavailable("an unreadable answer".into()), true, false, None))?;
    let r = v["Response"].clone();
    let request_id = r["RequestId"].as_str().map(str::to_string);
    let Some(code) = r["Error"]["Code"].as_str() else { return Ok((r, request_id)) };
    let why = format!("{code}: {}", r["Error"]["Message"].as_str().unwrap_or_default());
    Err(match code {
        "RequestLimitExceeded" | "InternalError" | "ResourceUnavailable" | "FailedOperation.UnKnown" => {
            decided(Verdict::Unavailable(why), false, true, request_id)
        }
        c if c.starts_with("AuthFailure") || c.starts_with("UnauthorizedOperation") => {
            decided(Verdict::Misconfigured(why), false, false, request_id)
        }
        "FailedOperation.IdNameMisMatch" => decided(Verdict::Mismatch, true, false, request_id),
        "FailedOperation.IdNoExistSystem" | "FailedOperation.IdPhotoNoExist" => {
            decided(Verdict::NoRecord, false, false, request_id)
        }
        c if c.starts_with("InvalidParameter")
            || c.starts_with("FailedOperation.Image")
            || c.starts_with("LimitExceeded.TooLarge")
            || matches!(
                c,
                "FailedOperation.OcrFailed" | "FailedOperation.IdCardInfoIllegal" | "FailedOperation.IdFormatError"
            ) =>
        {
            decided(Verdict::BadInput(why), false, false, request_id)
        }
        _ => decided(Verdict::Unavailable(why), false, false, request_id),
    })
}

/// What a `WarnInfos` code warns of.
fn warning(code: i64) -> String {
    match code {
        -9100 => "身份证有效日期不合法 · The validity dates are not valid".into(),
        -9101 => "边框不完整 · The card's border is cut off".into(),
        -9102 => "疑似复印件 · Looks like a photocopy".into(),
        -9103 => "疑似翻拍 · Looks like a photo of a screen".into(),
        -9104 => "临时身份证 · A temporary ID card".into(),
        -9105 => "框内遮挡 · Something covers the card".into(),
        -9106 => "疑似 PS · Looks edited".into(),
        -9107 => "反光 · Glare on the card".into(),
        -9108 => "模糊 · The picture is blurred".into(),
        other => format!("告警 {other} · Warning {other}"),
    }
}

/// The `IDCardOCR` answer.
pub fn ocr(status: u16, body: &[u8]) -> Result<(Card, Option<String>), Decision> {
    let (r, request_id) = response(status, body)?;
    let names = [
        ("Name", "姓名"),
        ("Sex", "性别"),
        ("Nation", "民族"),
        ("Birth", "出生"),
        ("Address", "住址"),
        ("IdNum", "公民身份号码"),
        ("Authority", "签发机关"),
        ("ValidDate", "有效期限"),
    ];
    let fields =
        names.iter().filter_map(|(k, zh)| r[*k].as_str().map(|v| (zh.to_string(), v.trim().to_string()))).collect();
    let advanced: Value = r["AdvancedInfo"].as_str().and_then(|a| serde_json::from_str(a).ok()).unwrap_or_default();
    let warnings =
        advanced["WarnInfos"].as_array().into_iter().flatten().filter_map(Value::as_i64).map(warning).collect();
    Ok((Card { fields, warnings }, request_id))
}

/// The `ImageRecognitionV2` answer: the similarity (a low one is an answer too).
pub fn face(status: u16, body: &[u8]) -> Result<(f64, Option<String>), Decision> {
    let (r, request_id) = response(status, body)?;
    match (r["Result"].as_str(), r["Sim"].as_f64()) {
        (Some("Success" | "FailedOperation.CompareLowSimilarity"), Some(sim)) => Ok((sim, request_id)),
        (Some(code), _) => {
            let envelope =
                json!({"Response": {"Error": {"Code": code, "Message": r["Description"]}, "RequestId": request_id}});
            response(200, envelope.to_string().as_bytes()).map(|_| (0.0, None))
        }
        _ => Err(decided(Verdict::Unavailable("an answer without a result".into()), true, false, request_id)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_warnings_scores_and_errors() {
        let body = json!({"Response": {"Name": "测试甲", "IdNum": "11010519491231002X", "Sex": "男",
                                       "AdvancedInfo": "{\"WarnInfos\":[-9102,-9108]}", "RequestId": "r1"}});
        let (card, id) = ocr(200, body.to_string().as_bytes()).unwrap();
        assert_eq!(
            (card.get("姓名"), card.get("公民身份号码"), id.as_deref()),
            (Some("测试甲"), Some("11010519491231002X"), Some("r1"))
        );
        assert!(card.warnings[0].contains("photocopy") && card.warnings[1].contains("blurred"));
        let err =
            |code: &str| json!({"Response": {"Error": {"Code": code, "Message": "m"}, "RequestId": "r"}}).to_string();
        assert!(matches!(
            ocr(200, err("FailedOperation.ImageNoIdCard").as_bytes()).unwrap_err().verdict,
            Verdict::BadInput(_)
        ));
        assert!(ocr(200, err("RequestLimitExceeded").as_bytes()).unwrap_err().retryable);

        let sim = |result: &str, sim: f64| {
            json!({"Response": {"Result": result, "Sim": sim, "Description": "d", "RequestId": "r"}}).to_string()
        };
        assert_eq!(face(200, sim("Success", 91.0).as_bytes()).unwrap().0, 91.0);
        assert_eq!(face(200, sim("FailedOperation.CompareLowSimilarity", 31.0).as_bytes()).unwrap().0, 31.0);
        assert_eq!(
            face(200, sim("FailedOperation.IdNameMisMatch", 0.0).as_bytes()).unwrap_err().verdict,
            Verdict::Mismatch
        );
        assert_eq!(
            face(200, sim("FailedOperation.IdNoExistSystem", 0.0).as_bytes()).unwrap_err().verdict,
            Verdict::NoRecord
        );
        assert!(face(200, b"{\"Resp").unwrap_err().billed);
    }
}
