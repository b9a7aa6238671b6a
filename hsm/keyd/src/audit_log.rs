//! The audit log kept by keyd in its store (stream `audit`), with a seal every [`SEAL_EVERY`] entries and at stop.
//! The periodic seal (an SM2 signature and a second durable write) is made by keyd's sealer task, off the path of the
//! request whose entry made it due; if no sealer keeps up, the append that reaches twice the interval seals itself.
//! Every node's keyd writes the same log, one chain for the cluster: each appends after the head it has read
//! (`Store::append_at`), and one that finds the head moved reads the other's entries and writes its own after them.

use std::sync::Arc;

use tokio::sync::Mutex;
use vbank_hsm::Purpose;
use vbank_store::Store;

use crate::KeydError;
use crate::audit::{self, Entry, Event, Seal};
use crate::keys::{KeyService, now};

/// Entries between two seals.
pub const SEAL_EVERY: u64 = 64;
const STREAM: &str = "audit";

/// Attempts to append before giving up when other nodes keep writing first.
const MAX_RACES: usize = 1000;

fn raced() -> KeydError {
    KeydError::Internal(format!("the audit log kept moving under {MAX_RACES} attempts to append to it"))
}

fn advance(head: &mut Head, e: Entry) {
    head.since_seal = if e.action == "audit.seal" { 0 } else { head.since_seal + 1 };
    head.seq = e.seq;
    head.hash = e.hash;
}

/// Read the entries after `head` (another node's keyd wrote them) and move it to the last.
async fn catch_up(store: &dyn Store, head: &mut Head) -> Result<(), KeydError> {
    loop {
        let batch = store.read_stream(STREAM, head.seq + 1, 1000).await?;
        if batch.is_empty() {
            return Ok(());
        }
        for (_, bytes) in batch {
            advance(head, parse(&bytes)?);
        }
    }
}

/// The log's head: the last sequence number and hash.
#[derive(Debug)]
struct Head {
    seq: u64,
    hash: String,
    since_seal: u64,
}

/// keyd's audit log. Appends are serialized here, and against other nodes' keyd by the store.
#[derive(Debug)]
pub struct AuditLog {
    store: Arc<dyn Store>,
    head: Mutex<Head>,
    due: Arc<tokio::sync::Notify>,
}

fn parse(bytes: &[u8]) -> Result<Entry, KeydError> {
    serde_json::from_slice(bytes).map_err(|e| KeydError::Internal(format!("audit entry unreadable: {e}")))
}

impl AuditLog {
    /// Open the log, finding its head.
    pub async fn open(store: Arc<dyn Store>) -> Result<AuditLog, KeydError> {
        let mut head = Head { seq: 0, hash: audit::genesis(), since_seal: 0 };
        catch_up(store.as_ref(), &mut head).await?;
        Ok(AuditLog { store, head: Mutex::new(head), due: Arc::default() })
    }

    /// Notified when a seal is due: keyd's sealer task waits on it and calls [`AuditLog::seal`].
    pub fn seal_due(&self) -> Arc<tokio::sync::Notify> {
        self.due.clone()
    }

    /// Append one entry; every [`SEAL_EVERY`] entries a seal is due (made by the sealer task, or here at twice that).
    pub async fn append(
        &self,
        svc: &KeyService,
        actor: &str,
        action: &str,
        target: &str,
        outcome: &str,
        detail: &str,
    ) -> Result<(), KeydError> {
        let mut head = self.head.lock().await;
        for _ in 0..MAX_RACES {
            let e =
                audit::next_entry(head.seq + 1, &head.hash, now(), Event { actor, action, target, outcome, detail });
            if self.store_entry(&mut head, e).await? {
                return self.after_append(svc, &mut head).await;
            }
        }
        Err(raced())
    }

    async fn after_append(&self, svc: &KeyService, head: &mut Head) -> Result<(), KeydError> {
        if head.since_seal >= 2 * SEAL_EVERY {
            self.seal_locked(svc, head).await?;
        } else if head.since_seal >= SEAL_EVERY {
            self.due.notify_one();
        }
        Ok(())
    }

    /// Seal now (at stop, or on request), unless nothing was written since the last seal.
    pub async fn seal(&self, svc: &KeyService) -> Result<(), KeydError> {
        let mut head = self.head.lock().await;
        if head.since_seal > 0 {
            self.seal_locked(svc, &mut head).await?;
        }
        Ok(())
    }

    async fn seal_locked(&self, svc: &KeyService, head: &mut Head) -> Result<(), KeydError> {
        // Without an audit-seal key (before the ceremony) the chain still protects the entries; the first seal after
        // the ceremony covers them.
        let Ok(rec) = svc.current(Purpose::AuditSeal).await else {
            return Ok(());
        };
        for _ in 0..MAX_RACES {
            let covers = format!("covers 1..{}", head.seq);
            let ev = Event { actor: "keyd", action: "audit.seal", target: "audit", outcome: "ok", detail: &covers };
            let mut e = audit::next_entry(head.seq + 1, &head.hash, now(), ev);
            let sig = svc.sign_raw(Purpose::AuditSeal, &audit::seal_message(&e.hash), audit::SEAL_ID).await?;
            e.seal = Some(Seal { key: rec.label.to_string(), sig: sig.signature });
            if self.store_entry(head, e).await? {
                return Ok(());
            }
        }
        Err(raced())
    }

    /// Write `e` after the head; false when another node's keyd wrote first (the head has then caught up with it,
    /// and the caller makes its entry again).
    async fn store_entry(&self, head: &mut Head, e: Entry) -> Result<bool, KeydError> {
        let bytes = serde_json::to_vec(&e).expect("entries serialize");
        match self.store.append_at(STREAM, e.seq, &bytes).await {
            Ok(()) => {
                advance(head, e);
                Ok(true)
            }
            Err(vbank_store::StoreError::Conflict { .. }) => {
                catch_up(self.store.as_ref(), head).await?;
                Ok(false)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// The latest `n` entries as JSON, newest first (the supervisor console's audit view), read from the head back.
    pub async fn latest(&self, n: usize) -> Result<Vec<String>, KeydError> {
        let last = self.head.lock().await.seq;
        let from = last.saturating_sub(n as u64) + 1;
        let batch = self.store.read_stream(STREAM, from, n).await?;
        batch
            .into_iter()
            .rev()
            .map(|(_, bytes)| String::from_utf8(bytes).map_err(|e| KeydError::Internal(e.to_string())))
            .collect()
    }

    /// Every entry as JSON lines, for `vbank hsm audit export`.
    pub async fn export(&self) -> Result<String, KeydError> {
        let mut out = String::new();
        let mut from = 1;
        loop {
            let batch = self.store.read_stream(STREAM, from, 1000).await?;
            if batch.is_empty() {
                return Ok(out);
            }
            for (seq, bytes) in batch {
                out.push_str(std::str::from_utf8(&bytes).map_err(|e| KeydError::Internal(e.to_string()))?);
                out.push('\n');
                from = seq + 1;
            }
        }
    }
}
