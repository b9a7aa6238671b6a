//! The behaviour every [`Store`] backend must show. Each backend's tests call [`run_all`] on a fresh store, so the
//! redb and PostgreSQL backends are held to one definition.

use std::sync::Arc;

use crate::{Expect, Store, StoreError, Table};

/// Run every check against an empty store. Panics with the failing check's name.
pub async fn run_all(store: Arc<dyn Store>) {
    schema_is_current(&*store).await;
    put_get_versions(&*store).await;
    compare_and_set(&*store).await;
    delete_semantics(&*store).await;
    tables_are_separate(&*store).await;
    list_by_prefix(&*store).await;
    streams_are_gapless_and_ordered(&*store).await;
    exactly_one_creator_wins(store.clone()).await;
    concurrent_increments_lose_nothing(store.clone()).await;
    concurrent_appends_are_gapless(store.clone()).await;
    appends_at_a_seen_head_have_one_winner(store.clone()).await;
    bad_keys_are_refused(&*store).await;
    unbounded_limits(&*store).await;
    store.ping().await.expect("ping");
}

async fn schema_is_current(s: &dyn Store) {
    assert_eq!(s.schema_version().await.unwrap(), crate::SCHEMA_VERSION);
}

async fn put_get_versions(s: &dyn Store) {
    assert_eq!(s.get(Table::Calls, "c1").await.unwrap(), None);
    assert_eq!(s.put(Table::Calls, "c1", b"one", Expect::Any).await.unwrap(), 1);
    assert_eq!(s.put(Table::Calls, "c1", b"two", Expect::Any).await.unwrap(), 2);
    let v = s.get(Table::Calls, "c1").await.unwrap().unwrap();
    assert_eq!((v.value.as_slice(), v.version), (&b"two"[..], 2));
    // Binary values round-trip untouched.
    let bin: Vec<u8> = (0..=255).collect();
    s.put(Table::Calls, "bin", &bin, Expect::Any).await.unwrap();
    assert_eq!(s.get(Table::Calls, "bin").await.unwrap().unwrap().value, bin);
    // Unicode keys.
    s.put(Table::Accounts, "柜员-张三", b"x", Expect::Absent).await.unwrap();
    assert!(s.get(Table::Accounts, "柜员-张三").await.unwrap().is_some());
}

async fn compare_and_set(s: &dyn Store) {
    assert_eq!(s.put(Table::Queue, "q", b"a", Expect::Absent).await.unwrap(), 1);
    let e = s.put(Table::Queue, "q", b"b", Expect::Absent).await.unwrap_err();
    assert!(matches!(e, StoreError::Conflict { found: Some(1), .. }), "{e}");
    assert_eq!(s.put(Table::Queue, "q", b"b", Expect::Version(1)).await.unwrap(), 2);
    let e = s.put(Table::Queue, "q", b"c", Expect::Version(1)).await.unwrap_err();
    assert!(matches!(e, StoreError::Conflict { found: Some(2), .. }), "{e}");
    let e = s.put(Table::Queue, "nope", b"c", Expect::Version(1)).await.unwrap_err();
    assert!(matches!(e, StoreError::Conflict { found: None, .. }), "{e}");
    // A failed write changed nothing.
    assert_eq!(s.get(Table::Queue, "q").await.unwrap().unwrap().value, b"b");
    assert!(s.get(Table::Queue, "nope").await.unwrap().is_none());
}

async fn delete_semantics(s: &dyn Store) {
    s.put(Table::Settings, "d", b"x", Expect::Any).await.unwrap();
    let e = s.delete(Table::Settings, "d", Expect::Version(9)).await.unwrap_err();
    assert!(matches!(e, StoreError::Conflict { found: Some(1), .. }), "{e}");
    assert!(s.delete(Table::Settings, "d", Expect::Version(1)).await.unwrap());
    assert!(!s.delete(Table::Settings, "d", Expect::Any).await.unwrap());
    assert!(s.get(Table::Settings, "d").await.unwrap().is_none());
    // Re-creating after delete starts again at version 1.
    assert_eq!(s.put(Table::Settings, "d", b"y", Expect::Absent).await.unwrap(), 1);
}

async fn tables_are_separate(s: &dyn Store) {
    s.put(Table::Nodes, "same", b"nodes", Expect::Any).await.unwrap();
    s.put(Table::Settings, "same", b"settings", Expect::Any).await.unwrap();
    assert_eq!(s.get(Table::Nodes, "same").await.unwrap().unwrap().value, b"nodes");
    assert_eq!(s.get(Table::Settings, "same").await.unwrap().unwrap().value, b"settings");
}

async fn list_by_prefix(s: &dyn Store) {
    for k in ["room/b", "room/a", "room/c", "roomx", "other", "room/%", "room/_"] {
        s.put(Table::Calls, k, k.as_bytes(), Expect::Any).await.unwrap();
    }
    let keys: Vec<String> = s.list(Table::Calls, "room/", 100).await.unwrap().into_iter().map(|(k, _)| k).collect();
    assert_eq!(keys, ["room/%", "room/_", "room/a", "room/b", "room/c"]);
    assert_eq!(s.list(Table::Calls, "room/", 2).await.unwrap().len(), 2);
    assert_eq!(s.list(Table::Nodes, "room/", 100).await.unwrap().len(), 0);
}

async fn streams_are_gapless_and_ordered(s: &dyn Store) {
    for i in 1..=5u64 {
        assert_eq!(s.append("call-1/events", format!("e{i}").as_bytes()).await.unwrap(), i);
    }
    assert_eq!(s.append("call-2/events", b"other").await.unwrap(), 1);
    let all = s.read_stream("call-1/events", 1, 100).await.unwrap();
    assert_eq!(all.iter().map(|(n, _)| *n).collect::<Vec<_>>(), [1, 2, 3, 4, 5]);
    assert_eq!(all[4].1, b"e5");
    let tail = s.read_stream("call-1/events", 4, 1).await.unwrap();
    assert_eq!(tail, vec![(4, b"e4".to_vec())]);
    assert!(s.read_stream("call-1/events", 6, 10).await.unwrap().is_empty());
}

async fn exactly_one_creator_wins(s: Arc<dyn Store>) {
    let mut tasks = Vec::new();
    for i in 0..16 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            s.put(Table::Calls, "answer/customer-9", format!("teller-{i}").as_bytes(), Expect::Absent).await
        }));
    }
    let mut wins = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => wins += 1,
            Err(StoreError::Conflict { .. }) => {}
            Err(e) => panic!("unexpected {e}"),
        }
    }
    assert_eq!(wins, 1, "exactly one teller may answer");
}

async fn concurrent_increments_lose_nothing(s: Arc<dyn Store>) {
    s.put(Table::Settings, "counter", b"0", Expect::Any).await.unwrap();
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..5 {
                loop {
                    let cur = s.get(Table::Settings, "counter").await.unwrap().unwrap();
                    let n: u64 = std::str::from_utf8(&cur.value).unwrap().parse().unwrap();
                    let next = (n + 1).to_string();
                    match s.put(Table::Settings, "counter", next.as_bytes(), Expect::Version(cur.version)).await {
                        Ok(_) => break,
                        Err(StoreError::Conflict { .. }) => continue,
                        Err(e) => panic!("{e}"),
                    }
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(s.get(Table::Settings, "counter").await.unwrap().unwrap().value, b"40");
}

async fn appends_at_a_seen_head_have_one_winner(s: Arc<dyn Store>) {
    s.append_at("chain", 1, b"genesis").await.unwrap();
    assert!(matches!(s.append_at("chain", 1, b"again").await, Err(StoreError::Conflict { found: Some(1), .. })));
    assert!(matches!(s.append_at("chain", 3, b"ahead").await, Err(StoreError::Conflict { found: Some(1), .. })));
    // Eight writers that all read head 1: exactly one writes entry 2.
    let tasks: Vec<_> = (0..8u8)
        .map(|i| {
            let s = s.clone();
            tokio::spawn(async move { s.append_at("chain", 2, &[i]).await.is_ok() })
        })
        .collect();
    let mut won = 0;
    for t in tasks {
        won += u32::from(t.await.unwrap());
    }
    assert_eq!(won, 1);
    let chain = s.read_stream("chain", 1, 10).await.unwrap();
    assert_eq!(chain.iter().map(|e| e.0).collect::<Vec<_>>(), [1, 2]);
    assert_eq!(s.append("chain", b"plain").await.unwrap(), 3, "append goes on after the head");
}

async fn concurrent_appends_are_gapless(s: Arc<dyn Store>) {
    let mut tasks = Vec::new();
    for i in 0..8 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let mut seqs = Vec::new();
            for j in 0..5 {
                seqs.push(s.append("audit", format!("{i}-{j}").as_bytes()).await.unwrap());
            }
            seqs
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all.sort_unstable();
    assert_eq!(all, (1..=40).collect::<Vec<u64>>());
    assert_eq!(s.read_stream("audit", 1, 1000).await.unwrap().len(), 40);
}

async fn bad_keys_are_refused(s: &dyn Store) {
    for bad in ["", "a\0b"] {
        let e = s.put(Table::Calls, bad, b"x", Expect::Any).await.unwrap_err();
        assert!(matches!(e, StoreError::Invalid { .. }), "{e}");
    }
    let long = "k".repeat(513);
    assert!(matches!(s.get(Table::Calls, &long).await, Err(StoreError::Invalid { .. })));
    assert!(matches!(s.append("", b"x").await, Err(StoreError::Invalid { .. })));
}

/// `usize::MAX` means "all of them", in every backend.
async fn unbounded_limits(s: &dyn Store) {
    s.append("unbounded", b"x").await.unwrap();
    assert_eq!(s.read_stream("unbounded", 1, usize::MAX).await.expect("read_stream with usize::MAX").len(), 1);
    assert!(!s.list(Table::Calls, "", usize::MAX).await.expect("list with usize::MAX").is_empty());
}

/// Export `full`, import into `empty` (another store, possibly the other backend), and require the copy to export
/// byte-identical and to continue versions and stream numbers where the original left off. A second import into the
/// now non-empty store is refused.
pub async fn snapshot_round_trip(full: Arc<dyn Store>, empty: Arc<dyn Store>) {
    full.put(Table::Settings, "snapshot", b"before", Expect::Any).await.expect("put");
    full.append("snapshot-stream", b"one").await.expect("append");
    let snap = full.export().await.expect("export");
    assert!(!snap.kv.is_empty() && !snap.streams.is_empty(), "snapshot_round_trip: the export is empty");
    let bytes = snap.encode();
    let decoded = crate::Snapshot::decode(&bytes).expect("decode");
    empty.import(&decoded).await.expect("import into an empty store");
    assert_eq!(empty.export().await.expect("export the copy").encode(), bytes, "snapshot_round_trip: bytes differ");

    let v = full.get(Table::Settings, "snapshot").await.unwrap().unwrap().version;
    assert_eq!(empty.put(Table::Settings, "snapshot", b"after", Expect::Version(v)).await.unwrap(), v + 1);
    let seq = full.read_stream("snapshot-stream", 1, 1000).await.unwrap().last().unwrap().0;
    assert_eq!(empty.append("snapshot-stream", b"two").await.unwrap(), seq + 1);

    let e = empty.import(&decoded).await.expect_err("import into a non-empty store");
    assert!(e.to_string().contains("already holds"), "snapshot_round_trip: {e}");
    let mut newer = decoded.clone();
    newer.schema_version += 1;
    let e = full.import(&newer).await.expect_err("import of another schema version");
    assert!(e.to_string().contains("schema version"), "snapshot_round_trip: {e}");
}
