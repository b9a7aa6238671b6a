//! WHIP and WHEP with clients that are not our pages: two str0m peers over real UDP sockets against `vbank up`. One
//! publishes Opus over WHIP; the other plays over WHEP and must receive it; DELETE on the Location ends each.

mod common;

use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::{drive, free_ports, negotiate};
use str0m::media::Direction;
use vbank_service::client::{Connection, Method, StatusCode};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_str0m_publisher_over_whip_is_heard_by_a_str0m_player_over_whep() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let (public, base) = free_ports();
    let (mut child, _) = common::spawn_up(&data, public, base, Stdio::null());
    let (cfg, _) = vbank_config::load(&data.join("vbank.toml")).unwrap();
    let tls = vbank_tls::anonymous_client_config(&cfg.tls).unwrap();
    let addr = format!("127.0.0.1:{public}").parse().unwrap();
    let mut conn = Connection::open(tls, addr, "localhost", Duration::from_secs(10)).await.unwrap();

    let (pub_rtc, pub_sock, pub_location, pub_mid) = negotiate(&mut conn, "/whip/radio-1", Direction::SendOnly).await;
    assert!(pub_location.starts_with("/whip/radio-1/"));
    let (play_rtc, play_sock, play_location, _) = negotiate(&mut conn, "/whep/radio-1", Direction::RecvOnly).await;

    let stop = Arc::new(AtomicBool::new(false));
    let (heard, sent) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let publisher = {
        let (stop, sent) = (stop.clone(), sent.clone());
        std::thread::spawn(move || drive(pub_rtc, pub_sock, Some(pub_mid), sent, stop))
    };
    let player = {
        let (stop, heard) = (stop.clone(), heard.clone());
        std::thread::spawn(move || drive(play_rtc, play_sock, None, heard, stop))
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while heard.load(Ordering::Relaxed) < 25 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.store(true, Ordering::Relaxed);
    publisher.join().unwrap();
    player.join().unwrap();
    assert!(heard.load(Ordering::Relaxed) >= 25, "the WHEP player heard {} frames", heard.load(Ordering::Relaxed));

    for location in [pub_location, play_location] {
        let (s, _, _) = conn.request_with(Method::DELETE, &location, &[], None).await.unwrap();
        assert_eq!(s, StatusCode::OK);
    }
    let (s, _, body) = conn
        .request_with(Method::POST, "/whip/radio-1", &[("content-type", "application/sdp")], Some("v=0\r\n".into()))
        .await
        .unwrap();
    assert_eq!(s, StatusCode::BAD_REQUEST, "{}", String::from_utf8_lossy(&body));

    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGTERM).unwrap();
    assert!(child.wait().unwrap().success());
}
