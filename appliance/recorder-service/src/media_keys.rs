//! The media keys of end-to-end encrypted calls. The gateway puts each epoch's key in the recording as a `media_key`
//! call event: the key wrapped under the media KEK (its envelope) and the context it is bound to. The recorder opens
//! it through keyd (audited; only the recorder may open media keys): while the call is on, to decode stills for KYC;
//! afterwards, for fusion and playback, under the viewer's name and reason.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};
use vbank_config::Config;
use vbank_crypto::from_hex;
use vbank_fusion::depacketize::vp8_size;
use vbank_sframe::{Codec, EpochKeys, Suite};
use zeroize::Zeroizing;

use crate::still::Keyframe;
use crate::{RecorderServiceError, keyd};

/// Open one `media_key` event's key through keyd for `on_behalf`: the suite, the epoch and the key.
pub async fn open_event(
    cfg: &Config,
    event: &Value,
    on_behalf: &str,
    reason: &str,
) -> Result<(Suite, u64, Zeroizing<Vec<u8>>), RecorderServiceError> {
    let bad = |what: &str| RecorderServiceError::Recording(format!("a media_key event without {what}"));
    let epoch = event["epoch"].as_u64().ok_or_else(|| bad("its epoch"))?;
    let suite = match event["alg"].as_str().ok_or_else(|| bad("its alg"))? {
        "sm4-gcm" => Suite::Sm4GcmSm3,
        "aes-256-gcm" => Suite::Aes256GcmSha512,
        other => return Err(RecorderServiceError::Recording(format!("a media key of unknown alg {other:?}"))),
    };
    let v = keyd(
        cfg,
        "/v1/dek/open",
        json!({"purpose": "media", "envelope": event["envelope"], "context": event["context"],
               "on_behalf": on_behalf, "reason": reason}),
    )
    .await?;
    let hex = Zeroizing::new(
        v["key"].as_str().ok_or_else(|| RecorderServiceError::Keyd("keyd gave no key".into()))?.to_string(),
    );
    let key = Zeroizing::new(from_hex(&hex).map_err(|e| RecorderServiceError::Keyd(format!("keyd's key: {e}")))?);
    Ok((suite, epoch, key))
}

/// Every media key in `events` (a recording's call events), opened for `on_behalf`; `None` when the call was not
/// end-to-end encrypted.
pub async fn open_all(
    cfg: &Config,
    events: &[Value],
    on_behalf: &str,
    reason: &str,
) -> Result<Option<EpochKeys>, RecorderServiceError> {
    let mut keys = EpochKeys::new();
    for e in events.iter().filter(|e| e["kind"] == "media_key") {
        let (suite, epoch, key) = open_event(cfg, e, on_behalf, reason).await?;
        keys.add_epoch(suite, epoch, &key);
    }
    Ok((!keys.is_empty()).then_some(keys))
}

/// The keys of the end-to-end encrypted calls being recorded now, by recording id.
#[derive(Clone, Default)]
pub struct LiveKeys(Arc<Mutex<HashMap<String, EpochKeys>>>);

impl LiveKeys {
    /// A call event of `recording` arrived: hold the key if it is a media key.
    pub async fn note(&self, cfg: &Config, recording: &str, event: &Value) {
        if event["kind"] != "media_key" {
            return;
        }
        match open_event(cfg, event, "recorder", "stills of an end-to-end encrypted call").await {
            Ok((suite, epoch, key)) => {
                let mut all = self.0.lock().unwrap_or_else(|p| p.into_inner());
                all.entry(recording.to_string()).or_default().add_epoch(suite, epoch, &key);
            }
            Err(e) => log::warn!("recording {recording}: the call's media key could not be opened for stills: {e}"),
        }
    }

    /// Open a keyframe of `recording` when its call is end-to-end encrypted; as it is otherwise.
    pub fn open_still(&self, recording: &str, k: &mut Keyframe) -> Result<(), String> {
        let mut all = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let Some(keys) = all.get_mut(recording) else { return Ok(()) };
        let (plain, _) = keys
            .open(Codec::Vp8, &k.frame.data)
            .map_err(|e| format!("the end-to-end encrypted keyframe could not be opened: {e}"))?;
        k.frame.size = vp8_size(&plain);
        k.frame.data = plain;
        Ok(())
    }

    /// The recording closed: drop its keys.
    pub fn forget(&self, recording: &str) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).remove(recording);
    }
}
