//! The conformance suite and redb-specific behaviour: reopen, schema too new, a file held by another process.

use std::sync::Arc;

use redb::{Database, TableDefinition};
use vbank_store::{Expect, RedbStore, Store, StoreError, Table, conformance};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redb_passes_the_conformance_suite() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(RedbStore::open(&dir.path().join("s.redb")).unwrap());
    conformance::run_all(store.clone()).await;
    let copy = RedbStore::open(&dir.path().join("copy.redb")).unwrap();
    conformance::snapshot_round_trip(store, Arc::new(copy)).await;
}

#[tokio::test]
async fn data_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sub/dir/s.redb");
    {
        let s = RedbStore::open(&path).unwrap();
        s.put(Table::Calls, "c", b"kept", Expect::Absent).await.unwrap();
        s.append("events", b"e1").await.unwrap();
    }
    let s = RedbStore::open(&path).unwrap();
    assert_eq!(s.get(Table::Calls, "c").await.unwrap().unwrap().value, b"kept");
    assert_eq!(s.append("events", b"e2").await.unwrap(), 2);
}

#[test]
fn a_newer_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    drop(RedbStore::open(&path).unwrap());
    {
        let db = Database::create(&path).unwrap();
        let tx = db.begin_write().unwrap();
        tx.open_table(TableDefinition::<&str, u32>::new("meta")).unwrap().insert("schema_version", 99).unwrap();
        tx.commit().unwrap();
    }
    let e = RedbStore::open(&path).unwrap_err();
    assert!(matches!(e, StoreError::SchemaTooNew { found: 99, .. }), "{e}");
    assert!(e.to_string().contains("upgrade vbank"), "{e}");
}

#[test]
fn a_file_in_use_names_the_cause() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    let _held = RedbStore::open(&path).unwrap();
    let e = RedbStore::open(&path).unwrap_err().to_string();
    assert!(e.contains("another vbank process"), "{e}");
}

#[test]
fn an_unwritable_directory_names_the_fix() {
    let e = RedbStore::open(std::path::Path::new("/proc/vbank/s.redb")).unwrap_err().to_string();
    assert!(e.contains("redb_dir"), "{e}");
}
