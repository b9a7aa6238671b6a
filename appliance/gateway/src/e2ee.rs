//! End-to-end encrypted calls: the gateway decides which calls are encrypted (`[e2ee]`: by the front desk's business
//! type, or every call joined directly), keeps each call's membership, and on every join and leave starts a new
//! epoch: keyd makes the epoch's media key and encrypts it to each page's P-256 key (`/v1/media-keys`); the gateway
//! relays those ciphertexts over signalling and puts the key's envelope (wrapped under the media KEK, which only the
//! recorder may open) in the call's recording. The gateway never holds a media key in clear.
//!
//! Each participant has a slot in the call (1–255); the frames it sends in epoch `e` carry key id `e << 8 | slot`
//! (`vbank_sframe::epochs`), so no two senders share a key.
//!
//! [`Membership`] is the sans-IO part (slots, epochs, who gets what); [`E2ee`] does the round trip to keyd.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::sync::mpsc;
use vbank_config::{Config, Service};

use crate::media::ToPeer;
use crate::recording::{Calls, post};

/// How long the front desk's mark of a call stays when nobody joins it.
const MARK_TTL: Duration = Duration::from_secs(24 * 3600);

/// A participant of an encrypted call.
#[derive(Debug, Clone)]
pub struct Member {
    /// Its slot: the low byte of the key ids its frames carry.
    pub slot: u8,
    /// Its page's P-256 public key (SEC1 uncompressed, hex).
    pub public_key: String,
}

/// One call's members and epoch (sans IO).
#[derive(Debug, Default)]
pub struct Membership {
    epoch: u64,
    members: BTreeMap<u64, Member>,
}

impl Membership {
    /// Add participant `id` with `public_key`; its slot, or `None` when the call has no free slot.
    pub fn join(&mut self, id: u64, public_key: String) -> Option<u8> {
        let slot = (1..=u8::MAX).find(|s| !self.members.values().any(|m| m.slot == *s))?;
        self.members.insert(id, Member { slot, public_key });
        Some(slot)
    }

    /// Remove participant `id`; whether it was a member.
    pub fn leave(&mut self, id: u64) -> bool {
        self.members.remove(&id).is_some()
    }

    /// Start the next epoch at `now_ms` (Unix ms): its number and the members who get its key. Epochs count up from
    /// the clock, so a call that empties and fills again, or outlives a gateway restart, never repeats one (the
    /// recording holds every epoch's key by its number).
    pub fn next_epoch(&mut self, now_ms: u64) -> (u64, &BTreeMap<u64, Member>) {
        self.epoch = (self.epoch + 1).max(now_ms);
        (self.epoch, &self.members)
    }

    /// Whether nobody is left.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }
}

/// A page's public key as `/ws` receives it: a P-256 point, uncompressed, hex (checked again by keyd).
pub fn valid_public_key(hex: &str) -> bool {
    hex.len() == 130 && hex.starts_with("04") && hex.bytes().all(|b| b.is_ascii_hexdigit())
}

struct Call {
    /// Emptied and taken out of the map: whoever still holds it must look the room up again.
    ended: bool,
    members: Membership,
    /// Each member's signalling task.
    peers: HashMap<u64, mpsc::UnboundedSender<ToPeer>>,
}

/// The end-to-end encrypted calls on this gateway.
#[derive(Clone)]
pub struct E2ee {
    cfg: Option<Arc<Config>>,
    /// Calls the front desk made: whether their business type is encrypted, and when they were made.
    marked: Arc<std::sync::Mutex<HashMap<String, (bool, Instant)>>>,
    calls: Arc<std::sync::Mutex<HashMap<String, Arc<tokio::sync::Mutex<Call>>>>>,
    /// The pages' WebAssembly frame cipher (`[e2ee] wasm`), read at start.
    wasm: Option<axum::body::Bytes>,
}

impl E2ee {
    /// Calls encrypted as `cfg`'s `[e2ee]` says; `None`: no call is (tests of the router alone).
    pub fn new(cfg: Option<Arc<Config>>) -> E2ee {
        let wasm = cfg.as_ref().and_then(|c| match std::fs::read(&c.e2ee.wasm) {
            Ok(b) => Some(axum::body::Bytes::from(b)),
            Err(e) => {
                let path = c.e2ee.wasm.display();
                if c.e2ee.suite == "sm4-gcm" {
                    log::error!(
                        "[e2ee] wasm {path}: {e}; end-to-end encrypted calls are refused until it is installed"
                    );
                }
                None
            }
        });
        E2ee { cfg, marked: Arc::default(), calls: Arc::default(), wasm }
    }

    /// `GET /assets/e2ee/sframe.wasm`: the pages' WebAssembly frame cipher (SM4-GCM).
    pub async fn wasm(axum::extract::State(s): axum::extract::State<crate::AppState>) -> axum::response::Response {
        use axum::http::{StatusCode, header};
        use axum::response::IntoResponse;
        match &s.calls.e2ee.wasm {
            Some(b) => ([(header::CONTENT_TYPE, "application/wasm")], b.clone()).into_response(),
            None => (StatusCode::NOT_FOUND, "the frame cipher module is not installed ([e2ee] wasm)").into_response(),
        }
    }

    /// The front desk made `room` for a call of `business`.
    pub fn mark(&self, room: &str, business: &str) {
        let on = self.cfg.as_ref().is_some_and(|c| c.e2ee.covers(business));
        let mut marked = self.marked.lock().unwrap_or_else(|p| p.into_inner());
        // Bounded: marks of calls nobody joined go after a day (a call's own end removes its mark).
        let now = Instant::now();
        marked.retain(|_, (_, at)| now.duration_since(*at) < MARK_TTL);
        marked.insert(room.to_string(), (on, now));
    }

    /// The frame suite of `room`'s call, if it is end-to-end encrypted: the joiner's call token says so
    /// (`token_says`, signed, so it holds across a gateway restart), or the front desk marked it, or `[e2ee] direct`
    /// covers calls it did not make.
    pub fn suite_of(&self, room: &str, token_says: bool) -> Option<&str> {
        let cfg = self.cfg.as_ref()?;
        let marked = self.marked.lock().unwrap_or_else(|p| p.into_inner()).get(room).map(|m| m.0);
        (token_says || marked.unwrap_or(cfg.e2ee.direct)).then_some(cfg.e2ee.suite.as_str())
    }

    /// The call in `room`, locked; one that ended while we waited for its lock is replaced by a fresh one.
    async fn call(&self, room: &str) -> tokio::sync::OwnedMutexGuard<Call> {
        loop {
            let call = {
                let mut calls = self.calls.lock().unwrap_or_else(|p| p.into_inner());
                let empty = || Call { ended: false, members: Membership::default(), peers: HashMap::new() };
                calls.entry(room.to_string()).or_insert_with(|| Arc::new(tokio::sync::Mutex::new(empty()))).clone()
            };
            let guard = call.lock_owned().await;
            if !guard.ended {
                return guard;
            }
        }
    }

    /// Participant `id` joined `room` with its page's `public_key`: a new epoch for everyone. An error says why the
    /// participant cannot stay (no key could be made: its media would be undecodable).
    pub async fn joined(
        &self,
        recording: &Calls,
        room: &str,
        id: u64,
        public_key: String,
        peer: mpsc::UnboundedSender<ToPeer>,
    ) -> Result<(), String> {
        let mut call = self.call(room).await;
        call.members.join(id, public_key).ok_or("this call has no room for another participant")?;
        call.peers.insert(id, peer);
        let rotated = self.rotate(recording, room, &mut call).await;
        if rotated.is_err() {
            call.members.leave(id);
            call.peers.remove(&id);
        }
        rotated
    }

    /// Participant `id` left `room`: a new epoch for those who stay, so what follows is closed to the one who left.
    pub async fn left(&self, recording: &Calls, room: &str, id: u64) {
        let Some(handle) = self.calls.lock().unwrap_or_else(|p| p.into_inner()).get(room).cloned() else { return };
        let mut call = handle.lock().await;
        if !call.members.leave(id) {
            return;
        }
        call.peers.remove(&id);
        if call.members.is_empty() {
            call.ended = true;
            self.calls.lock().unwrap_or_else(|p| p.into_inner()).remove(room);
            self.marked.lock().unwrap_or_else(|p| p.into_inner()).remove(room);
            return;
        }
        if let Err(e) = self.rotate(recording, room, &mut call).await {
            log::error!(room = room; "the media key was not rotated after a departure: {e}");
        }
    }

    /// Ask keyd for the next epoch's key, relay it to each member, and record its envelope.
    async fn rotate(&self, recording: &Calls, room: &str, call: &mut Call) -> Result<(), String> {
        let cfg = self.cfg.as_ref().ok_or("no key service is configured")?;
        let suite = cfg.e2ee.suite.clone();
        if suite == "sm4-gcm" && self.wasm.is_none() {
            return Err(format!("the pages' SM4-GCM module is not installed at {}", cfg.e2ee.wasm.display()));
        }
        let now_ms =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
        let (epoch, members) = call.members.next_epoch(now_ms);
        let senders: Vec<u8> = members.values().map(|m| m.slot).collect();
        let recipients: Vec<Value> =
            members.iter().map(|(id, m)| json!({"id": id.to_string(), "public_key": m.public_key})).collect();
        let body = json!({"call": room, "epoch": epoch, "alg": suite, "recipients": recipients});
        let v = post(cfg, Service::Keyd, "/v1/media-keys", body)
            .await
            .map_err(|e| format!("keyd could not make the call's media key ({e})"))?;
        let context = v["context"].as_str().unwrap_or_default();
        for w in v["wrapped"].as_array().into_iter().flatten() {
            let Some(id) = w["id"].as_str().and_then(|i| i.parse::<u64>().ok()) else { continue };
            let (Some(m), Some(peer)) = (members.get(&id), call.peers.get(&id)) else { continue };
            let msg = json!({
                "type": "media-key", "suite": suite, "epoch": epoch, "slot": m.slot, "senders": senders,
                "key": w["key"], "context": context,
            });
            let _ = peer.send(ToPeer::MediaKey(msg.to_string()));
        }
        let event = json!({
            "kind": "media_key", "epoch": epoch, "alg": v["alg"], "senders": senders, "dek": v["id"],
            "envelope": v["envelope"], "context": context,
        });
        recording.record(room, event).await;
        log::info!(room = room; "media key epoch {epoch} sent to {} pages", senders.len());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_reused_only_after_a_leave_and_every_change_is_a_new_epoch_never_repeated() {
        let mut m = Membership::default();
        let key = || format!("04{}", "ab".repeat(64));
        assert_eq!(m.join(10, key()), Some(1));
        assert_eq!(m.join(11, key()), Some(2));
        assert_eq!(m.next_epoch(1_000).0, 1_000);
        assert!(m.leave(10) && !m.leave(10));
        let (epoch, members) = m.next_epoch(1_000);
        assert_eq!((epoch, members.len()), (1_001, 1), "two changes in one millisecond still get two epochs");
        assert_eq!(m.next_epoch(900).0, 1_002, "a clock that steps back never repeats an epoch");
        assert_eq!(m.join(12, key()), Some(1));
        for id in 100..353 {
            assert!(m.join(id, key()).is_some());
        }
        assert_eq!(m.join(999, key()), None, "255 slots at most");
    }

    #[test]
    fn public_keys_must_look_like_uncompressed_points() {
        assert!(valid_public_key(&format!("04{}", "0f".repeat(64))));
        assert!(!valid_public_key(&format!("02{}", "0f".repeat(64))));
        assert!(!valid_public_key("04zz"));
    }
}
