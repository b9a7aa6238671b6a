//! `vbank bench tls`: one loopback listener that picks its configuration from the ClientHello, as vbank's listeners
//! do; against it, full handshakes per second and bulk MB/s for TLS_SM4_GCM_SM3 (curveSM2, SM2 certificate) and for
//! TLS_AES_256_GCM_SHA384 (P-256 ECDHE, ECDSA P-256 certificate), in the same run.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context as _, Result};
use rustls::pki_types::ServerName;
use rustls::server::Acceptor;
use rustls::{ClientConfig, ClientConnection, ServerConnection, StreamOwned};
use serde_json::json;
use vbank_tls::ServerTls;

use super::median;

const BULK: usize = 64 * 1024 * 1024;

fn serve(listener: TcpListener, tls: Arc<ServerTls>) {
    for stream in listener.incoming() {
        let Ok(mut stream) = stream else { continue };
        let tls = tls.clone();
        std::thread::spawn(move || -> Result<()> {
            let mut acceptor = Acceptor::default();
            let accepted = loop {
                acceptor.read_tls(&mut stream)?;
                if let Some(a) = acceptor.accept().map_err(|(e, _)| e)? {
                    break a;
                }
            };
            let config = tls.choose(accepted.client_hello().cipher_suites());
            let conn: ServerConnection = accepted.into_connection(config).map_err(|(e, _)| e)?;
            let mut s = StreamOwned::new(conn, stream);
            let mut cmd = [0u8; 1];
            s.read_exact(&mut cmd)?;
            if cmd[0] == b'b' {
                let chunk = vec![0x5au8; 64 * 1024];
                for _ in 0..BULK / chunk.len() {
                    s.write_all(&chunk)?;
                }
            }
            s.conn.send_close_notify();
            s.flush()?;
            Ok(())
        });
    }
}

fn session(client: &Arc<ClientConfig>, port: u16, cmd: u8) -> Result<usize> {
    let tcp = TcpStream::connect(("127.0.0.1", port))?;
    tcp.set_nodelay(true)?;
    let conn = ClientConnection::new(client.clone(), ServerName::try_from("localhost")?)?;
    let mut s = StreamOwned::new(conn, tcp);
    s.write_all(&[cmd])?;
    let mut buf = vec![0u8; 256 * 1024];
    let mut total = 0;
    loop {
        match s.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => total += n,
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(total),
            Err(e) => return Err(e.into()),
        }
    }
}

fn handshakes_per_s(client: &Arc<ClientConfig>, port: u16, seconds: f64) -> Result<f64> {
    let start = Instant::now();
    let mut n = 0usize;
    while start.elapsed().as_secs_f64() < seconds {
        session(client, port, b'h')?;
        n += 1;
    }
    Ok(n as f64 / start.elapsed().as_secs_f64())
}

fn bulk_mb_per_s(client: &Arc<ClientConfig>, port: u16) -> Result<f64> {
    let start = Instant::now();
    let got = session(client, port, b'b')?;
    anyhow::ensure!(got == BULK, "received {got} of {BULK} bytes");
    Ok(got as f64 / start.elapsed().as_secs_f64() / 1e6)
}

/// A standard client restricted to TLS_AES_256_GCM_SHA384 and P-256, the fair peer of TLS_SM4_GCM_SM3 and curveSM2.
fn standard_client(tls: &vbank_config::TlsConfig) -> Result<Arc<ClientConfig>> {
    let mut provider = rustls::crypto::aws_lc_rs::default_provider();
    provider.cipher_suites = vec![rustls::crypto::aws_lc_rs::cipher_suite::TLS13_AES_256_GCM_SHA384];
    provider.kx_groups = vec![rustls::crypto::aws_lc_rs::kx_group::SECP256R1];
    let mut roots = rustls::RootCertStore::empty();
    for c in vbank_tls::load_certs(&tls.internal_ca)? {
        roots.add(c)?;
    }
    Ok(Arc::new(
        ClientConfig::builder_with_provider(Arc::new(provider))
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_root_certificates(roots)
            .with_no_client_auth(),
    ))
}

/// Run the benchmark.
pub fn run(seconds: f64, rounds: usize, json_out: bool) -> Result<()> {
    let dir = std::env::temp_dir().join(format!("vbank-bench-tls-{}", std::process::id()));
    let (cfg, _) = vbank_config::parse(&format!("[tls]\ndir = \"{}\"\nsm = true\n", dir.display()))
        .map_err(|d| anyhow::anyhow!("{d:?}"))?;
    vbank_tls::devca::ensure_dev_pki(&cfg.tls, &["localhost".to_string()])?;
    let server = Arc::new(vbank_tls::public_server_tls(&cfg.tls)?);
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    std::thread::spawn(move || serve(listener, server));

    let std_client = standard_client(&cfg.tls)?;
    let sm_client = vbank_tls::anonymous_client_config_sm(&cfg.tls)?;
    let (mut hs_std, mut hs_sm, mut bulk_std, mut bulk_sm) = (vec![], vec![], vec![], vec![]);
    for _ in 0..rounds {
        hs_std.push(handshakes_per_s(&std_client, port, seconds).context("standard handshakes")?);
        hs_sm.push(handshakes_per_s(&sm_client, port, seconds).context("SM handshakes")?);
        bulk_std.push(bulk_mb_per_s(&std_client, port).context("standard bulk")?);
        bulk_sm.push(bulk_mb_per_s(&sm_client, port).context("SM bulk")?);
    }
    let _ = std::fs::remove_dir_all(&dir);
    let (hs_std, hs_sm, bulk_std, bulk_sm) = (median(hs_std), median(hs_sm), median(bulk_std), median(bulk_sm));
    if json_out {
        println!(
            "{}",
            json!({"handshakes_per_s": {"tls_aes_256_gcm_sha384": hs_std, "tls_sm4_gcm_sm3": hs_sm},
                   "bulk_mb_per_s": {"tls_aes_256_gcm_sha384": bulk_std, "tls_sm4_gcm_sm3": bulk_sm},
                   "rounds": rounds, "seconds_per_round": seconds, "bulk_bytes": BULK})
        );
        return Ok(());
    }
    println!("vbank bench tls — one loopback listener choosing by ClientHello; medians of {rounds} rounds\n");
    println!("{:<28} {:>26} {:>26} {:>8}", "", "TLS_AES_256_GCM_SHA384", "TLS_SM4_GCM_SM3", "SM/std");
    println!("{:<28} {:>26.0} {:>26.0} {:>7.2}×", "full handshakes per second", hs_std, hs_sm, hs_sm / hs_std);
    println!("{:<28} {:>26.0} {:>26.0} {:>7.2}×", "bulk MB/s (64 MiB)", bulk_std, bulk_sm, bulk_sm / bulk_std);
    println!("\nstd: P-256 ECDHE, ECDSA P-256 certificate (aws-lc-rs). SM: curveSM2, SM2 certificate (RustCrypto).");
    Ok(())
}
