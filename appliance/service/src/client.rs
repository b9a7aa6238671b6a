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

/// Send one request and return the status and body. `server_name` is checked against the server's certificate.
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
        let tcp = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| CallError::Connect { addr, detail: e.to_string() })?;
        let name = ServerName::try_from(server_name.to_string())
            .map_err(|e| CallError::Tls { addr, detail: e.to_string() })?;
        let stream = TlsConnector::from(tls)
            .connect(name, tcp)
            .await
            .map_err(|e| CallError::Tls { addr, detail: e.to_string() })?;
        let http = |e: hyper::Error| CallError::Http { addr, detail: e.to_string() };
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(http)?;
        tokio::spawn(conn);
        let mut req = Request::builder().method(method).uri(path).header(hyper::header::HOST, server_name);
        if body.is_some() {
            req = req.header(hyper::header::CONTENT_TYPE, "application/json");
        }
        let req = req
            .body(Full::new(body.unwrap_or_default()))
            .map_err(|e| CallError::Http { addr, detail: e.to_string() })?;
        let resp = sender.send_request(req).await.map_err(http)?;
        let status = resp.status();
        let bytes = resp.into_body().collect().await.map_err(http)?.to_bytes();
        Ok((status, bytes))
    };
    tokio::time::timeout(timeout, fut)
        .await
        .map_err(|_| CallError::Connect { addr, detail: format!("no answer within {timeout:?}") })?
}
