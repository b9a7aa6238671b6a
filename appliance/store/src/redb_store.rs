//! The embedded backend: one redb file per service process.
//!
//! Layout (schema version 1):
//! - `meta`: `&str → u32` holding `schema_version`;
//! - `kv`: `"<table>\0<key>" → (version: u64, value: &[u8])`; keys never contain NUL, so a table is a contiguous range;
//! - `stream`: `(stream, seq) → &[u8]`, and `stream_head`: `stream → last seq`.
//!
//! redb serializes write transactions, so a compare-and-set is a read and a write in one transaction. Every commit is
//! durable when it returns (redb's default 1PC+C).

use std::path::Path;
use std::sync::Arc;

use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};

use crate::{
    Expect, KvEntry, SCHEMA_VERSION, Snapshot, Store, StoreError, StreamEntry, Table, Versioned, check_importable,
    check_key,
};

const META: TableDefinition<&str, u32> = TableDefinition::new("meta");
const KV: TableDefinition<&str, (u64, &[u8])> = TableDefinition::new("kv");
const STREAM: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("stream");
const STREAM_HEAD: TableDefinition<&str, u64> = TableDefinition::new("stream_head");

/// The redb backend.
#[derive(Clone)]
pub struct RedbStore {
    db: Arc<Database>,
}

impl std::fmt::Debug for RedbStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RedbStore")
    }
}

fn backend<E: std::fmt::Display>(e: E) -> StoreError {
    StoreError::Backend { backend: "redb", detail: e.to_string() }
}

fn kv_key(table: Table, key: &str) -> String {
    format!("{}\0{key}", table.as_str())
}

impl RedbStore {
    /// Open or create the file and bring its schema to [`SCHEMA_VERSION`]. Blocking.
    pub fn open(path: &Path) -> Result<RedbStore, StoreError> {
        if let Some(dir) = path.parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir).map_err(|e| StoreError::Unavailable {
                what: format!("store directory {}", dir.display()),
                detail: e.to_string(),
                hint: "create it and give the service user write permission, or change [store] redb_dir".into(),
            })?;
        }
        let db = Database::create(path).map_err(|e| {
            let hint = match &e {
                redb::DatabaseError::DatabaseAlreadyOpen => {
                    "another vbank process has this file open; stop it, or give this one its own [store] redb_dir"
                }
                _ => "check that the file is a vbank store and that the service user may read and write it",
            };
            StoreError::Unavailable {
                what: format!("redb store {}", path.display()),
                detail: e.to_string(),
                hint: hint.into(),
            }
        })?;
        let store = RedbStore { db: Arc::new(db) };
        store.migrate()?;
        Ok(store)
    }

    fn migrate(&self) -> Result<(), StoreError> {
        let tx = self.db.begin_write().map_err(backend)?;
        {
            let mut meta = tx.open_table(META).map_err(backend)?;
            let found = meta.get("schema_version").map_err(backend)?.map(|v| v.value()).unwrap_or(0);
            if found > SCHEMA_VERSION {
                return Err(StoreError::SchemaTooNew { found, supported: SCHEMA_VERSION });
            }
            if found < 1 {
                tx.open_table(KV).map_err(backend)?;
                tx.open_table(STREAM).map_err(backend)?;
                tx.open_table(STREAM_HEAD).map_err(backend)?;
            }
            meta.insert("schema_version", SCHEMA_VERSION).map_err(backend)?;
        }
        tx.commit().map_err(backend)
    }

    async fn blocking<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Database) -> Result<T, StoreError> + Send + 'static,
    {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || f(&db)).await.map_err(backend)?
    }
}

fn check_expect(table: Table, key: &str, expect: Expect, found: Option<u64>) -> Result<(), StoreError> {
    let ok = match expect {
        Expect::Any => true,
        Expect::Absent => found.is_none(),
        Expect::Version(v) => found == Some(v),
    };
    if ok {
        Ok(())
    } else {
        Err(StoreError::Conflict { table: table.as_str(), key: key.to_string(), expected: expect, found })
    }
}

#[async_trait::async_trait]
impl Store for RedbStore {
    async fn get(&self, table: Table, key: &str) -> Result<Option<Versioned>, StoreError> {
        check_key("key", key)?;
        let k = kv_key(table, key);
        self.blocking(move |db| {
            let tx = db.begin_read().map_err(backend)?;
            let t = tx.open_table(KV).map_err(backend)?;
            Ok(t.get(k.as_str()).map_err(backend)?.map(|g| {
                let (version, value) = g.value();
                Versioned { value: value.to_vec(), version }
            }))
        })
        .await
    }

    async fn put(&self, table: Table, key: &str, value: &[u8], expect: Expect) -> Result<u64, StoreError> {
        check_key("key", key)?;
        let (k, key, value) = (kv_key(table, key), key.to_string(), value.to_vec());
        self.blocking(move |db| {
            let tx = db.begin_write().map_err(backend)?;
            let version = {
                let mut t = tx.open_table(KV).map_err(backend)?;
                let found = t.get(k.as_str()).map_err(backend)?.map(|g| g.value().0);
                check_expect(table, &key, expect, found)?;
                let version = found.unwrap_or(0) + 1;
                t.insert(k.as_str(), (version, value.as_slice())).map_err(backend)?;
                version
            };
            tx.commit().map_err(backend)?;
            Ok(version)
        })
        .await
    }

    async fn delete(&self, table: Table, key: &str, expect: Expect) -> Result<bool, StoreError> {
        check_key("key", key)?;
        let (k, key) = (kv_key(table, key), key.to_string());
        self.blocking(move |db| {
            let tx = db.begin_write().map_err(backend)?;
            let existed = {
                let mut t = tx.open_table(KV).map_err(backend)?;
                let found = t.get(k.as_str()).map_err(backend)?.map(|g| g.value().0);
                check_expect(table, &key, expect, found)?;
                t.remove(k.as_str()).map_err(backend)?.is_some()
            };
            tx.commit().map_err(backend)?;
            Ok(existed)
        })
        .await
    }

    async fn list(&self, table: Table, prefix: &str, limit: usize) -> Result<Vec<(String, Versioned)>, StoreError> {
        let start = kv_key(table, prefix);
        let strip = table.as_str().len() + 1;
        self.blocking(move |db| {
            let tx = db.begin_read().map_err(backend)?;
            let t = tx.open_table(KV).map_err(backend)?;
            let mut out = Vec::new();
            for entry in t.range(start.as_str()..).map_err(backend)? {
                let (k, v) = entry.map_err(backend)?;
                let k = k.value();
                if !k.starts_with(start.as_str()) || out.len() >= limit {
                    break;
                }
                let (version, value) = v.value();
                out.push((k[strip..].to_string(), Versioned { value: value.to_vec(), version }));
            }
            Ok(out)
        })
        .await
    }

    async fn append(&self, stream: &str, value: &[u8]) -> Result<u64, StoreError> {
        check_key("stream", stream)?;
        let (stream, value) = (stream.to_string(), value.to_vec());
        self.blocking(move |db| {
            let tx = db.begin_write().map_err(backend)?;
            let seq = {
                let mut head = tx.open_table(STREAM_HEAD).map_err(backend)?;
                let seq = head.get(stream.as_str()).map_err(backend)?.map(|g| g.value()).unwrap_or(0) + 1;
                head.insert(stream.as_str(), seq).map_err(backend)?;
                let mut s = tx.open_table(STREAM).map_err(backend)?;
                s.insert((stream.as_str(), seq), value.as_slice()).map_err(backend)?;
                seq
            };
            tx.commit().map_err(backend)?;
            Ok(seq)
        })
        .await
    }

    async fn append_at(&self, stream: &str, seq: u64, value: &[u8]) -> Result<(), StoreError> {
        check_key("stream", stream)?;
        let (stream, value) = (stream.to_string(), value.to_vec());
        self.blocking(move |db| {
            let tx = db.begin_write().map_err(backend)?;
            {
                let mut head = tx.open_table(STREAM_HEAD).map_err(backend)?;
                let last = head.get(stream.as_str()).map_err(backend)?.map(|g| g.value()).unwrap_or(0);
                if last + 1 != seq {
                    let found = (last > 0).then_some(last);
                    return Err(StoreError::Conflict {
                        table: "stream",
                        key: stream,
                        expected: Expect::Version(seq - 1),
                        found,
                    });
                }
                head.insert(stream.as_str(), seq).map_err(backend)?;
                let mut s = tx.open_table(STREAM).map_err(backend)?;
                s.insert((stream.as_str(), seq), value.as_slice()).map_err(backend)?;
            }
            tx.commit().map_err(backend)?;
            Ok(())
        })
        .await
    }

    async fn read_stream(&self, stream: &str, from: u64, limit: usize) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        check_key("stream", stream)?;
        let stream = stream.to_string();
        self.blocking(move |db| {
            let tx = db.begin_read().map_err(backend)?;
            let s = tx.open_table(STREAM).map_err(backend)?;
            let mut out = Vec::new();
            for entry in s.range((stream.as_str(), from)..=(stream.as_str(), u64::MAX)).map_err(backend)? {
                if out.len() >= limit {
                    break;
                }
                let (k, v) = entry.map_err(backend)?;
                out.push((k.value().1, v.value().to_vec()));
            }
            Ok(out)
        })
        .await
    }

    async fn schema_version(&self) -> Result<u32, StoreError> {
        self.blocking(|db| {
            let tx = db.begin_read().map_err(backend)?;
            let meta = tx.open_table(META).map_err(backend)?;
            Ok(meta.get("schema_version").map_err(backend)?.map(|v| v.value()).unwrap_or(0))
        })
        .await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.schema_version().await.map(|_| ())
    }

    async fn export(&self) -> Result<Snapshot, StoreError> {
        self.blocking(|db| {
            let tx = db.begin_read().map_err(backend)?;
            let meta = tx.open_table(META).map_err(backend)?;
            let schema_version = meta.get("schema_version").map_err(backend)?.map(|v| v.value()).unwrap_or(0);
            let mut snap = Snapshot { schema_version, ..Snapshot::default() };
            for entry in tx.open_table(KV).map_err(backend)?.iter().map_err(backend)? {
                let (k, v) = entry.map_err(backend)?;
                let Some((table, key)) = k.value().split_once('\0') else {
                    return Err(backend(format!("a table entry without a table name: {:?}", k.value())));
                };
                let (version, value) = v.value();
                snap.kv.push(KvEntry { table: table.into(), key: key.into(), version, value: value.to_vec() });
            }
            for entry in tx.open_table(STREAM).map_err(backend)?.iter().map_err(backend)? {
                let (k, v) = entry.map_err(backend)?;
                let (stream, seq) = k.value();
                snap.streams.push(StreamEntry { stream: stream.into(), seq, value: v.value().to_vec() });
            }
            snap.canonicalize();
            Ok(snap)
        })
        .await
    }

    async fn import(&self, snapshot: &Snapshot) -> Result<(), StoreError> {
        let snapshot = snapshot.clone();
        self.blocking(move |db| {
            let tx = db.begin_write().map_err(backend)?;
            {
                let mut kv = tx.open_table(KV).map_err(backend)?;
                let mut stream = tx.open_table(STREAM).map_err(backend)?;
                let mut head = tx.open_table(STREAM_HEAD).map_err(backend)?;
                check_importable(&snapshot, kv.len().map_err(backend)? + stream.len().map_err(backend)?)?;
                for e in &snapshot.kv {
                    let k = format!("{}\0{}", e.table, e.key);
                    kv.insert(k.as_str(), (e.version, e.value.as_slice())).map_err(backend)?;
                }
                for e in &snapshot.streams {
                    stream.insert((e.stream.as_str(), e.seq), e.value.as_slice()).map_err(backend)?;
                }
                for (name, seq) in snapshot.stream_heads() {
                    head.insert(name, seq).map_err(backend)?;
                }
            }
            tx.commit().map_err(backend)
        })
        .await
    }

    fn backend(&self) -> &'static str {
        "redb"
    }
}
