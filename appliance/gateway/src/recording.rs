//! Every call is recorded (双录). Before the first participant of a call joins, the gateway has the recorder open a
//! recording: it mints a recorder call token through keyd and asks the recorder (mTLS) to join the call with it.
//! When that fails the join is refused (`[gateway] recording = "required"`, the default) — no banking call goes
//! unrecorded. When the last participant leaves, the recording is closed and sealed. When the recorder drops out of a
//! call that goes on, the restarted recorder is asked to continue the same recording. When a call's gateway node died
//! and its participants rejoin here, this node's recorder continues the recording that node was writing (`failover`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::{Mutex, mpsc};
use vbank_config::{Config, RecordingMode, Service};
use vbank_gateway_core::Role;
use vbank_service::client;

#[derive(Default)]
struct Call {
    /// Customers, tellers and specialists in the call (observers and the recorder do not keep it open).
    participants: usize,
    /// The recorder's id for this call's recording.
    recording: Option<String>,
    /// The recording's event pump: events reach the recorder in the order they happened, then the finish.
    pump: Option<mpsc::UnboundedSender<Pump>>,
    /// Ended and taken out of the map: whoever still holds it must look the room up again.
    ended: bool,
    /// While the recorder that dropped out is being asked to continue: the call's events meanwhile (joins, leaves,
    /// media keys), recorded first once it does.
    held: Option<Vec<Value>>,
    /// The recording the recorder that dropped out was writing, until it is continued.
    continuing: Option<String>,
}

impl Call {
    /// The recording `id` is open: start its pump, and record first what was held while it was reopened.
    fn opened(&mut self, cfg: &Arc<Config>, id: String, room: &str) {
        self.pump = Some(pump(cfg.clone(), id.clone(), room.to_string()));
        self.recording = Some(id);
        self.continuing = None;
        let held = self.held.take().unwrap_or_default();
        self.send(held);
    }

    fn send(&mut self, events: Vec<Value>) {
        if let Some(p) = &self.pump {
            for e in events {
                let _ = p.send(Pump::Event(e));
            }
        } else if let Some(held) = &mut self.held
            && held.len() < 10_000
        {
            // The recorder stamps events as they reach it: say when this one happened.
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_micros());
            held.extend(events.into_iter().map(|mut e| {
                e["held_at_us"] = (now as u64).into();
                e
            }));
        }
    }
}

/// What a recording's pump carries.
enum Pump {
    Event(Value),
    /// Close and seal the recording (after every event before it).
    Finish,
}

/// Post a recording's events to the recorder one batch at a time, in order, then its finish. One pump per recording,
/// so two joins at the same instant cannot swap their events on the way.
fn pump(cfg: Arc<Config>, id: String, room: String) -> mpsc::UnboundedSender<Pump> {
    let (tx, mut rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(first) = rx.recv().await {
            let mut batch = Vec::new();
            let mut finish = false;
            let mut next = Some(first);
            while let Some(p) = next {
                match p {
                    Pump::Event(v) => batch.push(v),
                    Pump::Finish => {
                        finish = true;
                        break;
                    }
                }
                next = rx.try_recv().ok();
            }
            if !batch.is_empty() {
                let path = format!("/v1/recordings/{id}/events");
                if let Err(e) = post(&cfg, Service::Recorder, &path, json!({"events": batch})).await {
                    log::warn!(room = room.as_str(); "recording {id}: call events were not recorded: {e}");
                }
            }
            if finish {
                match post(&cfg, Service::Recorder, &format!("/v1/recordings/{id}/finish"), json!({})).await {
                    Ok(v) => {
                        log::info!(room = room.as_str(); "recording {id} closed and sealed: {} segments", v["segments"])
                    }
                    Err(e) => log::error!(room = room.as_str(); "recording {id} could not be closed: {e}"),
                }
                return;
            }
        }
    });
    tx
}

/// The calls on this gateway and their recordings. Each call has its own lock, so opening one call's recording
/// (network round trips to keyd and the recorder) never holds up joins to other calls.
#[derive(Clone)]
pub struct Calls {
    cfg: Option<Arc<Config>>,
    calls: Arc<std::sync::Mutex<HashMap<String, Arc<Mutex<Call>>>>>,
    /// Events for calls whose recording is not open yet (the consent, given before anyone joined).
    pending: Arc<std::sync::Mutex<HashMap<String, Vec<Value>>>>,
    /// Which calls are end-to-end encrypted, and their media keys' epochs.
    pub e2ee: crate::e2ee::E2ee,
    /// The shared registry of recorded calls, so another node can continue them (`failover`).
    registry: Option<crate::failover::Registry>,
}

fn counts(role: Role) -> bool {
    matches!(role, Role::Customer | Role::Teller | Role::Specialist)
}

/// POST `body` to keyd, the recorder or the KYC service as the gateway (mTLS); the answer's JSON.
pub(crate) async fn post(cfg: &Config, to: Service, path: &str, body: Value) -> Result<Value, String> {
    let addr = match to {
        Service::Keyd => cfg.keyd.listen,
        Service::Kyc => cfg.kyc.listen,
        _ => cfg.recorder.listen,
    };
    client::post_service(&cfg.tls, Service::Gateway, to, addr, path, &body, Duration::from_secs(20)).await
}

impl Calls {
    /// Calls recorded as `cfg` says.
    pub fn new(cfg: Config) -> Calls {
        let cfg = Arc::new(cfg);
        let e2ee = crate::e2ee::E2ee::new(Some(cfg.clone()));
        Calls { cfg: Some(cfg), calls: Arc::default(), pending: Arc::default(), e2ee, registry: None }
    }

    /// Note each recorded call in the shared registry, and continue the recordings of calls whose node is gone.
    pub fn with_registry(mut self, registry: crate::failover::Registry) -> Calls {
        self.registry = Some(registry);
        self
    }

    /// No recording (tests of the router alone).
    pub fn unrecorded() -> Calls {
        let e2ee = crate::e2ee::E2ee::new(None);
        Calls { cfg: None, calls: Arc::default(), pending: Arc::default(), e2ee, registry: None }
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

    /// The recorder's id for the recording of the call in `room`, while it is on.
    pub async fn recording_of(&self, room: &str) -> Option<String> {
        self.existing(room).await.and_then(|c| c.recording.clone())
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
            let mut moved_from = None;
            if call.participants == 0
                && call.continuing.is_none()
                && let Some(orphan) = self.orphan(room).await
            {
                // The call's node is gone and its participants are rejoining here: continue its recording.
                call.continuing = Some(orphan.recording);
                moved_from = Some(orphan.node);
            }
            match open(cfg, room, call.continuing.clone().as_deref(), moved_from.as_deref()).await {
                Ok(id) => {
                    log::info!(room = room; "recording {id} opened");
                    self.registered(room, &id).await;
                    call.opened(cfg, id, room);
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
        let mut events = self.pending.lock().unwrap_or_else(|p| p.into_inner()).remove(room).unwrap_or_default();
        events.push(json!({"kind": "joined", "role": role.name()}));
        call.send(events);
        Ok(())
    }

    /// An event for the call in `room` (e.g. the customer's consent, given before anyone joined): recorded now if
    /// the call is on, else as the first event once its recording opens.
    pub fn note(&self, room: &str, event: Value) {
        let exists = self.calls.lock().unwrap_or_else(|p| p.into_inner()).contains_key(room);
        if exists {
            let (calls, room) = (self.clone(), room.to_string());
            tokio::spawn(async move {
                if let Some(mut call) = calls.existing(&room).await {
                    call.send(vec![event]);
                }
            });
            return;
        }
        self.hold(room, event);
    }

    /// Like [`Calls::note`], awaited: events recorded one after another by one task keep their order (a call
    /// message's place in the recording is its place in the room).
    pub async fn record(&self, room: &str, event: Value) {
        match self.existing(room).await {
            Some(mut call) => call.send(vec![event]),
            None => self.hold(room, event),
        }
    }

    fn hold(&self, room: &str, event: Value) {
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        // Bounded: rooms nobody ever joins do not hold events forever.
        if pending.len() > 10_000 {
            pending.clear();
        }
        pending.entry(room.to_string()).or_default().push(event);
    }

    /// The recorder's m-line `mid` in `room` now carries the track `label` (e.g. `customer/camera`).
    pub async fn track_bound(&self, room: &str, mid: &str, label: &str) {
        let Some(mut call) = self.existing(room).await else { return };
        call.send(vec![json!({"kind": "track", "mid": mid, "label": label})]);
    }

    /// A participant admitted with [`Calls::admit`] left (or its join failed). The last one out closes the recording.
    /// The recorder leaving a call that goes on (it crashed) has the restarted recorder continue the same recording
    /// (or, if it cannot, start a new one naming it); the call's events meanwhile are held for it.
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
        call.send(vec![json!({"kind": "left", "role": role.name()})]);
        if call.participants > 0 {
            return;
        }
        self.end(room, &mut call);
        call.recording = None;
        if let Some(p) = call.pump.take() {
            let _ = p.send(Pump::Finish);
        }
        if let Some(r) = &self.registry {
            r.ended(room).await;
        }
    }

    async fn orphan(&self, room: &str) -> Option<crate::failover::Orphan> {
        self.registry.as_ref()?.orphan(room).await
    }

    async fn registered(&self, room: &str, recording: &str) {
        if let Some(r) = &self.registry {
            r.opened(room, recording).await;
        }
    }
}

impl Calls {
    async fn recorder_left(&self, room: &str) {
        let Some(cfg) = self.cfg.clone() else { return };
        let lost = {
            let Some(mut call) = self.existing(room).await.filter(|c| c.participants > 0) else { return };
            // A recorder that drops out again before it continued leaves the same recording to continue.
            let lost = call.recording.take().or_else(|| call.continuing.clone());
            call.pump = None; // the old pump drains what it has, then ends
            call.held.get_or_insert_with(Vec::new);
            call.continuing.clone_from(&lost);
            log::error!(room = room; "the recorder dropped out of the call (recording {lost:?}); asking it to continue");
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
                    match open(&cfg, &room, lost.as_deref(), None).await {
                        Ok(id) => {
                            log::info!(room = room.as_str(); "recording {id} opened; the call goes on recorded");
                            calls.registered(&room, &id).await;
                            call.opened(&cfg, id, &room);
                            return;
                        }
                        Err(e) => log::warn!(room = room.as_str(); "no new recording yet: {e}"),
                    }
                }
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
            if let Some(mut call) = calls.existing(&room).await {
                (call.held, call.continuing) = (None, None);
            }
            log::error!(room = room.as_str(); "the call could not be recorded again within two minutes");
        });
    }
}

/// Mint a recorder token for `room` and have the recorder join with it (continuing recording `continues`, if the
/// recorder dropped out of the call, or the call moved here from the lost node `moved_from`); the recording's id.
async fn open(cfg: &Config, room: &str, continues: Option<&str>, moved_from: Option<&str>) -> Result<String, String> {
    let t = post(cfg, Service::Keyd, "/v1/token/sign", json!({"room": room, "role": "recorder", "ttl_s": 600})).await?;
    let token = t["token"].as_str().ok_or("keyd signed no token")?;
    let body = json!({"call": room, "token": token, "continues": continues, "moved_from": moved_from});
    let r = post(cfg, Service::Recorder, "/v1/recordings", body).await?;
    Ok(r["id"].as_str().ok_or("the recorder gave no recording id")?.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_while_the_recorder_is_away_are_held_with_their_time_and_none_before() {
        let mut call = Call::default();
        call.send(vec![json!({"kind": "joined"})]);
        assert!(call.held.is_none(), "no recording and none being continued: nothing to hold");
        call.held = Some(Vec::new());
        call.send(vec![json!({"kind": "left", "role": "specialist"}), json!({"kind": "media_key", "epoch": 3})]);
        let held = call.held.as_ref().unwrap();
        assert_eq!(held.iter().map(|e| e["kind"].as_str().unwrap()).collect::<Vec<_>>(), ["left", "media_key"]);
        assert!(held.iter().all(|e| e["held_at_us"].as_u64().is_some_and(|t| t > 1_600_000_000_000_000)));
    }
}
