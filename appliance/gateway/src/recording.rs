//! Every call is recorded (双录). Before the first participant of a call joins, the gateway has the recorder open a
//! recording: it mints a recorder call token through keyd and asks the recorder (mTLS) to join the call with it.
//! When that fails the join is refused (`[gateway] recording = "required"`, the default) — no banking call goes
//! unrecorded. When the last participant leaves, the recording is closed and sealed.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::Mutex;
use vbank_config::{Config, RecordingMode, Service};
use vbank_gateway_core::Role;
use vbank_service::client;

#[derive(Default)]
struct Call {
    /// Customers, tellers and specialists in the call (observers and the recorder do not keep it open).
    participants: usize,
    /// The recorder's id for this call's recording.
    recording: Option<String>,
    /// Ended and taken out of the map: whoever still holds it must look the room up again.
    ended: bool,
}

/// The calls on this gateway and their recordings. Each call has its own lock, so opening one call's recording
/// (network round trips to keyd and the recorder) never holds up joins to other calls.
#[derive(Clone)]
pub struct Calls {
    cfg: Option<Arc<Config>>,
    calls: Arc<std::sync::Mutex<HashMap<String, Arc<Mutex<Call>>>>>,
}

fn counts(role: Role) -> bool {
    matches!(role, Role::Customer | Role::Teller | Role::Specialist)
}

async fn post(cfg: &Config, to: Service, path: &str, body: Value) -> Result<Value, String> {
    let addr = if to == Service::Keyd { cfg.keyd.listen } else { cfg.recorder.listen };
    client::post_service(&cfg.tls, Service::Gateway, to, addr, path, &body, Duration::from_secs(20)).await
}

impl Calls {
    /// Calls recorded as `cfg` says.
    pub fn new(cfg: Config) -> Calls {
        Calls { cfg: Some(Arc::new(cfg)), calls: Arc::default() }
    }

    /// No recording (tests of the router alone).
    pub fn unrecorded() -> Calls {
        Calls { cfg: None, calls: Arc::default() }
    }

    /// The call in `room`, locked; a call that ended while we waited for its lock is replaced by a fresh one.
    async fn lock(&self, room: &str) -> tokio::sync::OwnedMutexGuard<Call> {
        loop {
            let call =
                self.calls.lock().unwrap_or_else(|p| p.into_inner()).entry(room.to_string()).or_default().clone();
            let guard = call.lock_owned().await;
            if !guard.ended {
                return guard;
            }
        }
    }

    /// The call in `room`, locked, if there is one.
    async fn existing(&self, room: &str) -> Option<tokio::sync::OwnedMutexGuard<Call>> {
        let call = self.calls.lock().unwrap_or_else(|p| p.into_inner()).get(room).cloned()?;
        let guard = call.lock_owned().await;
        (!guard.ended).then_some(guard)
    }

    /// Take the (locked) call out of the map.
    fn end(&self, room: &str, call: &mut Call) {
        call.ended = true;
        self.calls.lock().unwrap_or_else(|p| p.into_inner()).remove(room);
    }

    fn mode(&self) -> RecordingMode {
        self.cfg.as_ref().map_or(RecordingMode::Off, |c| c.gateway.recording)
    }

    /// A participant of `role` is about to join `room`: make sure the call is being recorded first. An error says
    /// why the participant must not join.
    pub async fn admit(&self, room: &str, role: Role) -> Result<(), String> {
        if !counts(role) {
            return Ok(());
        }
        let mut call = self.lock(room).await;
        if call.recording.is_none()
            && let Some(cfg) = self.cfg.as_ref().filter(|_| self.mode() != RecordingMode::Off)
        {
            match open(cfg, room, None).await {
                Ok(id) => {
                    log::info!(room = room; "recording {id} opened");
                    call.recording = Some(id);
                }
                Err(e) if self.mode() == RecordingMode::Required => {
                    if call.participants == 0 {
                        self.end(room, &mut call);
                    }
                    log::error!(room = room; "call refused: it cannot be recorded: {e}");
                    return Err(format!(
                        "this call cannot be recorded ({e}), so it cannot start: try again in a minute, or ask the \
                         bank's IT to check the recorder"
                    ));
                }
                Err(e) => log::warn!(room = room; "call not recorded (recording = \"when-available\"): {e}"),
            }
        }
        call.participants += 1;
        self.event(call.recording.clone(), json!({"kind": "joined", "role": role.name()}));
        Ok(())
    }

    /// Send a call event to the call's recording, in the background (a lost event is logged, never blocks the call).
    fn event(&self, recording: Option<String>, event: Value) {
        let (Some(id), Some(cfg)) = (recording, self.cfg.clone()) else { return };
        tokio::spawn(async move {
            let path = format!("/v1/recordings/{id}/events");
            if let Err(e) = post(&cfg, Service::Recorder, &path, json!({"events": [event]})).await {
                log::warn!("recording {id}: a call event was not recorded: {e}");
            }
        });
    }

    /// The recorder's m-line `mid` in `room` now carries the track `label` (e.g. `customer/camera`).
    pub async fn track_bound(&self, room: &str, mid: &str, label: &str) {
        let Some(call) = self.existing(room).await else { return };
        self.event(call.recording.clone(), json!({"kind": "track", "mid": mid, "label": label}));
    }

    /// A participant admitted with [`Calls::admit`] left (or its join failed). The last one out closes the recording.
    /// The recorder leaving a call that goes on (it crashed) gets the call a new recording.
    pub async fn left(&self, room: &str, role: Role) {
        if role == Role::Recorder {
            self.recorder_left(room).await;
            return;
        }
        if !counts(role) {
            return;
        }
        let Some(mut call) = self.existing(room).await else { return };
        call.participants = call.participants.saturating_sub(1);
        let left = json!({"kind": "left", "role": role.name()});
        if call.participants > 0 {
            self.event(call.recording.clone(), left);
            return;
        }
        self.end(room, &mut call);
        let recording = call.recording.take();
        if let (Some(id), Some(cfg)) = (recording, self.cfg.clone()) {
            let room = room.to_string();
            tokio::spawn(async move {
                let events = json!({"events": [left]});
                if let Err(e) = post(&cfg, Service::Recorder, &format!("/v1/recordings/{id}/events"), events).await {
                    log::warn!("recording {id}: a call event was not recorded: {e}");
                }
                match post(&cfg, Service::Recorder, &format!("/v1/recordings/{id}/finish"), json!({})).await {
                    Ok(v) => {
                        log::info!(room = room.as_str(); "recording {id} closed and sealed: {} segments", v["segments"])
                    }
                    Err(e) => log::error!(room = room.as_str(); "recording {id} could not be closed: {e}"),
                }
            });
        }
    }
}

impl Calls {
    async fn recorder_left(&self, room: &str) {
        let Some(cfg) = self.cfg.clone() else { return };
        let lost = {
            let Some(mut call) = self.existing(room).await.filter(|c| c.participants > 0) else { return };
            let lost = call.recording.take();
            log::error!(room = room; "the recorder dropped out of the call (recording {lost:?}); opening a new recording");
            lost
        };
        let (calls, room) = (self.clone(), room.to_string());
        tokio::spawn(async move {
            // The recorder is being restarted by its supervisor: keep asking for two minutes.
            for _ in 0..60 {
                {
                    let Some(mut call) =
                        calls.existing(&room).await.filter(|c| c.participants > 0 && c.recording.is_none())
                    else {
                        return;
                    };
                    match open(&cfg, &room, lost.as_deref()).await {
                        Ok(id) => {
                            log::info!(room = room.as_str(); "recording {id} opened; the call goes on recorded");
                            call.recording = Some(id);
                            return;
                        }
                        Err(e) => log::warn!(room = room.as_str(); "no new recording yet: {e}"),
                    }
                }
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
            log::error!(room = room.as_str(); "the call could not be recorded again within two minutes");
        });
    }
}

/// Mint a recorder token for `room` and have the recorder join with it (continuing recording `continues`, if the
/// recorder dropped out of the call); the recording's id.
async fn open(cfg: &Config, room: &str, continues: Option<&str>) -> Result<String, String> {
    let t = post(cfg, Service::Keyd, "/v1/token/sign", json!({"room": room, "role": "recorder", "ttl_s": 600})).await?;
    let token = t["token"].as_str().ok_or("keyd signed no token")?;
    let body = json!({"call": room, "token": token, "continues": continues});
    let r = post(cfg, Service::Recorder, "/v1/recordings", body).await?;
    Ok(r["id"].as_str().ok_or("the recorder gave no recording id")?.to_string())
}
