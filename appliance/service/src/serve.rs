//! Serving an axum router over rustls, with the caller's mTLS identity in every request.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::Request;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_rustls::LazyConfigAcceptor;
use tower::ServiceExt;
use vbank_tls::{Peer, ServerTls};

use crate::ServiceError;

/// How long a client may take to finish the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long open connections get to finish after shutdown is requested.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// The address a request came from (in request extensions next to [`Peer`]).
#[derive(Debug, Clone, Copy)]
pub struct RemoteAddr(pub SocketAddr);

/// Bind a listener, turning the usual failures into one line that names the fix.
pub async fn bind(addr: SocketAddr, key: &str) -> Result<TcpListener, ServiceError> {
    TcpListener::bind(addr).await.map_err(|e| {
        let hint = match e.kind() {
            std::io::ErrorKind::AddrInUse => format!(
                "another process is listening on port {}: stop it (`ss -ltnp 'sport = :{}'` shows which) or change \
                 {key} in vbank.toml",
                addr.port(),
                addr.port()
            ),
            std::io::ErrorKind::PermissionDenied => format!(
                "ports below 1024 need CAP_NET_BIND_SERVICE: grant it in the unit (AmbientCapabilities=) or choose a \
                 port of 1024 or more for {key}"
            ),
            std::io::ErrorKind::AddrNotAvailable => {
                format!("{} is not an address of this machine: use 0.0.0.0 or one of its addresses in {key}", addr.ip())
            }
            _ => format!("check {key} in vbank.toml"),
        };
        ServiceError::Bind { addr, key: key.to_string(), source: e, hint }
    })
}

/// Serve `app` on `listener` over TLS until `shutdown` turns true, then drain open connections.
///
/// The TLS configuration is chosen per connection from the ClientHello ([`ServerTls::choose`]): standard TLS for
/// browsers, RFC 8998 for SM-suite clients, on the same port. Every request carries a [`Peer`] (who the TLS client
/// certificate says the caller is) and a [`RemoteAddr`].
pub async fn serve_tls(listener: TcpListener, tls: ServerTls, app: Router, mut shutdown: watch::Receiver<bool>) {
    let tls = Arc::new(tls);
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (tcp, remote) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Usually EMFILE: back off instead of spinning.
                        log::warn!("accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = tcp.set_nodelay(true);
                conns.spawn(connection(tls.clone(), tcp, remote, app.clone(), shutdown.clone()));
            }
            _ = shutdown.changed() => break,
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
    drop(listener);
    let drained = tokio::time::timeout(DRAIN_TIMEOUT, async { while conns.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        log::warn!("{} connection(s) still open after {DRAIN_TIMEOUT:?}; closing them", conns.len());
        conns.abort_all();
    }
}

async fn handshake(
    configs: &ServerTls,
    tcp: tokio::net::TcpStream,
) -> std::io::Result<tokio_rustls::server::TlsStream<tokio::net::TcpStream>> {
    let start = LazyConfigAcceptor::new(rustls::server::Acceptor::default(), tcp).await?;
    let config = configs.choose(start.client_hello().cipher_suites());
    start.into_stream(config).await
}

async fn connection(
    configs: Arc<ServerTls>,
    tcp: tokio::net::TcpStream,
    remote: SocketAddr,
    app: Router,
    mut shutdown: watch::Receiver<bool>,
) {
    let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake(&configs, tcp)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            log::debug!("TLS handshake from {remote} failed: {e}");
            return;
        }
        Err(_) => {
            log::debug!("TLS handshake from {remote} timed out");
            return;
        }
    };
    let peer = Peer::from_chain(tls.get_ref().1.peer_certificates());
    let svc = app.map_request(move |mut req: Request<Incoming>| {
        req.extensions_mut().insert(peer.clone());
        req.extensions_mut().insert(RemoteAddr(remote));
        req
    });
    let builder = auto::Builder::new(TokioExecutor::new());
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(tls), TowerToHyperService::new(svc));
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                log::debug!("connection from {remote} ended: {e}");
            }
        }
        _ = shutdown.changed() => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}
