//! `/ws` against bad input: each mistake gets a clear error code, the connection and other calls go on; oversized
//! messages are refused; outside development mode nobody joins without a token.

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;
use vbank_gateway::{AppState, TokenKeys, app, media};
use vbank_service::Context;

async fn server(dev: bool) -> String {
    server_with_keys(dev, TokenKeys::default()).await
}

async fn server_with_keys(dev: bool, token_keys: TokenKeys) -> String {
    serve(dev, token_keys, vbank_gateway::recording::Calls::unrecorded()).await
}

async fn serve(dev: bool, token_keys: TokenKeys, calls: vbank_gateway::recording::Calls) -> String {
    let media = media::start(
        media::MediaOptions::udp("127.0.0.1:0".parse().unwrap(), "127.0.0.1:9".parse().unwrap()),
        media::MediaMetrics::default(),
        tokio::sync::mpsc::unbounded_channel().0,
    )
    .unwrap();
    let state = AppState {
        ctx: Context::new("gateway", "t", &[]),
        node: "t".into(),
        dev,
        media,
        token_keys,
        store: None,
        rooms: Default::default(),
        calls,
        desk: vbank_gateway::desk::Desk::without_store(),
    };
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/ws", l.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(l, app(state)).await.unwrap() });
    url
}

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn ask(ws: &mut Ws, text: &str) -> Value {
    ws.send(Message::text(text)).await.unwrap();
    loop {
        match ws.next().await.unwrap().unwrap() {
            Message::Text(t) => return serde_json::from_str(&t).unwrap(),
            Message::Ping(_) | Message::Pong(_) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[tokio::test]
async fn bad_messages_get_error_codes_and_the_connection_survives() {
    let url = server(true).await;
    let (mut ws, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    assert_eq!(ask(&mut ws, "nonsense").await["code"], "bad_message");
    assert_eq!(ask(&mut ws, r#"{"type":"hello"}"#).await["code"], "bad_message");
    assert_eq!(ask(&mut ws, r#"{"type":"answer","sdp":"v=0"}"#).await["code"], "not_joined");
    let early = ask(&mut ws, r#"{"type":"message","body":{"kind":"chat","text":"hi"}}"#).await;
    assert_eq!(early["code"], "not_joined", "{early}");
    assert_eq!(ask(&mut ws, r#"{"type":"restart","sdp":"v=0"}"#).await["code"], "not_joined");
    let unknown = ask(&mut ws, r#"{"type":"message","body":{"kind":"video"}}"#).await;
    assert_eq!(unknown["code"], "bad_message", "{unknown}");
    assert_eq!(ask(&mut ws, r#"{"type":"join","room":"r","role":"recorder","sdp":""}"#).await["code"], "bad_role");
    assert_eq!(ask(&mut ws, r#"{"type":"join","room":"r/../x","role":"customer","sdp":""}"#).await["code"], "bad_room");
    let hostile = ask(&mut ws, r#"{"type":"join","room":"r","role":"customer","sdp":"v=0\r\no=- 0 0 IN IP4 1.1.1.1\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n"}"#).await;
    assert_eq!(hostile["code"], "join_refused", "{hostile}");
    // Still usable after all that, and a page's ping is answered before it has joined.
    assert_eq!(ask(&mut ws, "{}").await["code"], "bad_message");
    assert_eq!(ask(&mut ws, r#"{"type":"ping"}"#).await, serde_json::json!({"type": "pong"}));
}

#[tokio::test]
async fn oversized_messages_close_only_that_connection() {
    let url = server(true).await;
    let (mut big, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    let huge = format!(r#"{{"type":"answer","sdp":"{}"}}"#, "a".repeat(70 * 1024));
    let _ = big.send(Message::text(huge)).await;
    let next = big.next().await;
    assert!(matches!(next, None | Some(Err(_)) | Some(Ok(Message::Close(_)))), "{next:?}");
    // Another connection is untouched.
    let (mut other, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    assert_eq!(ask(&mut other, "x").await["code"], "bad_message");
}

#[tokio::test]
async fn outside_development_mode_joining_needs_a_token() {
    let url = server(false).await;
    let (mut ws, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    let v = ask(&mut ws, r#"{"type":"join","room":"r","role":"customer","sdp":"v=0"}"#).await;
    assert_eq!(v["code"], "unauthorized");
    assert!(v["message"].as_str().unwrap().contains("token"));
}

/// A token as keyd would make it, signed here with a software P-256 key standing in for the HSM's.
fn token(key: &p256::ecdsa::SigningKey, room: &str, role: &str, iat: u64, exp: u64) -> String {
    signed(key, room, role, iat, exp, false)
}

fn signed(key: &p256::ecdsa::SigningKey, room: &str, role: &str, iat: u64, exp: u64, e2ee: bool) -> String {
    use p256::ecdsa::signature::hazmat::PrehashSigner;
    let claims = vbank_token::Claims {
        v: 1,
        room: room.into(),
        role: role.into(),
        iat,
        exp,
        jti: "00".into(),
        kid: "vbank/call-token/v1".into(),
        e2ee,
    };
    let input = vbank_token::signing_input(&claims);
    let sig: p256::ecdsa::Signature = key.sign_prehash(&vbank_token::digest(&input)).unwrap();
    vbank_token::assemble(&input, &sig.to_bytes())
}

#[tokio::test]
async fn joins_need_a_valid_token_for_that_room_and_role() {
    let key = p256::ecdsa::SigningKey::from_slice(&[7u8; 32]).unwrap();
    let public = key.verifying_key().to_sec1_point(false);
    let verify = vbank_crypto::p256sig::P256PublicKey::from_sec1(public.as_bytes()).unwrap();
    let keys = TokenKeys::default();
    keys.write().unwrap().push(("vbank/call-token/v1".into(), verify));
    let url = server_with_keys(false, keys).await;
    let (mut ws, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let join = |t: &str| format!(r#"{{"type":"join","room":"r1","role":"customer","sdp":"v=0","token":"{t}"}}"#);

    // Valid: past authorization, so the (bad) SDP is what is refused.
    let v = ask(&mut ws, &join(&token(&key, "r1", "customer", now, now + 600))).await;
    assert_eq!(v["code"], "join_refused", "{v}");
    let v = ask(&mut ws, &join(&token(&key, "r1", "customer", now - 700, now - 100))).await;
    assert_eq!(
        (v["code"].as_str(), v["message"].as_str().unwrap().contains("expired")),
        (Some("unauthorized"), true),
        "{v}"
    );
    let v = ask(&mut ws, &join(&token(&key, "r2", "customer", now, now + 600))).await;
    assert!(v["message"].as_str().unwrap().contains("another room or role"), "{v}");
    let v = ask(&mut ws, &join(&token(&key, "r1", "teller", now, now + 600))).await;
    assert_eq!(v["code"], "unauthorized");
    let other = p256::ecdsa::SigningKey::from_slice(&[9u8; 32]).unwrap();
    let v = ask(&mut ws, &join(&token(&other, "r1", "customer", now, now + 600))).await;
    assert!(v["message"].as_str().unwrap().contains("signature invalid"), "{v}");
    let v = ask(&mut ws, &join("v1.e30.AAAA")).await;
    assert_eq!(v["code"], "unauthorized");
    assert!(!v["message"].as_str().unwrap().contains("v1.e30"), "a token is never echoed");
}

/// A call token that says the call is end-to-end encrypted binds the gateway, whatever it remembers of the call: a
/// page that cannot encrypt frames is refused (`e2ee_required`), a malformed worker key too.
#[tokio::test]
async fn a_token_for_an_encrypted_call_refuses_a_page_without_frame_encryption() {
    let key = p256::ecdsa::SigningKey::from_slice(&[7u8; 32]).unwrap();
    let public = key.verifying_key().to_sec1_point(false);
    let keys = TokenKeys::default();
    keys.write().unwrap().push((
        "vbank/call-token/v1".into(),
        vbank_crypto::p256sig::P256PublicKey::from_sec1(public.as_bytes()).unwrap(),
    ));
    let (cfg, _) = vbank_config::parse("[gateway]\nrecording = \"off\"\n").unwrap();
    let url = serve(false, keys, vbank_gateway::recording::Calls::new(cfg)).await;
    let (mut ws, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let t = signed(&key, "r1", "customer", now, now + 600, true);
    let v =
        ask(&mut ws, &format!(r#"{{"type":"join","room":"r1","role":"customer","sdp":"v=0","token":"{t}"}}"#)).await;
    assert_eq!(v["code"], "e2ee_required", "{v}");
    assert!(v["message"].as_str().unwrap().contains("RTCRtpScriptTransform"), "{v}");
    let bad = format!(
        r#"{{"type":"join","room":"r1","role":"customer","sdp":"v=0","token":"{t}","e2ee":{{"public_key":"04zz"}}}}"#
    );
    assert_eq!(ask(&mut ws, &bad).await["code"], "bad_message");
    // The same call without the claim, on a node whose [e2ee] covers no direct calls: admitted to the SDP check.
    let plain = token(&key, "r1", "customer", now, now + 600);
    let v = ask(&mut ws, &format!(r#"{{"type":"join","room":"r1","role":"customer","sdp":"v=0","token":"{plain}"}}"#))
        .await;
    assert_eq!(v["code"], "join_refused", "{v}");
}
