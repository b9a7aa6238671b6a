//! A small HTTPS client for calls between vbank processes and from the CLI: one request per connection, rustls,
//! HTTP/1.1. Internal traffic is low-volume control traffic, so connection reuse is not worth its complexity here.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
pub use hyper::{Method, StatusCode};
use hyper_util::rt::TokioIo;
pub use rustls::ClientConfig;
use rustls::pki_types::ServerName;
use tokio_rustls::TlsConnector;

/// Why a call failed before an HTTP status arrived.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CallError {
    /// TCP connect failed or timed out.
    #[error("cannot connect to {addr}: {detail}")]
    Connect {
        /// Where.
        addr: SocketAddr,
        /// Why.
        detail: String,
    },
    /// The TLS handshake failed (wrong CA, missing or refused client certificate).
    #[error("TLS handshake with {addr} failed: {detail}")]
    Tls {
        /// Where.
        addr: SocketAddr,
        /// Why.
        detail: String,
    },
    /// The HTTP exchange failed.
    #[error("HTTP exchange with {addr} failed: {detail}")]
    Http {
        /// Where.
        addr: SocketAddr,
        /// Why.
        detail: String,
    },
}

/// Percent-encode a query value (RFC 3986 unreserved characters stay as they are).
pub fn encode_query_value(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A kept-alive HTTP/1.1 connection over TLS, for callers that make many requests (load generators, the recorder).
pub struct Connection {
    sender: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    addr: SocketAddr,
    host: String,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Connection({} {})", self.addr, self.host)
    }
}

impl Connection {
    /// Connect and complete the TLS handshake; `server_name` is checked against the server's certificate.
    pub async fn open(
        tls: Arc<ClientConfig>,
        addr: SocketAddr,
        server_name: &str,
        timeout: Duration,
    ) -> Result<Connection, CallError> {
        let fut = async {
            let tcp = tokio::net::TcpStream::connect(addr)
                .await
                .map_err(|e| CallError::Connect { addr, detail: e.to_string() })?;
            let _ = tcp.set_nodelay(true);
            let name = ServerName::try_from(server_name.to_string())
                .map_err(|e| CallError::Tls { addr, detail: e.to_string() })?;
            let stream = TlsConnector::from(tls)
                .connect(name, tcp)
                .await
                .map_err(|e| CallError::Tls { addr, detail: e.to_string() })?;
            let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .map_err(|e| CallError::Http { addr, detail: e.to_string() })?;
            tokio::spawn(conn);
            Ok(Connection { sender, addr, host: server_name.to_string() })
        };
        tokio::time::timeout(timeout, fut)
            .await
            .map_err(|_| CallError::Connect { addr, detail: format!("no answer within {timeout:?}") })?
    }

    /// Whether the connection may still carry a request (the peer has not closed it).
    pub fn is_open(&self) -> bool {
        !self.sender.is_closed()
    }

    /// Send one request on this connection (a body is JSON).
    pub async fn request(
        &mut self,
        method: Method,
        path: &str,
        body: Option<Bytes>,
    ) -> Result<(StatusCode, Bytes), CallError> {
        let headers: &[(&str, &str)] = if body.is_some() { &[("content-type", "application/json")] } else { &[] };
        self.request_with(method, path, headers, body).await.map(|(s, _, b)| (s, b))
    }

    /// Send one request with extra headers; the status, the response headers and the body as it arrives (a long
    /// download passed on without holding it in memory).
    pub async fn request_streaming(
        &mut self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<Bytes>,
    ) -> Result<(StatusCode, hyper::HeaderMap, hyper::body::Incoming), CallError> {
        let addr = self.addr;
        let http = |e: hyper::Error| CallError::Http { addr, detail: e.to_string() };
        let mut req = Request::builder().method(method).uri(path).header(hyper::header::HOST, self.host.as_str());
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req
            .body(Full::new(body.unwrap_or_default()))
            .map_err(|e| CallError::Http { addr, detail: e.to_string() })?;
        self.sender.ready().await.map_err(http)?;
        let resp = self.sender.send_request(req).await.map_err(http)?;
        let (parts, body) = resp.into_parts();
        Ok((parts.status, parts.headers, body))
    }

    /// Send one request with extra headers; returns the status, the response headers and the body.
    pub async fn request_with(
        &mut self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<Bytes>,
    ) -> Result<(StatusCode, hyper::HeaderMap, Bytes), CallError> {
        let addr = self.addr;
        let http = |e: hyper::Error| CallError::Http { addr, detail: e.to_string() };
        let (status, resp_headers, body) = self.request_streaming(method, path, headers, body).await?;
        let bytes = body.collect().await.map_err(http)?.to_bytes();
        Ok((status, resp_headers, bytes))
    }
}

/// Send one request on a new connection and return the status and body.
pub async fn call(
    tls: Arc<ClientConfig>,
    addr: SocketAddr,
    server_name: &str,
    method: Method,
    path: &str,
    body: Option<Bytes>,
    timeout: Duration,
) -> Result<(StatusCode, Bytes), CallError> {
    let fut = async {
        let mut c = Connection::open(tls, addr, server_name, timeout).await?;
        c.request(method, path, body).await
    };
    tokio::time::timeout(timeout, fut)
        .await
        .map_err(|_| CallError::Connect { addr, detail: format!("no answer within {timeout:?}") })?
}

/// Idle internal connections kept per (from, to, address).
const KEPT_PER_PEER: usize = 8;

type PeerKey = (vbank_config::Service, vbank_config::Service, SocketAddr);

/// Internal connections kept alive between calls: a service call costs one request, not a TCP and mTLS handshake.
static KEPT: std::sync::LazyLock<std::sync::Mutex<std::collections::HashMap<PeerKey, Vec<Connection>>>> =
    std::sync::LazyLock::new(Default::default);

fn kept(key: PeerKey) -> Option<Connection> {
    let mut kept = KEPT.lock().unwrap_or_else(|p| p.into_inner());
    let list = kept.get_mut(&key)?;
    // A connection the peer closed is dropped here, never written to.
    while let Some(c) = list.pop() {
        if c.is_open() {
            return Some(c);
        }
    }
    None
}

/// POST `body` as JSON from service `from` to service `to` at `addr` over the internal mTLS link (国密 TLS when
/// `[tls] sm_internal_only`), on a kept-alive connection when one is open; the answer's status and JSON (`null` when
/// it is not JSON), or an error that names the service when no answer came.
pub async fn post_service_answer(
    tls: &vbank_config::TlsConfig,
    from: vbank_config::Service,
    to: vbank_config::Service,
    addr: SocketAddr,
    path: &str,
    body: &serde_json::Value,
    timeout: Duration,
) -> Result<(StatusCode, serde_json::Value), String> {
    let key = (from, to, addr);
    let fut = async {
        let mut c = match kept(key) {
            Some(c) => c,
            None => {
                let cfg = vbank_tls::internal_client_config(tls, from).map_err(|e| e.to_string())?;
                let name = vbank_tls::service_dns_name(to);
                Connection::open(cfg, addr, &name, timeout).await.map_err(|e| format!("{}: {e}", to.name()))?
            }
        };
        let (s, b) = c
            .request(Method::POST, path, Some(body.to_string().into()))
            .await
            .map_err(|e| format!("{}: {e}", to.name()))?;
        let mut kept = KEPT.lock().unwrap_or_else(|p| p.into_inner());
        let list = kept.entry(key).or_default();
        if list.len() < KEPT_PER_PEER {
            list.push(c);
        }
        Ok::<_, String>((s, b))
    };
    let (s, b) = tokio::time::timeout(timeout, fut)
        .await
        .map_err(|_| format!("{}: no answer from {addr} within {timeout:?}", to.name()))??;
    Ok((s, serde_json::from_slice(&b).unwrap_or(serde_json::Value::Null)))
}

/// [`post_service_answer`], with an answer that is not a success turned into an error that names the service, the
/// path, the status and the reason the service gave (`message` or `error`).
pub async fn post_service(
    tls: &vbank_config::TlsConfig,
    from: vbank_config::Service,
    to: vbank_config::Service,
    addr: SocketAddr,
    path: &str,
    body: &serde_json::Value,
    timeout: Duration,
) -> Result<serde_json::Value, String> {
    let (s, v) = post_service_answer(tls, from, to, addr, path, body, timeout).await?;
    if !s.is_success() {
        let why = v["message"].as_str().or(v["error"].as_str()).unwrap_or_default();
        return Err(format!("{} {path}: {s} {why}", to.name()));
    }
    Ok(v)
}
