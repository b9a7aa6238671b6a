//! Versioned schema migrations.
//!
//! Each migration has a number, a description and the PostgreSQL statements it runs; redb applies the same version
//! numbers to its own tables (see `redb_store`). Migrations only ever get appended; an applied one is never edited.

/// One schema step.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    /// Version reached after this step (1, 2, …).
    pub version: u32,
    /// What it changes.
    pub description: &'static str,
    /// PostgreSQL statements, run in one transaction.
    pub postgres: &'static str,
}

/// Every migration, in order.
pub const MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    description: "versioned key-value tables and append-only streams",
    postgres: "
            CREATE TABLE vbank_kv (
                tbl        TEXT        NOT NULL,
                key        TEXT        NOT NULL,
                value      BYTEA       NOT NULL,
                version    BIGINT      NOT NULL,
                updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
                PRIMARY KEY (tbl, key)
            );
            CREATE TABLE vbank_stream_head (
                stream TEXT   PRIMARY KEY,
                seq    BIGINT NOT NULL
            );
            CREATE TABLE vbank_stream (
                stream      TEXT        NOT NULL,
                seq         BIGINT      NOT NULL,
                value       BYTEA       NOT NULL,
                appended_at TIMESTAMPTZ NOT NULL DEFAULT now(),
                PRIMARY KEY (stream, seq)
            );
        ",
}];

/// The schema version this binary writes.
pub const SCHEMA_VERSION: u32 = MIGRATIONS[MIGRATIONS.len() - 1].version;

#[cfg(test)]
mod tests {
    #[test]
    fn versions_are_dense_and_ordered() {
        for (i, m) in super::MIGRATIONS.iter().enumerate() {
            assert_eq!(m.version as usize, i + 1, "{}", m.description);
        }
    }
}
