//! The service runtime over real sockets: admin routes, the mTLS guard, bind errors, graceful stop.

use std::net::SocketAddr;
use std::time::Duration;

use axum::routing::get;
use hyper::{Method, StatusCode};
use vbank_config::Service;
use vbank_tls::{AccessPolicy, ClientAuth, devca, service_dns_name};

use super::*;

fn pki() -> (tempfile::TempDir, vbank_config::TlsConfig) {
    let dir = tempfile::tempdir().unwrap();
    let (cfg, _) = vbank_config::parse(&format!("[tls]\ndir = \"{}\"\nsm = true\n", dir.path().display())).unwrap();
    devca::ensure_dev_pki(&cfg.tls, &["localhost".into()]).unwrap();
    (dir, cfg.tls)
}

async fn start(
    app: axum::Router,
    tls: Arc<rustls::ServerConfig>,
    ctx: &Context,
) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let l = bind("127.0.0.1:0".parse().unwrap(), "test.listen").await.unwrap();
    let addr = l.local_addr().unwrap();
    (addr, tokio::spawn(serve_tls(l, vbank_tls::ServerTls::standard(tls), app, ctx.shutdown())))
}

#[tokio::test]
async fn admin_routes_report_health_readiness_and_metrics() {
    let (_d, tls) = pki();
    let ctx = Context::new("keyd", "n1", &["hsm"]);
    let app = ctx.observed(admin::router(ctx.health.clone(), ctx.metrics.clone()), "admin");
    let server_tls = vbank_tls::service_server_config(&tls, Service::Keyd, ClientAuth::Optional).unwrap();
    let (addr, task) = start(app, server_tls, &ctx).await;
    let client = vbank_tls::anonymous_client_config(&tls).unwrap();
    let get = |path: &'static str| {
        client::call(client.clone(), addr, "localhost", Method::GET, path, None, Duration::from_secs(5))
    };

    let (s, body) = get("/healthz").await.unwrap();
    assert_eq!((s, &body[..]), (StatusCode::OK, &b"ok\n"[..]));
    let (s, body) = get("/readyz").await.unwrap();
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
    assert!(String::from_utf8_lossy(&body).contains("\"hsm\":{\"state\":\"pending\"}"), "{body:?}");
    ctx.health.set("hsm", Check::Ok);
    assert_eq!(get("/readyz").await.unwrap().0, StatusCode::OK);
    let (s, body) = get("/metrics").await.unwrap();
    let text = String::from_utf8_lossy(&body);
    assert_eq!(s, StatusCode::OK);
    assert!(text.contains("vbank_build_info{service=\"keyd\",node=\"n1\""), "{text}");
    assert!(
        text.contains("vbank_http_requests_total{listener=\"admin\",route=\"/readyz\",status=\"503\"} 1"),
        "{text}"
    );
    assert!(text.contains("vbank_ready 1\n") && text.contains("vbank_check_ok{check=\"hsm\"} 1\n"), "{text}");
    ctx.health.set("hsm", Check::Failing("token gone".into()));
    let text = String::from_utf8_lossy(&get("/metrics").await.unwrap().1).into_owned();
    assert!(text.contains("vbank_ready 0\n") && text.contains("vbank_check_ok{check=\"hsm\"} 0\n"), "{text}");

    ctx.stop();
    tokio::time::timeout(Duration::from_secs(10), task).await.unwrap().unwrap();
    assert!(get("/healthz").await.is_err(), "listener closed after stop");
}

#[tokio::test]
async fn internal_routes_admit_only_permitted_services() {
    let (_d, tls) = pki();
    let ctx = Context::new("keyd", "n1", &[]);
    let policy = Arc::new(AccessPolicy::new().allow("/v1/dek", &[Service::Recorder]));
    let app = axum::Router::new()
        .route("/v1/dek", get(|| async { "dek" }))
        .layer(axum::middleware::from_fn_with_state(policy, require_peer));
    let server_tls = vbank_tls::service_server_config(&tls, Service::Keyd, ClientAuth::Required).unwrap();
    let (addr, _task) = start(app, server_tls, &ctx).await;
    let name = service_dns_name(Service::Keyd);
    let as_svc = |svc| vbank_tls::service_client_config(&tls, svc).unwrap();
    let t = Duration::from_secs(5);

    let (s, body) =
        client::call(as_svc(Service::Recorder), addr, &name, Method::GET, "/v1/dek", None, t).await.unwrap();
    assert_eq!((s, &body[..]), (StatusCode::OK, &b"dek"[..]));

    let (s, body) = client::call(as_svc(Service::Gateway), addr, &name, Method::GET, "/v1/dek", None, t).await.unwrap();
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert!(String::from_utf8_lossy(&body).contains("gateway may not call /v1/dek"));

    let anon = vbank_tls::anonymous_client_config(&tls).unwrap();
    let e = client::call(anon, addr, &name, Method::GET, "/v1/dek", None, t).await;
    assert!(e.is_err(), "no client certificate, no connection: {e:?}");
    ctx.stop();
}

#[tokio::test]
async fn a_port_in_use_names_the_key_and_the_fix() {
    let held = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = held.local_addr().unwrap();
    let e = bind(addr, "gateway.listen").await.unwrap_err();
    let text = e.to_string();
    assert!(text.contains("gateway.listen") && text.contains("another process"), "{text}");
    assert_eq!(e.exit_code(), exit::CONFIG);
}

#[tokio::test]
async fn an_sm_only_client_gets_a_clean_handshake_failure_where_sm_is_off() {
    let (_d, tls) = pki();
    let ctx = Context::new("gateway", "n1", &[]);
    let app = axum::Router::new().route("/", get(|| async { "hi" }));
    let (addr, _task) = start(app, vbank_tls::public_server_config(&tls).unwrap(), &ctx).await;
    let sm = vbank_tls::anonymous_client_config_sm(&tls).unwrap();
    let e = client::call(sm, addr, "localhost", Method::GET, "/", None, Duration::from_secs(5)).await.unwrap_err();
    let text = e.to_string();
    assert!(text.contains("TLS handshake") && text.contains("HandshakeFailure"), "{text}");
    // The same listener still serves standard clients.
    let std = vbank_tls::anonymous_client_config(&tls).unwrap();
    assert!(client::call(std, addr, "localhost", Method::GET, "/", None, Duration::from_secs(5)).await.is_ok());
    ctx.stop();
}

#[tokio::test]
async fn internal_links_can_be_sm_only() {
    let dir = tempfile::tempdir().unwrap();
    let (cfg, _) = vbank_config::parse(&format!(
        "[tls]\ndir = \"{}\"\nsm = true\nsm_internal_only = true\n",
        dir.path().display()
    ))
    .unwrap();
    devca::ensure_dev_pki(&cfg.tls, &["localhost".into()]).unwrap();
    let ctx = Context::new("keyd", "n1", &[]);
    let policy = Arc::new(AccessPolicy::new().allow("/v1", &[Service::Recorder]));
    let app = axum::Router::new()
        .route("/v1/x", get(|| async { "ok" }))
        .layer(axum::middleware::from_fn_with_state(policy, require_peer));
    let l = bind("127.0.0.1:0".parse().unwrap(), "test.listen").await.unwrap();
    let addr = l.local_addr().unwrap();
    let server = vbank_tls::service_server_tls(&cfg.tls, Service::Keyd, ClientAuth::Required).unwrap();
    assert!(server.standard.is_none());
    tokio::spawn(serve_tls(l, server, app, ctx.shutdown()));
    let name = service_dns_name(Service::Keyd);
    let t = Duration::from_secs(5);
    // The internal client follows the switch and presents its SM2 certificate; the SM2 SAN names the service.
    let sm = vbank_tls::internal_client_config(&cfg.tls, Service::Recorder).unwrap();
    let (s, body) = client::call(sm, addr, &name, Method::GET, "/v1/x", None, t).await.unwrap();
    assert_eq!((s, &body[..]), (StatusCode::OK, &b"ok"[..]));
    let std = vbank_tls::service_client_config(&cfg.tls, Service::Recorder).unwrap();
    assert!(client::call(std, addr, &name, Method::GET, "/v1/x", None, t).await.is_err(), "standard suites refused");
    ctx.stop();
}
