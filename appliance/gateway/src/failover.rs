//! Calls that outlive their gateway node. Every node keeps a lease in the shared store (`nodes/lease/<node>`,
//! renewed every [`LEASE_EVERY`]) and notes each call it records (`calls/live/<room>`: the node and the recording).
//! When a node dies its clients rejoin through the VIP on another node. That node finds the call's entry naming a
//! node whose lease has stopped moving, and so has its recorder continue the same recording (on the shared
//! recordings storage) instead of opening a new one. A lease is judged by whether its version moves, not by
//! comparing clocks: nodes' clocks may differ, versions do not.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use vbank_store::{Expect, Store, Table};

/// How often a node renews its lease.
pub const LEASE_EVERY: Duration = Duration::from_millis(200);
/// A lease that has not moved for this long belongs to a node that is gone (three and a half renewals missed).
pub const LEASE_SILENT: Duration = Duration::from_millis(700);

/// A call left behind by a node that is gone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Orphan {
    /// The node that had it.
    pub node: String,
    /// Its open recording.
    pub recording: String,
}

/// This node's view of the shared call registry.
#[derive(Clone)]
pub struct Registry {
    store: Arc<dyn Store>,
    node: String,
}

fn live_key(room: &str) -> String {
    format!("live/{room}")
}

fn lease_key(node: &str) -> String {
    format!("lease/{node}")
}

impl Registry {
    /// The registry as node `node` sees it.
    pub fn new(store: Arc<dyn Store>, node: &str) -> Registry {
        Registry { store, node: node.to_string() }
    }

    /// The call in `room` is recorded here, in `recording`.
    pub async fn opened(&self, room: &str, recording: &str) {
        let since = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let entry = json!({"node": self.node, "recording": recording, "since_unix": since});
        if let Err(e) = self.store.put(Table::Calls, &live_key(room), entry.to_string().as_bytes(), Expect::Any).await {
            log::warn!(room = room; "the call is not in the shared registry (another node could not continue it): {e}");
        }
    }

    /// The call in `room` ended here: forget it, unless another node has taken it over meanwhile.
    pub async fn ended(&self, room: &str) {
        let key = live_key(room);
        let Ok(Some(v)) = self.store.get(Table::Calls, &key).await else { return };
        let entry: Value = serde_json::from_slice(&v.value).unwrap_or(Value::Null);
        if entry["node"] == self.node.as_str() {
            let _ = self.store.delete(Table::Calls, &key, Expect::Version(v.version)).await;
        }
    }

    /// The call in `room`, when a node that is gone left it recording: this node's own previous process (it
    /// restarted), or another node whose lease stopped moving. Waits up to [`LEASE_SILENT`] to tell.
    pub async fn orphan(&self, room: &str) -> Option<Orphan> {
        let v = self.store.get(Table::Calls, &live_key(room)).await.ok()??;
        let entry: Value = serde_json::from_slice(&v.value).ok()?;
        let orphan =
            Orphan { node: entry["node"].as_str()?.to_string(), recording: entry["recording"].as_str()?.to_string() };
        if orphan.node == self.node {
            return Some(orphan);
        }
        let version = |l: Option<vbank_store::Versioned>| l.map(|l| l.version);
        let before = version(self.store.get(Table::Nodes, &lease_key(&orphan.node)).await.ok()?);
        if before.is_some() {
            tokio::time::sleep(LEASE_SILENT).await;
        }
        let after = version(self.store.get(Table::Nodes, &lease_key(&orphan.node)).await.ok()?);
        if after != before {
            let node = orphan.node.as_str();
            log::warn!(room = room; "the call is on node {node} too, which is alive: it goes on here as a call of its own");
            return None;
        }
        let (node, recording) = (&orphan.node, &orphan.recording);
        log::warn!(room = room; "node {node} is gone (its lease stopped): this node continues its recording {recording}");
        Some(orphan)
    }
}

/// Renew this node's lease until shutdown. A store outage only delays renewals: other nodes then take this node's
/// calls over when its clients rejoin them, which is what should happen to a node cut off from the shared state.
pub async fn keep_lease(store: Arc<dyn Store>, node: String, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    let key = lease_key(&node);
    loop {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
        let lease = json!({"node": node, "renewed_unix_ms": now});
        if let Err(e) = store.put(Table::Nodes, &key, lease.to_string().as_bytes(), Expect::Any).await {
            log::warn!("could not renew this node's lease: {e}");
        }
        tokio::select! {
            _ = tokio::time::sleep(LEASE_EVERY) => {}
            _ = shutdown.changed() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn store() -> (tempfile::TempDir, Arc<dyn Store>) {
        let dir = tempfile::tempdir().unwrap();
        let s = vbank_store::RedbStore::open(&dir.path().join("s.redb")).unwrap();
        (dir, Arc::new(s))
    }

    #[tokio::test]
    async fn a_call_of_a_node_whose_lease_stopped_is_an_orphan_and_of_a_live_one_is_not() {
        let (_d, s) = store().await;
        let (a, b) = (Registry::new(s.clone(), "node-a"), Registry::new(s.clone(), "node-b"));
        a.opened("r1", "rec-1").await;
        let (tx, rx) = tokio::sync::watch::channel(false);
        let lease = tokio::spawn(keep_lease(s.clone(), "node-a".into(), rx));
        tokio::time::sleep(LEASE_EVERY).await;
        assert_eq!(b.orphan("r1").await, None, "node-a renews its lease");
        tx.send(true).unwrap();
        lease.await.unwrap();
        let found = b.orphan("r1").await;
        assert_eq!(found, Some(Orphan { node: "node-a".into(), recording: "rec-1".into() }));
        assert_eq!(b.orphan("r2").await, None, "no entry, no orphan");
    }

    #[tokio::test]
    async fn a_restarted_node_finds_its_own_calls_and_only_the_owner_forgets_one() {
        let (_d, s) = store().await;
        let (a, b) = (Registry::new(s.clone(), "node-a"), Registry::new(s.clone(), "node-b"));
        a.opened("r1", "rec-1").await;
        assert_eq!(a.orphan("r1").await.map(|o| o.recording), Some("rec-1".into()));
        b.opened("r1", "rec-1").await; // node-b took the call over
        a.ended("r1").await;
        assert_eq!(b.orphan("r1").await.map(|o| o.node), Some("node-b".into()), "node-a's end leaves node-b's entry");
        b.ended("r1").await;
        assert_eq!(b.orphan("r1").await, None);
    }
}
