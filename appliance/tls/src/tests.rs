//! Handshakes in memory between rustls endpoints built from a freshly generated development PKI.

use rustls::{ClientConnection, ServerConnection};
use rustls_pki_types::ServerName;

use super::*;

fn pki() -> (tempfile::TempDir, TlsConfig) {
    let dir = tempfile::tempdir().unwrap();
    let src = format!("[tls]\ndir = \"{}\"\n", dir.path().display());
    let (cfg, _) = vbank_config::parse(&src).unwrap();
    let names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
    assert_eq!(devca::ensure_dev_pki(&cfg.tls, &names).unwrap(), devca::DevPki::Created);
    assert_eq!(devca::ensure_dev_pki(&cfg.tls, &names).unwrap(), devca::DevPki::Existing);
    (dir, cfg.tls)
}

/// Drive both sides until the handshake completes or fails.
fn handshake(client: &mut ClientConnection, server: &mut ServerConnection) -> Result<(), rustls::Error> {
    for _ in 0..20 {
        let mut buf = Vec::new();
        while client.wants_write() {
            client.write_tls(&mut buf).unwrap();
        }
        if !buf.is_empty() {
            server.read_tls(&mut buf.as_slice()).unwrap();
            server.process_new_packets()?;
        }
        let mut buf = Vec::new();
        while server.wants_write() {
            server.write_tls(&mut buf).unwrap();
        }
        if !buf.is_empty() {
            client.read_tls(&mut buf.as_slice()).unwrap();
            client.process_new_packets()?;
        }
        if !client.is_handshaking() && !server.is_handshaking() {
            return Ok(());
        }
    }
    panic!("handshake did not finish");
}

#[test]
fn mtls_names_the_calling_service() {
    let (_d, tls) = pki();
    let server_cfg = service_server_config(&tls, Service::Keyd, ClientAuth::Required).unwrap();
    let client_cfg = service_client_config(&tls, Service::Recorder).unwrap();
    let name = ServerName::try_from(service_dns_name(Service::Keyd)).unwrap();
    let mut c = ClientConnection::new(client_cfg, name).unwrap();
    let mut s = ServerConnection::new(server_cfg).unwrap();
    handshake(&mut c, &mut s).unwrap();
    assert_eq!(Peer::from_chain(s.peer_certificates()), Peer::Service(Service::Recorder));
    assert_eq!(c.protocol_version(), Some(rustls::ProtocolVersion::TLSv1_3));
}

#[test]
fn required_client_auth_refuses_anonymous_callers() {
    let (_d, tls) = pki();
    let server_cfg = service_server_config(&tls, Service::Keyd, ClientAuth::Required).unwrap();
    let name = ServerName::try_from(service_dns_name(Service::Keyd)).unwrap();
    let mut c = ClientConnection::new(anonymous_client_config(&tls).unwrap(), name).unwrap();
    let mut s = ServerConnection::new(server_cfg).unwrap();
    let err = handshake(&mut c, &mut s).unwrap_err();
    assert!(matches!(err, rustls::Error::NoCertificatesPresented), "{err:?}");
}

#[test]
fn optional_client_auth_admits_anonymous_as_anonymous() {
    let (_d, tls) = pki();
    let server_cfg = service_server_config(&tls, Service::Gateway, ClientAuth::Optional).unwrap();
    let mut c =
        ClientConnection::new(anonymous_client_config(&tls).unwrap(), ServerName::try_from("localhost").unwrap())
            .unwrap();
    let mut s = ServerConnection::new(server_cfg).unwrap();
    handshake(&mut c, &mut s).unwrap();
    assert_eq!(Peer::from_chain(s.peer_certificates()), Peer::Anonymous);
}

#[test]
fn a_certificate_from_another_ca_is_refused() {
    let (_d, tls) = pki();
    let (_d2, other) = pki();
    let server_cfg = service_server_config(&tls, Service::Keyd, ClientAuth::Required).unwrap();
    // Client trusts our CA but presents a certificate issued by another one.
    let mut mixed = other.clone();
    mixed.internal_ca = tls.internal_ca.clone();
    let client_cfg = service_client_config(&mixed, Service::Recorder).unwrap();
    let name = ServerName::try_from(service_dns_name(Service::Keyd)).unwrap();
    let mut c = ClientConnection::new(client_cfg, name).unwrap();
    let mut s = ServerConnection::new(server_cfg).unwrap();
    assert!(handshake(&mut c, &mut s).is_err());
}

#[test]
fn public_listener_serves_localhost_and_ip() {
    let (_d, tls) = pki();
    for host in ["localhost", "127.0.0.1"] {
        let mut c = ClientConnection::new(
            anonymous_client_config(&tls).unwrap(),
            ServerName::try_from(host).unwrap().to_owned(),
        )
        .unwrap();
        let mut s = ServerConnection::new(public_server_config(&tls).unwrap()).unwrap();
        handshake(&mut c, &mut s).unwrap();
    }
}

#[test]
fn missing_and_bad_files_name_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let e = load_certs(&dir.path().join("nope.crt")).unwrap_err().to_string();
    assert!(e.contains("nope.crt") && e.contains("hint"), "{e}");
    let junk = dir.path().join("junk.crt");
    std::fs::write(&junk, "hello").unwrap();
    let e = load_certs(&junk).unwrap_err().to_string();
    assert!(e.contains("no CERTIFICATE"), "{e}");
}
