//! The privacy notice a customer accepts before queueing: what is collected, why, and how long it is kept, per
//! business type. The page shows the text the gateway serves; the queue request carries the SM3 hash of what was
//! shown, which must match, and the acceptance becomes the call's first recorded event.

use vbank_crypto::hash::sm3;
use vbank_crypto::to_hex;

/// The notice's version: bump it whenever a text changes.
pub const VERSION: &str = "2026-11";

/// Years a business type's recordings are kept (the bank's retention policy).
pub fn retention_years(business: &str) -> Option<u32> {
    match business {
        "corporate-account" => Some(5),
        "loan-signing" => Some(10),
        "wealth" => Some(20),
        _ => None,
    }
}

/// The notice for `business`.
pub fn text(business: &str) -> Option<String> {
    let years = retention_years(business)?;
    Some(format!(
        "隐私告知与同意（{VERSION}）\n\
         为办理本次业务，本行将采集：您的视频与音频、身份证件影像、人脸图像，以及您在通话中签署的文件。\n\
         用途：核实您的身份（含公安部公民身份信息联网核查），并按监管要求对业务全程录音录像（双录）。\n\
         保存：录音录像加密保存在本行内部，保存 {years} 年，仅经授权人员在行内调阅，每次调阅均有审计记录。\n\
         您可以拒绝，但将无法通过视频办理本业务。\n\n\
         Privacy notice and consent ({VERSION})\n\
         For this service the bank collects your video and audio, images of your ID document, your face, and the \
         documents you sign during the call.\n\
         Why: to verify your identity (including the police citizen-ID check) and, as regulators require, to record \
         the whole session (双录).\n\
         How long: the recording is kept encrypted inside the bank for {years} years; only authorised staff may play \
         it back, inside the bank, and every playback is audited.\n\
         You may refuse; the service then cannot be done by video."
    ))
}

/// SM3 of the notice text, hex.
pub fn hash(text: &str) -> String {
    to_hex(&sm3(text.as_bytes()))
}

#[cfg(test)]
mod tests {
    #[test]
    fn each_business_has_a_notice_with_its_retention_and_a_stable_hash() {
        let t = super::text("wealth").unwrap();
        assert!(t.contains("20 年") && t.contains("20 years"));
        assert_eq!(super::hash(&t), super::hash(&super::text("wealth").unwrap()));
        assert_ne!(super::hash(&t), super::hash(&super::text("loan-signing").unwrap()));
        assert!(super::text("mortgage").is_none());
    }
}
