//! The conformance suite against a real PostgreSQL (Debian's server, private socket), plus migrations and outages.

mod support;

use std::sync::Arc;

use support::pg::PgServer;
use vbank_config::PostgresConfig;
use vbank_store::{PgStore, RedbStore, SCHEMA_VERSION, Store, StoreError, Table, conformance};

fn cfg(server: &PgServer) -> PostgresConfig {
    PostgresConfig {
        host: server.socket_dir().display().to_string(),
        port: server.port,
        dbname: "vbank".into(),
        user: "vbank".into(),
        password: None,
        pool_size: 8,
        connect_timeout_s: 5,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_passes_the_conformance_suite_and_migrates_once() {
    let server = PgServer::start();
    let store = PgStore::connect(&cfg(&server), None).await.unwrap();
    conformance::run_all(Arc::new(store)).await;

    // A second node connecting migrates nothing and sees the same data.
    let again = PgStore::connect(&cfg(&server), None).await.unwrap();
    assert_eq!(again.schema_version().await.unwrap(), SCHEMA_VERSION);
    assert!(again.get(Table::Calls, "c1").await.unwrap().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exports_restore_across_backends_byte_identical() {
    let server = PgServer::start();
    let pg: Arc<dyn Store> = Arc::new(PgStore::connect(&cfg(&server), None).await.unwrap());
    conformance::run_all(pg.clone()).await;
    // PostgreSQL → an empty redb file: a cluster's state restored on a single node.
    let dir = tempfile::tempdir().unwrap();
    let redb: Arc<dyn Store> = Arc::new(RedbStore::open(&dir.path().join("s.redb")).unwrap());
    conformance::snapshot_round_trip(pg, redb.clone()).await;
    // redb → an empty PostgreSQL database: a single node's state moved into a cluster.
    server.create_db("restored");
    let mut c = cfg(&server);
    c.dbname = "restored".into();
    let fresh: Arc<dyn Store> = Arc::new(PgStore::connect(&c, None).await.unwrap());
    conformance::snapshot_round_trip(redb, fresh).await;
}

#[tokio::test]
async fn an_unreachable_server_names_the_fix() {
    let server = PgServer::start();
    let mut c = cfg(&server);
    server.stop();
    c.connect_timeout_s = 2;
    let e = PgStore::connect(&c, None).await.unwrap_err();
    assert!(matches!(e, StoreError::Unavailable { .. }), "{e}");
    let text = e.to_string();
    assert!(text.contains("[store.postgres]") && text.contains(&server.port.to_string()), "{text}");
}

#[tokio::test]
async fn losing_the_server_mid_flight_is_an_error_not_a_hang() {
    let server = PgServer::start();
    let store = PgStore::connect(&cfg(&server), None).await.unwrap();
    store.ping().await.unwrap();
    server.stop();
    let r = tokio::time::timeout(std::time::Duration::from_secs(20), store.ping()).await;
    assert!(matches!(r, Ok(Err(_))), "{r:?}");
}

#[tokio::test]
async fn a_members_list_with_a_bad_port_names_the_fix() {
    let c = PostgresConfig {
        host: "127.0.0.1:5432,127.0.0.1:fifty".into(),
        port: 5432,
        dbname: "vbank".into(),
        user: "vbank".into(),
        password: None,
        pool_size: 1,
        connect_timeout_s: 1,
    };
    let e = PgStore::connect(&c, None).await.unwrap_err().to_string();
    assert!(e.contains("127.0.0.1:fifty") && e.contains("host:port"), "{e}");
}
