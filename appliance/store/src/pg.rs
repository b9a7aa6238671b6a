//! The PostgreSQL backend, for clusters: every node talks to the same database (Patroni primary in HA).
//!
//! Compare-and-set is one conditional statement (`INSERT … ON CONFLICT DO NOTHING`, `UPDATE … WHERE version = $n`), so
//! it is atomic without explicit locks. Stream sequence numbers come from a per-stream head row updated in the same
//! transaction as the insert: the row lock serializes appends to one stream and keeps numbers gapless.

use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod};
use tokio_postgres::NoTls;
use vbank_config::PostgresConfig;

use crate::migrations::{MIGRATIONS, SCHEMA_VERSION};
use crate::{Expect, KvEntry, Snapshot, Store, StoreError, StreamEntry, Table, Versioned, check_importable, check_key};

/// The PostgreSQL backend.
pub struct PgStore {
    pool: Pool,
    target: String,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PgStore({})", self.target)
    }
}

/// The error and its causes on one line (tokio-postgres puts the useful part in `source()`).
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

fn backend(e: tokio_postgres::Error) -> StoreError {
    StoreError::Backend { backend: "postgres", detail: chain(&e) }
}

impl PgStore {
    /// Connect, check the server answers, and migrate the schema.
    ///
    /// `host` may name several servers, comma-separated, each optionally with `:port` (a Patroni cluster's members):
    /// connections then go to whichever accepts writes, so after a failover new connections find the new primary.
    pub async fn connect(cfg: &PostgresConfig, password: Option<&str>) -> Result<PgStore, StoreError> {
        let mut pg = tokio_postgres::Config::new();
        let hosts: Vec<&str> = cfg.host.split(',').map(str::trim).filter(|h| !h.is_empty()).collect();
        for h in &hosts {
            // A socket directory starts with '/', and keeps any ':' it has.
            match h.rsplit_once(':').filter(|_| !h.starts_with('/')) {
                Some((name, port)) => {
                    let port = port.parse().map_err(|_| StoreError::Unavailable {
                        what: format!("[store.postgres] host {h:?}"),
                        detail: "the port is not a number".into(),
                        hint: "write host:port pairs such as \"10.0.0.1:5432,10.0.0.2:5432\"".into(),
                    })?;
                    pg.host(name).port(port);
                }
                None => {
                    pg.host(*h).port(cfg.port);
                }
            }
        }
        if hosts.len() > 1 {
            pg.target_session_attrs(tokio_postgres::config::TargetSessionAttrs::ReadWrite);
        }
        pg.dbname(&cfg.dbname)
            .user(&cfg.user)
            .application_name("vbank")
            .connect_timeout(Duration::from_secs(u64::from(cfg.connect_timeout_s)));
        if let Some(p) = password {
            pg.password(p);
        }
        let target = if hosts.len() > 1 {
            format!("{}@{}/{}", cfg.user, cfg.host, cfg.dbname)
        } else {
            format!("{}@{}:{}/{}", cfg.user, cfg.host, cfg.port, cfg.dbname)
        };
        let mgr = Manager::from_config(pg, NoTls, ManagerConfig { recycling_method: RecyclingMethod::Fast });
        let pool = Pool::builder(mgr)
            .max_size(cfg.pool_size as usize)
            .build()
            .map_err(|e| StoreError::Backend { backend: "postgres", detail: e.to_string() })?;
        let store = PgStore { pool, target };
        store.migrate().await?;
        Ok(store)
    }

    async fn client(&self) -> Result<Object, StoreError> {
        self.pool.get().await.map_err(|e| StoreError::Unavailable {
            what: format!("PostgreSQL {}", self.target),
            detail: chain(&e),
            hint: "start PostgreSQL, or fix host, port, dbname, user and password under [store.postgres]".into(),
        })
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        let mut c = self.client().await?;
        let tx = c.transaction().await.map_err(backend)?;
        // Nodes starting together must not migrate twice.
        tx.execute("SELECT pg_advisory_xact_lock(7263531)", &[]).await.map_err(backend)?;
        tx.batch_execute(
            "CREATE TABLE IF NOT EXISTS vbank_schema (
                version     INTEGER     PRIMARY KEY,
                description TEXT        NOT NULL,
                applied_at  TIMESTAMPTZ NOT NULL DEFAULT now())",
        )
        .await
        .map_err(backend)?;
        let row = tx.query_one("SELECT COALESCE(MAX(version), 0) FROM vbank_schema", &[]).await.map_err(backend)?;
        let found = row.get::<_, i32>(0) as u32;
        if found > SCHEMA_VERSION {
            return Err(StoreError::SchemaTooNew { found, supported: SCHEMA_VERSION });
        }
        for m in MIGRATIONS.iter().filter(|m| m.version > found) {
            tx.batch_execute(m.postgres).await.map_err(backend)?;
            tx.execute(
                "INSERT INTO vbank_schema (version, description) VALUES ($1, $2)",
                &[&(m.version as i32), &m.description],
            )
            .await
            .map_err(backend)?;
        }
        tx.commit().await.map_err(backend)
    }

    async fn version_of(c: &Object, table: Table, key: &str) -> Result<Option<u64>, StoreError> {
        let row = c
            .query_opt("SELECT version FROM vbank_kv WHERE tbl = $1 AND key = $2", &[&table.as_str(), &key])
            .await
            .map_err(backend)?;
        Ok(row.map(|r| r.get::<_, i64>(0) as u64))
    }
}

#[async_trait::async_trait]
impl Store for PgStore {
    async fn get(&self, table: Table, key: &str) -> Result<Option<Versioned>, StoreError> {
        check_key("key", key)?;
        let c = self.client().await?;
        let row = c
            .query_opt("SELECT value, version FROM vbank_kv WHERE tbl = $1 AND key = $2", &[&table.as_str(), &key])
            .await
            .map_err(backend)?;
        Ok(row.map(|r| Versioned { value: r.get(0), version: r.get::<_, i64>(1) as u64 }))
    }

    async fn put(&self, table: Table, key: &str, value: &[u8], expect: Expect) -> Result<u64, StoreError> {
        check_key("key", key)?;
        let c = self.client().await?;
        let t = table.as_str();
        let row = match expect {
            Expect::Any => c
                .query_opt(
                    "INSERT INTO vbank_kv (tbl, key, value, version) VALUES ($1, $2, $3, 1)
                     ON CONFLICT (tbl, key) DO UPDATE
                       SET value = EXCLUDED.value, version = vbank_kv.version + 1, updated_at = now()
                     RETURNING version",
                    &[&t, &key, &value],
                )
                .await
                .map_err(backend)?,
            Expect::Absent => c
                .query_opt(
                    "INSERT INTO vbank_kv (tbl, key, value, version) VALUES ($1, $2, $3, 1)
                     ON CONFLICT (tbl, key) DO NOTHING RETURNING version",
                    &[&t, &key, &value],
                )
                .await
                .map_err(backend)?,
            Expect::Version(v) => c
                .query_opt(
                    "UPDATE vbank_kv SET value = $3, version = version + 1, updated_at = now()
                     WHERE tbl = $1 AND key = $2 AND version = $4 RETURNING version",
                    &[&t, &key, &value, &(v as i64)],
                )
                .await
                .map_err(backend)?,
        };
        match row {
            Some(r) => Ok(r.get::<_, i64>(0) as u64),
            None => Err(StoreError::Conflict {
                table: t,
                key: key.to_string(),
                expected: expect,
                found: Self::version_of(&c, table, key).await?,
            }),
        }
    }

    async fn delete(&self, table: Table, key: &str, expect: Expect) -> Result<bool, StoreError> {
        check_key("key", key)?;
        let c = self.client().await?;
        let t = table.as_str();
        let n = match expect {
            Expect::Any => {
                c.execute("DELETE FROM vbank_kv WHERE tbl = $1 AND key = $2", &[&t, &key]).await.map_err(backend)?
            }
            Expect::Version(v) => c
                .execute("DELETE FROM vbank_kv WHERE tbl = $1 AND key = $2 AND version = $3", &[&t, &key, &(v as i64)])
                .await
                .map_err(backend)?,
            Expect::Absent => {
                let found = Self::version_of(&c, table, key).await?;
                if found.is_none() {
                    return Ok(false);
                }
                0
            }
        };
        if n == 0 && expect != Expect::Any {
            return Err(StoreError::Conflict {
                table: t,
                key: key.to_string(),
                expected: expect,
                found: Self::version_of(&c, table, key).await?,
            });
        }
        Ok(n > 0)
    }

    async fn list(&self, table: Table, prefix: &str, limit: usize) -> Result<Vec<(String, Versioned)>, StoreError> {
        let c = self.client().await?;
        // Byte order (COLLATE "C"), as redb sorts; starts_with needs no escaping of '%' or '_'.
        let rows = c
            .query(
                "SELECT key, value, version FROM vbank_kv
                 WHERE tbl = $1 AND starts_with(key, $2)
                 ORDER BY key COLLATE \"C\" LIMIT $3",
                &[&table.as_str(), &prefix, &(limit.min(i64::MAX as usize) as i64)],
            )
            .await
            .map_err(backend)?;
        Ok(rows
            .into_iter()
            .map(|r| (r.get(0), Versioned { value: r.get(1), version: r.get::<_, i64>(2) as u64 }))
            .collect())
    }

    async fn append(&self, stream: &str, value: &[u8]) -> Result<u64, StoreError> {
        check_key("stream", stream)?;
        let mut c = self.client().await?;
        let tx = c.transaction().await.map_err(backend)?;
        let seq: i64 = tx
            .query_one(
                "INSERT INTO vbank_stream_head (stream, seq) VALUES ($1, 1)
                 ON CONFLICT (stream) DO UPDATE SET seq = vbank_stream_head.seq + 1 RETURNING seq",
                &[&stream],
            )
            .await
            .map_err(backend)?
            .get(0);
        tx.execute("INSERT INTO vbank_stream (stream, seq, value) VALUES ($1, $2, $3)", &[&stream, &seq, &value])
            .await
            .map_err(backend)?;
        tx.commit().await.map_err(backend)?;
        Ok(seq as u64)
    }

    async fn append_at(&self, stream: &str, seq: u64, value: &[u8]) -> Result<(), StoreError> {
        check_key("stream", stream)?;
        let at = i64::try_from(seq).map_err(|_| StoreError::Invalid { what: "seq", why: "too large".into() })?;
        let mut c = self.client().await?;
        let tx = c.transaction().await.map_err(backend)?;
        // Under READ COMMITTED a concurrent writer's UPDATE waits for ours, then finds the head moved: one wins.
        let moved = if at == 1 {
            tx.execute(
                "INSERT INTO vbank_stream_head (stream, seq) VALUES ($1, 1) ON CONFLICT (stream) DO NOTHING",
                &[&stream],
            )
            .await
        } else {
            tx.execute(
                "UPDATE vbank_stream_head SET seq = $2::bigint WHERE stream = $1 AND seq = $2::bigint - 1",
                &[&stream, &at],
            )
            .await
        }
        .map_err(backend)?;
        if moved != 1 {
            let found: Option<i64> = tx
                .query_opt("SELECT seq FROM vbank_stream_head WHERE stream = $1", &[&stream])
                .await
                .map_err(backend)?
                .map(|r| r.get(0));
            return Err(StoreError::Conflict {
                table: "stream",
                key: stream.to_string(),
                expected: Expect::Version(seq - 1),
                found: found.map(|f| f as u64),
            });
        }
        tx.execute("INSERT INTO vbank_stream (stream, seq, value) VALUES ($1, $2, $3)", &[&stream, &at, &value])
            .await
            .map_err(backend)?;
        tx.commit().await.map_err(backend)?;
        Ok(())
    }

    async fn read_stream(&self, stream: &str, from: u64, limit: usize) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        check_key("stream", stream)?;
        let c = self.client().await?;
        let rows = c
            .query(
                "SELECT seq, value FROM vbank_stream WHERE stream = $1 AND seq >= $2 ORDER BY seq LIMIT $3",
                &[&stream, &(from.min(i64::MAX as u64) as i64), &(limit.min(i64::MAX as usize) as i64)],
            )
            .await
            .map_err(backend)?;
        Ok(rows.into_iter().map(|r| (r.get::<_, i64>(0) as u64, r.get(1))).collect())
    }

    async fn schema_version(&self) -> Result<u32, StoreError> {
        let c = self.client().await?;
        let row = c.query_one("SELECT COALESCE(MAX(version), 0) FROM vbank_schema", &[]).await.map_err(backend)?;
        Ok(row.get::<_, i32>(0) as u32)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        let c = self.client().await?;
        c.simple_query("SELECT 1").await.map_err(backend)?;
        Ok(())
    }

    async fn export(&self) -> Result<Snapshot, StoreError> {
        let mut c = self.client().await?;
        let tx = c
            .build_transaction()
            .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await
            .map_err(backend)?;
        let row = tx.query_one("SELECT COALESCE(MAX(version), 0) FROM vbank_schema", &[]).await.map_err(backend)?;
        let mut snap = Snapshot { schema_version: row.get::<_, i32>(0) as u32, ..Snapshot::default() };
        // COLLATE "C": byte order, the order redb keeps, so both backends export identical files.
        let rows = tx
            .query("SELECT tbl, key, version, value FROM vbank_kv ORDER BY tbl COLLATE \"C\", key COLLATE \"C\"", &[])
            .await
            .map_err(backend)?;
        snap.kv = rows
            .into_iter()
            .map(|r| KvEntry { table: r.get(0), key: r.get(1), version: r.get::<_, i64>(2) as u64, value: r.get(3) })
            .collect();
        let rows = tx
            .query("SELECT stream, seq, value FROM vbank_stream ORDER BY stream COLLATE \"C\", seq", &[])
            .await
            .map_err(backend)?;
        snap.streams = rows
            .into_iter()
            .map(|r| StreamEntry { stream: r.get(0), seq: r.get::<_, i64>(1) as u64, value: r.get(2) })
            .collect();
        tx.commit().await.map_err(backend)?;
        snap.canonicalize();
        Ok(snap)
    }

    async fn import(&self, snapshot: &Snapshot) -> Result<(), StoreError> {
        let mut c = self.client().await?;
        let tx = c.transaction().await.map_err(backend)?;
        // Nothing else may write while the restore checks emptiness and loads.
        tx.batch_execute("LOCK TABLE vbank_kv, vbank_stream, vbank_stream_head IN EXCLUSIVE MODE")
            .await
            .map_err(backend)?;
        let row = tx
            .query_one("SELECT (SELECT count(*) FROM vbank_kv) + (SELECT count(*) FROM vbank_stream)", &[])
            .await
            .map_err(backend)?;
        check_importable(snapshot, row.get::<_, i64>(0) as u64)?;
        let kv = tx
            .prepare("INSERT INTO vbank_kv (tbl, key, value, version) VALUES ($1, $2, $3, $4)")
            .await
            .map_err(backend)?;
        for e in &snapshot.kv {
            tx.execute(&kv, &[&e.table, &e.key, &e.value, &(e.version as i64)]).await.map_err(backend)?;
        }
        let st =
            tx.prepare("INSERT INTO vbank_stream (stream, seq, value) VALUES ($1, $2, $3)").await.map_err(backend)?;
        for e in &snapshot.streams {
            tx.execute(&st, &[&e.stream, &(e.seq as i64), &e.value]).await.map_err(backend)?;
        }
        tx.execute("DELETE FROM vbank_stream_head", &[]).await.map_err(backend)?;
        for (name, seq) in snapshot.stream_heads() {
            tx.execute("INSERT INTO vbank_stream_head (stream, seq) VALUES ($1, $2)", &[&name, &(seq as i64)])
                .await
                .map_err(backend)?;
        }
        tx.commit().await.map_err(backend)
    }

    fn backend(&self) -> &'static str {
        "postgres"
    }
}
