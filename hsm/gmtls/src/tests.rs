//! Handshakes in memory: our SM client against our SM server, and refusals.

use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, ServerConfig, ServerConnection};

use super::*;

fn pki() -> (CertificateDer<'static>, CertificateDer<'static>, PrivateKeyDer<'static>) {
    let ca = cert::sm2_ca("test SM2 CA").unwrap();
    let leaf = cert::sm2_leaf(&ca, "server", &["localhost".into(), "127.0.0.1".into()]).unwrap();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(pkcs8(&leaf.key)));
    (CertificateDer::from(ca.cert_der), CertificateDer::from(leaf.cert_der), key)
}

fn pkcs8(k: &Sm2PrivateKey) -> Vec<u8> {
    use sm2::pkcs8::EncodePrivateKey;
    sm2::SecretKey::from_slice(k.scalar().expose()).unwrap().to_pkcs8_der().unwrap().as_bytes().to_vec()
}

fn configs() -> (Arc<ClientConfig>, Arc<ServerConfig>) {
    let (ca, leaf, key) = pki();
    let p = Arc::new(provider());
    let server = ServerConfig::builder_with_provider(p.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![leaf, ca.clone()], key)
        .unwrap();
    let mut roots = RootCertStore::empty();
    roots.add(ca).unwrap();
    let client = ClientConfig::builder_with_provider(p)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    (Arc::new(client), Arc::new(server))
}

fn pump(c: &mut ClientConnection, s: &mut ServerConnection) -> Result<(), rustls::Error> {
    for _ in 0..20 {
        let mut buf = Vec::new();
        while c.wants_write() {
            c.write_tls(&mut buf).unwrap();
        }
        let mut rd = buf.as_slice();
        while !rd.is_empty() {
            s.read_tls(&mut rd).unwrap();
            s.process_new_packets()?;
        }
        let mut buf = Vec::new();
        while s.wants_write() {
            s.write_tls(&mut buf).unwrap();
        }
        let mut rd = buf.as_slice();
        while !rd.is_empty() {
            c.read_tls(&mut rd).unwrap();
            c.process_new_packets()?;
        }
        if !c.is_handshaking() && !s.is_handshaking() && !c.wants_write() && !s.wants_write() {
            return Ok(());
        }
    }
    panic!("no progress");
}

#[test]
fn sm_handshake_and_echo() {
    use std::io::{Read, Write};
    let (client, server) = configs();
    let mut c = ClientConnection::new(client, ServerName::try_from("localhost").unwrap()).unwrap();
    let mut s = ServerConnection::new(server).unwrap();
    pump(&mut c, &mut s).unwrap();
    assert_eq!(c.negotiated_cipher_suite().unwrap().suite(), rustls::CipherSuite::Unknown(TLS_SM4_GCM_SM3_ID));
    assert_eq!(c.negotiated_key_exchange_group().unwrap().name(), rustls::NamedGroup::Unknown(CURVE_SM2_ID));
    c.writer().write_all(b"hello over SM4-GCM").unwrap();
    pump(&mut c, &mut s).unwrap();
    let mut got = vec![0u8; 18];
    s.reader().read_exact(&mut got).unwrap();
    assert_eq!(&got, b"hello over SM4-GCM");
    for i in 0..4u8 {
        s.writer().write_all(&vec![i; 10_000]).unwrap();
        pump(&mut c, &mut s).unwrap();
        let mut back = vec![0u8; 10_000];
        c.reader().read_exact(&mut back).unwrap();
        assert!(back.iter().all(|b| *b == i));
    }
}

#[test]
fn a_server_from_another_ca_is_refused() {
    let (client, _) = configs();
    let (_, server) = configs();
    let mut c = ClientConnection::new(client, ServerName::try_from("localhost").unwrap()).unwrap();
    let mut s = ServerConnection::new(server).unwrap();
    assert!(pump(&mut c, &mut s).is_err());
}

#[test]
fn a_standard_only_client_gets_a_clean_failure() {
    let (_, server) = configs();
    let std_client = ClientConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(RootCertStore::empty())
        .with_no_client_auth();
    let mut c = ClientConnection::new(Arc::new(std_client), ServerName::try_from("localhost").unwrap()).unwrap();
    let mut s = ServerConnection::new(server).unwrap();
    let e = pump(&mut c, &mut s).unwrap_err();
    assert!(matches!(e, rustls::Error::PeerIncompatible(_)), "{e:?}");
}

#[test]
fn openssl_accepts_our_sm2_certificates() {
    let dir = tempfile::tempdir().unwrap();
    let ca = cert::sm2_ca("interop CA").unwrap();
    let leaf = cert::sm2_leaf(&ca, "server", &["localhost".into()]).unwrap();
    std::fs::write(dir.path().join("ca.pem"), ca.cert_pem()).unwrap();
    std::fs::write(dir.path().join("leaf.pem"), leaf.cert_pem()).unwrap();
    // Certificate signatures use the default SM2 ID (GB/T 35276); Debian's OpenSSL 3.0 must be told it.
    let out = std::process::Command::new("openssl")
        .args(["verify", "-vfyopt", "distid:1234567812345678", "-CAfile"])
        .arg(dir.path().join("ca.pem"))
        .arg(dir.path().join("leaf.pem"))
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(": OK"),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::process::Command::new("openssl")
        .args(["x509", "-noout", "-text", "-in"])
        .arg(dir.path().join("leaf.pem"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("SM2-with-SM3")
            && text.contains("DNS:localhost")
            && text.contains("TLS Web Server Authentication"),
        "{text}"
    );
}
