//! The IO side of continuing a call's recording (`continuity` has the logic): resume a recording a crash left open,
//! or rejoin the call with a capture whose session the gateway dropped, and take the gateway's backlog.

use std::time::Duration;

use axum::http::StatusCode;
use vbank_recorder::recording::{Recording, RecordingHeader};
use vbank_recorder::segmenter::Policy;
use vbank_service::client::{self, Method};

use crate::capture::Capture;
use crate::{ApiState, OpenIn, RecorderServiceError, continuity, join, now_us, playback};

/// Continue the recording `old` of the call (left open when the recorder stopped): repair it, note the gap, join
/// the call and write the gateway's backlog into it, then capture on.
pub(crate) async fn resume_recording(s: &ApiState, r: &OpenIn, old: &str) -> Result<(), RecorderServiceError> {
    let cfg = &s.cfg;
    let dir = cfg.recorder.dir.join(old);
    let bytes = std::fs::read(dir.join("recording.json"))
        .map_err(|e| RecorderServiceError::Recording(format!("{}: {e}", dir.display())))?;
    let header: RecordingHeader =
        serde_json::from_slice(&bytes).map_err(|e| RecorderServiceError::Recording(e.to_string()))?;
    let key =
        playback::open_key(cfg, &header, "recorder", "continue the recording after the recorder restarted").await?;
    let policy =
        Policy { roll_every: Duration::from_secs(u64::from(cfg.recorder.segment_seconds)), ..Policy::default() };
    let reason = if r.moved_from.is_some() { continuity::MOVED } else { continuity::RESUMED };
    let recording = tokio::task::spawn_blocking(move || Recording::resume(&dir, key, policy, now_us(), reason))
        .await
        .map_err(|e| RecorderServiceError::Recording(e.to_string()))?
        .map_err(|e| RecorderServiceError::Recording(e.to_string()))?;
    let capture = join(cfg, r, recording).await?;
    s.live.lock().await.insert(old.to_string(), capture);
    Ok(())
}

/// The capture of `old`, taken out of the live ones (and marked busy), when it is still running and records `call`.
pub(crate) async fn take_lost(s: &ApiState, old: &str, call: &str) -> Option<Capture> {
    let header: Option<RecordingHeader> = std::fs::read(s.cfg.recorder.dir.join(old).join("recording.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok());
    let running = s.live.lock().await.get(old).is_some_and(|c| !c.has_stopped());
    if !running || header.is_none_or(|h| h.call != call) {
        return None;
    }
    s.take_live(old).await
}

/// Stop the capture whose session the gateway dropped, note the gap in its recording, and join the call again into
/// the same recording (the backlog first). A capture that had failed is closed like any other.
pub(crate) async fn rejoin(s: &ApiState, r: &OpenIn, old: &str, capture: Capture) -> Result<(), RecorderServiceError> {
    let ended = tokio::task::spawn_blocking(move || capture.stop())
        .await
        .map_err(|e| RecorderServiceError::Media(e.to_string()))??;
    let mut recording = ended.recording;
    if let Some(e) = ended.error {
        drop(recording);
        s.stopped.lock().expect("not poisoned").insert(old.to_string(), format!("recording stopped: {e}"));
        return Err(e);
    }
    recording
        .interrupt(now_us(), continuity::INTERRUPTED)
        .map_err(|e| RecorderServiceError::Recording(e.to_string()))?;
    let capture = join(&s.cfg, r, recording).await?;
    s.live.lock().await.insert(old.to_string(), capture);
    Ok(())
}

/// Whether `old` is a recording of `call` left open with no capture writing it: one the recorder can continue. One
/// whose capture stopped on an error (a full disk) is not: the sweep closes it with that reason, and the call goes on
/// in a new recording.
pub(crate) fn resumable(s: &ApiState, old: &str, call: &str) -> bool {
    let dir = s.cfg.recorder.dir.join(old);
    let safe = !old.is_empty() && old.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    let header =
        || -> Option<RecordingHeader> { serde_json::from_slice(&std::fs::read(dir.join("recording.json")).ok()?).ok() };
    safe && !dir.join("manifest.json").exists()
        && !s.busy.lock().expect("not poisoned").contains(old)
        && !s.stopped.lock().expect("not poisoned").contains_key(old)
        && s.live.try_lock().is_ok_and(|l| !l.contains_key(old))
        && header().is_some_and(|h| h.call == call)
}

/// Take the gateway's backlog (`GET {location}/backlog`) and write it into `recording`; also which track each of
/// our m-lines carries. Without it (an error), the recording goes on with the gap it noted.
pub(crate) async fn take_backlog(
    conn: &mut client::Connection,
    location: &str,
    bearer: &str,
    mut recording: Recording,
) -> (Recording, Vec<(String, String)>) {
    let id = recording.header().recording.clone();
    let got = conn.request_with(Method::GET, &format!("{location}/backlog"), &[("authorization", bearer)], None).await;
    let decoded = match got {
        Ok((StatusCode::OK, _, body)) => vbank_gateway_core::backlog::decode(&body),
        Ok((status, _, body)) => Err(format!("{status} {}", String::from_utf8_lossy(&body).trim())),
        Err(e) => Err(e.to_string()),
    };
    let (bound, frames) = match decoded {
        Ok(d) => d,
        Err(e) => {
            log::warn!("recording {id}: no backlog from the gateway ({e}); the time the recorder was away stays a gap");
            return (recording, Vec::new());
        }
    };
    let written = tokio::task::spawn_blocking(move || {
        let w = continuity::write_backlog(&mut recording, &frames);
        (recording, w)
    })
    .await;
    match written {
        Ok((recording, Ok(w))) => {
            log::info!(
                "recording {id}: {} frames from the gateway's backlog ({} already kept, {} of other codecs)",
                w.frames,
                w.already,
                w.skipped
            );
            (recording, bound)
        }
        Ok((recording, Err(e))) => {
            log::error!("recording {id}: writing the backlog failed: {e}");
            (recording, bound)
        }
        Err(e) => panic!("the backlog writer panicked: {e}"),
    }
}
