use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use tower::ServiceExt;
use vbank_service::Check;

use super::*;

fn state(dev: bool) -> AppState {
    let media = media::start(
        media::MediaOptions::udp("127.0.0.1:0".parse().unwrap(), "127.0.0.1:9".parse().unwrap()),
        media::MediaMetrics::default(),
        tokio::sync::mpsc::unbounded_channel().0,
    )
    .unwrap();
    AppState {
        ctx: Context::new("gateway", "n1", &["store"]),
        node: "n1".into(),
        dev,
        media,
        token_keys: TokenKeys::default(),
        store: None,
        rooms: Default::default(),
        calls: crate::recording::Calls::unrecorded(),
        desk: crate::desk::Desk::without_store(),
    }
}

async fn get(app: Router, path: &str) -> (StatusCode, axum::http::HeaderMap, String) {
    let resp = app.oneshot(Request::get(path).body(Body::empty()).unwrap()).await.unwrap();
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    (parts.status, parts.headers, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test]
async fn pages_are_served_with_security_headers() {
    let (s, h, body) = get(app(state(false)), "/").await;
    assert_eq!(s, StatusCode::OK);
    assert!(body.contains("视频银行") && body.contains("/assets/status.js"));
    assert!(h["content-security-policy"].to_str().unwrap().contains("default-src 'self'"));
    assert_eq!(h["x-frame-options"], "DENY");
    let (s, _, body) = get(app(state(false)), "/teller").await;
    assert_eq!(s, StatusCode::OK);
    assert!(body.contains("柜员工作台"));
    let (s, h, _) = get(app(state(false)), "/assets/status.js").await;
    assert_eq!(s, StatusCode::OK);
    assert!(h["content-type"].to_str().unwrap().starts_with("text/javascript"));
}

#[tokio::test]
async fn status_reflects_readiness_and_dev_mode() {
    let st = state(true);
    let (_, _, body) = get(app(st.clone()), "/api/status").await;
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!((v["ready"].as_bool(), v["dev"].as_bool()), (Some(false), Some(true)));
    assert_eq!(v["checks"]["store"]["state"], "pending");
    st.ctx.health.set("store", Check::Ok);
    let (_, _, body) = get(app(st), "/api/status").await;
    assert!(body.contains("\"ready\":true"), "{body}");
}

#[tokio::test]
async fn unknown_paths_and_assets_are_404() {
    let (s, _, body) = get(app(state(false)), "/nope").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert!(body.contains("no such page: /nope"));
    let (s, _, _) = get(app(state(false)), "/assets/../../etc/passwd").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

#[test]
fn routing_picks_the_least_loaded_fresh_node() {
    let now = 1_000_000;
    let rec = |node: &str, calls: i64, cpu: f64, age: u64| serde_json::json!({"node": node, "public_url": format!("https://{node}"), "calls": calls, "cpu_percent": cpu, "heartbeat_unix": now - age});
    let records = vec![rec("a", 3, 10.0, 1), rec("b", 1, 50.0, 2), rec("c", 0, 5.0, 60), rec("d", 1, 20.0, 0)];
    assert_eq!(choose_node(&records, now).unwrap()["node"], "d", "c is stale; b and d tie on calls, d has less CPU");
    assert!(choose_node(&[rec("x", 0, 0.0, 100)], now).is_none());
}

#[tokio::test]
async fn one_address_gets_20_login_attempts_a_minute_then_429_with_retry_after() {
    let st = state(false);
    let post = |from: &str| {
        let mut req = Request::post("/api/login")
            .header("content-type", "application/json")
            .body(Body::from(r#"{"name":"li","password":"guess-guess"}"#))
            .unwrap();
        req.extensions_mut().insert(vbank_service::RemoteAddr(from.parse().unwrap()));
        app(st.clone()).oneshot(req)
    };
    for _ in 0..20 {
        // This node has no account store: refused for that, but counted.
        assert_eq!(post("192.0.2.7:40000").await.unwrap().status(), StatusCode::SERVICE_UNAVAILABLE);
    }
    let r = post("192.0.2.7:40001").await.unwrap();
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    let wait: u64 = r.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&wait), "{wait}");
    let body = r.into_body().collect().await.unwrap().to_bytes();
    assert!(String::from_utf8_lossy(&body).contains("try again in"));
    assert_eq!(post("192.0.2.8:40000").await.unwrap().status(), StatusCode::SERVICE_UNAVAILABLE, "another address");
}
