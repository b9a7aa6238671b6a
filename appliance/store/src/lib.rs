//! Shared state for vbank: one [`Store`] trait, two backends.
//!
//! - [`RedbStore`]: embedded, one file per service process, the default (`vbank up`).
//! - [`PgStore`]: PostgreSQL, shared by the nodes of a cluster (the HA pair).
//!
//! The model is deliberately small so both backends give the same guarantees:
//! - **tables** of string keys to versioned byte values, with compare-and-set writes ([`Expect`]) so that races such as
//!   "two tellers answer the same customer" have exactly one winner;
//! - **streams**: append-only sequences (call events, audit entries), numbered from 1 without gaps per stream.
//!
//! Values are opaque bytes; callers own their encoding. The schema is versioned ([`MIGRATIONS`]) and migrated on open;
//! a database newer than this binary is refused rather than misread.

mod migrations;
mod pg;
mod redb_store;
mod snapshot;

pub mod conformance;

use std::fmt;
use std::sync::Arc;

pub use migrations::{MIGRATIONS, Migration, SCHEMA_VERSION};
pub use pg::PgStore;
pub use redb_store::RedbStore;
pub use snapshot::{KvEntry, Snapshot, StreamEntry};

/// The tables of the appliance. Adding one needs no migration (tables are namespaces of one keyspace).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Table {
    /// Gateway nodes and their load, for routing new calls.
    Nodes,
    /// Calls, live and ended.
    Calls,
    /// Waiting customers per business queue.
    Queue,
    /// Teller, supervisor and officer accounts.
    Accounts,
    /// Operator settings changed at run time.
    Settings,
    /// keyd's registry of key versions and their lifecycle state.
    Keys,
    /// Pending and decided M-of-N approval requests.
    Approvals,
}

impl Table {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Table::Nodes => "nodes",
            Table::Calls => "calls",
            Table::Queue => "queue",
            Table::Accounts => "accounts",
            Table::Settings => "settings",
            Table::Keys => "keys",
            Table::Approvals => "approvals",
        }
    }
}

/// A stored value and its version (1 on first write, +1 on each change).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Versioned {
    /// The bytes.
    pub value: Vec<u8>,
    /// The version.
    pub version: u64,
}

/// What a write expects to find.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// Anything: write unconditionally.
    Any,
    /// No value: create only.
    Absent,
    /// Exactly this version.
    Version(u64),
}

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// A conditional write found something other than it expected; nothing was written.
    #[error("conflict on {table}/{key}: expected {expected:?}, found version {found:?}")]
    Conflict {
        /// Table name.
        table: &'static str,
        /// Key.
        key: String,
        /// What the caller expected.
        expected: Expect,
        /// The version present (None: absent).
        found: Option<u64>,
    },
    /// The store cannot be reached or opened.
    #[error("{what}: {detail} (hint: {hint})")]
    Unavailable {
        /// What was being reached.
        what: String,
        /// The underlying error.
        detail: String,
        /// How to fix it.
        hint: String,
    },
    /// The stored schema is newer than this binary understands.
    #[error(
        "the store's schema is version {found}, newer than this vbank understands ({supported}) (hint: upgrade vbank on this node before starting it)"
    )]
    SchemaTooNew {
        /// Version found.
        found: u32,
        /// Highest version this binary knows.
        supported: u32,
    },
    /// A key or stream name was refused.
    #[error("invalid {what}: {why}")]
    Invalid {
        /// Which argument.
        what: &'static str,
        /// Why.
        why: String,
    },
    /// The backend failed mid-operation; the operation may or may not have taken effect only where documented.
    #[error("{backend} error: {detail}")]
    Backend {
        /// `redb` or `postgres`.
        backend: &'static str,
        /// The underlying error.
        detail: String,
    },
}

/// The appliance's shared state.
///
/// Every method is atomic. After an error other than [`StoreError::Conflict`], a write may or may not have
/// happened (the connection may have dropped after the commit); callers that must know re-read.
#[async_trait::async_trait]
pub trait Store: Send + Sync + fmt::Debug {
    /// Read one value.
    async fn get(&self, table: Table, key: &str) -> Result<Option<Versioned>, StoreError>;
    /// Write one value if `expect` holds; returns the new version.
    async fn put(&self, table: Table, key: &str, value: &[u8], expect: Expect) -> Result<u64, StoreError>;
    /// Delete one value if `expect` holds; returns whether a value was deleted.
    async fn delete(&self, table: Table, key: &str, expect: Expect) -> Result<bool, StoreError>;
    /// Values whose key starts with `prefix`, in key order, at most `limit`.
    async fn list(&self, table: Table, prefix: &str, limit: usize) -> Result<Vec<(String, Versioned)>, StoreError>;
    /// Append to a stream; returns the entry's sequence number (1, 2, 3, … per stream).
    async fn append(&self, stream: &str, value: &[u8]) -> Result<u64, StoreError>;
    /// Append to a stream as entry `seq`, only if the stream's last entry is `seq - 1` (a hash chain with several
    /// writers: each writes after the head it has read). Otherwise [`StoreError::Conflict`], and nothing is written.
    async fn append_at(&self, stream: &str, seq: u64, value: &[u8]) -> Result<(), StoreError>;
    /// Entries of a stream with sequence ≥ `from`, in order, at most `limit`.
    async fn read_stream(&self, stream: &str, from: u64, limit: usize) -> Result<Vec<(u64, Vec<u8>)>, StoreError>;
    /// The schema version in force.
    async fn schema_version(&self) -> Result<u32, StoreError>;
    /// A cheap round trip, for readiness checks.
    async fn ping(&self) -> Result<(), StoreError>;
    /// Everything, as of one instant: one read transaction (redb) or one repeatable-read snapshot (PostgreSQL), so
    /// a backup taken while the service writes is consistent. In canonical order.
    async fn export(&self) -> Result<Snapshot, StoreError>;
    /// Load a snapshot into this store in one transaction, keeping versions and sequence numbers. Refused unless the
    /// store is empty and on the snapshot's schema version: a restore never merges into live data.
    async fn import(&self, snapshot: &Snapshot) -> Result<(), StoreError>;
    /// `redb` or `postgres`.
    fn backend(&self) -> &'static str;
}

pub(crate) fn check_importable(snapshot: &Snapshot, found_entries: u64) -> Result<(), StoreError> {
    if snapshot.schema_version != SCHEMA_VERSION {
        return Err(StoreError::Invalid {
            what: "store export",
            why: format!(
                "it has schema version {}, this vbank writes {SCHEMA_VERSION} (hint: restore with the vbank version \
                 that made the backup, then upgrade)",
                snapshot.schema_version
            ),
        });
    }
    if found_entries > 0 {
        return Err(StoreError::Invalid {
            what: "restore target",
            why: format!(
                "the store already holds {found_entries} entries (hint: a restore goes into an empty store: move the \
                 old one aside or use an empty database)"
            ),
        });
    }
    Ok(())
}

pub(crate) fn check_key(what: &'static str, key: &str) -> Result<(), StoreError> {
    if key.is_empty() || key.len() > 512 || key.contains('\0') {
        return Err(StoreError::Invalid { what, why: "must be 1–512 bytes without NUL".to_string() });
    }
    Ok(())
}

/// Open the store the configuration names for `service`, migrating its schema.
///
/// With redb each service process has its own file (`<redb_dir>/<service>.redb`); with PostgreSQL all share one
/// database.
pub async fn open(cfg: &vbank_config::Config, service: &str) -> Result<Arc<dyn Store>, StoreError> {
    match &cfg.store {
        vbank_config::StoreConfig::Redb { dir } => {
            let path = dir.join(format!("{service}.redb"));
            let store = tokio::task::spawn_blocking(move || RedbStore::open(&path))
                .await
                .map_err(|e| StoreError::Backend { backend: "redb", detail: e.to_string() })??;
            Ok(Arc::new(store))
        }
        vbank_config::StoreConfig::Postgres(pg) => {
            let password = match &pg.password {
                Some(r) => Some(
                    r.load()
                        .map_err(|e| StoreError::Unavailable {
                            what: "database password".into(),
                            detail: e.to_string(),
                            hint: "fix [store.postgres] password".into(),
                        })?
                        .expose_str()
                        .map(str::to_string)
                        .map_err(|e| StoreError::Unavailable {
                            what: "database password".into(),
                            detail: e.to_string(),
                            hint: "store the password as UTF-8".into(),
                        })?,
                ),
                None => None,
            };
            Ok(Arc::new(PgStore::connect(pg, password.as_deref()).await?))
        }
    }
}
