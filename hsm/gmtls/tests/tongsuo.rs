//! Interop with an independent RFC 8998 implementation: BabaSSL 8.3 (Tongsuo) from PyPI tongsuopy, in strict 国密
//! TLS 1.3 mode, driven by `tongsuo_peer.py`. Our server accepts its client; our client completes a handshake with
//! its server. tests/setup.sh installs tongsuopy in ~/.cache/vbank/venv (or set VBANK_TONGSUO_PYTHON).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, ServerConfig, ServerConnection, StreamOwned};
use vbank_gmtls::{TLS_SM4_GCM_SM3_ID, cert, provider};

fn python() -> PathBuf {
    let p = std::env::var_os("VBANK_TONGSUO_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/vbank/venv/bin/python"));
    assert!(
        p.exists(),
        "{} missing: run tests/setup.sh (it installs PyPI tongsuopy into ~/.cache/vbank/venv)",
        p.display()
    );
    p
}

fn peer() -> PathBuf {
    // The checkout's path at run time: a shared target directory may hold a binary built from another checkout.
    Path::new(&std::env::var("CARGO_MANIFEST_DIR").expect("cargo test sets CARGO_MANIFEST_DIR"))
        .join("tests/tongsuo_peer.py")
}

fn pkcs8_pem(k: &vbank_crypto::sm2sig::Sm2PrivateKey) -> Vec<u8> {
    k.to_pkcs8_pem().unwrap().expose().to_vec()
}

fn pkcs8_der(k: &vbank_crypto::sm2sig::Sm2PrivateKey) -> Vec<u8> {
    use sm2::pkcs8::EncodePrivateKey;
    sm2::SecretKey::from_slice(k.scalar().expose()).unwrap().to_pkcs8_der().unwrap().as_bytes().to_vec()
}

#[test]
fn tongsuo_client_against_our_server() {
    let dir = tempfile::tempdir().unwrap();
    let ca = cert::sm2_ca("interop CA").unwrap();
    let leaf = cert::sm2_leaf(&ca, "localhost", &["localhost".into(), "127.0.0.1".into()]).unwrap();
    std::fs::write(dir.path().join("ca.pem"), ca.cert_pem()).unwrap();
    let server = ServerConfig::builder_with_provider(Arc::new(provider()))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![CertificateDer::from(leaf.cert_der.clone()), CertificateDer::from(ca.cert_der.clone())],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(pkcs8_der(&leaf.key))),
        )
        .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let srv = std::thread::spawn(move || {
        let (tcp, _) = listener.accept().unwrap();
        let mut tls = StreamOwned::new(ServerConnection::new(Arc::new(server)).unwrap(), tcp);
        let mut buf = [0u8; 64];
        let n = tls.read(&mut buf).unwrap();
        let suite = tls.conn.negotiated_cipher_suite().map(|s| s.suite());
        tls.write_all(&buf[..n].to_ascii_uppercase()).unwrap();
        tls.flush().unwrap();
        (String::from_utf8_lossy(&buf[..n]).into_owned(), suite)
    });
    let out = Command::new(python())
        .arg(peer())
        .args(["client", &port.to_string()])
        .arg(dir.path().join("ca.pem"))
        .arg("hello from tongsuo")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let v: serde_json::Value = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("{e}: {stdout} {}", String::from_utf8_lossy(&out.stderr)));
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(v["cipher"], "TLS_SM4_GCM_SM3", "{v}");
    assert_eq!(v["verify"], 0, "Tongsuo verified our SM2 certificate chain: {v}");
    assert_eq!(v["echo"], "HELLO FROM TONGSUO");
    let (got, suite) = srv.join().unwrap();
    assert_eq!(got, "hello from tongsuo");
    assert_eq!(suite, Some(rustls::CipherSuite::Unknown(TLS_SM4_GCM_SM3_ID)));
}

#[test]
fn our_client_against_tongsuo_server() {
    let dir = tempfile::tempdir().unwrap();
    let ca = cert::sm2_ca("interop CA").unwrap();
    let leaf = cert::sm2_leaf(&ca, "localhost", &["localhost".into()]).unwrap();
    std::fs::write(dir.path().join("chain.pem"), format!("{}{}", leaf.cert_pem(), ca.cert_pem())).unwrap();
    std::fs::write(dir.path().join("key.pem"), pkcs8_pem(&leaf.key)).unwrap();
    let mut child = Command::new(python())
        .arg(peer())
        .arg("server")
        .arg(dir.path().join("chain.pem"))
        .arg(dir.path().join("key.pem"))
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut port = String::new();
    out.read_line(&mut port).unwrap();
    let port: u16 = port.trim().parse().unwrap_or_else(|e| panic!("{e}: {port:?}"));

    let mut roots = RootCertStore::empty();
    roots.add(CertificateDer::from(ca.cert_der.clone())).unwrap();
    let client = ClientConfig::builder_with_provider(Arc::new(provider()))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let conn = ClientConnection::new(Arc::new(client), ServerName::try_from("localhost").unwrap()).unwrap();
    let mut tls = StreamOwned::new(conn, tcp);
    tls.write_all(b"hello from vbank").unwrap();
    let mut buf = [0u8; 64];
    let n = tls.read(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"hello from vbank");
    assert_eq!(tls.conn.negotiated_cipher_suite().unwrap().suite(), rustls::CipherSuite::Unknown(TLS_SM4_GCM_SM3_ID));
    let mut rest = String::new();
    out.read_to_string(&mut rest).unwrap();
    let v: serde_json::Value = serde_json::from_str(rest.trim()).unwrap();
    assert_eq!((v["ok"].as_bool(), v["cipher"].as_str()), (Some(true), Some("TLS_SM4_GCM_SM3")), "{v}");
    child.wait().unwrap();
}
