//! WHIP and WHEP with clients that are not our pages: two str0m peers over real UDP sockets against `vbank up`. One
//! publishes Opus over WHIP; the other plays over WHEP and must receive it; DELETE on the Location ends each.

mod common;

use std::net::UdpSocket;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::free_ports;
use str0m::change::SdpAnswer;
use str0m::media::{Direction, Frequency, MediaKind, MediaTime, Mid};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, Input, Output, Rtc};
use vbank_service::client::{Connection, Method, StatusCode};

/// Make an offer with one audio m-line in `dir`, POST it to `path`, apply the answer. Returns the peer and Location.
async fn negotiate(conn: &mut Connection, path: &str, dir: Direction) -> (Rtc, UdpSocket, String, Mid) {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut rtc = Rtc::builder().build(Instant::now());
    rtc.add_local_candidate(Candidate::host(sock.local_addr().unwrap(), "udp").unwrap());
    let mut api = rtc.sdp_api();
    let mid = api.add_media(MediaKind::Audio, dir, Some("s".into()), None, None);
    let (offer, pending) = api.apply().unwrap();
    let (status, headers, body) = conn
        .request_with(Method::POST, path, &[("content-type", "application/sdp")], Some(offer.to_sdp_string().into()))
        .await
        .unwrap();
    assert_eq!(status, StatusCode::CREATED, "{}", String::from_utf8_lossy(&body));
    assert_eq!(headers["content-type"], "application/sdp");
    let location = headers["location"].to_str().unwrap().to_string();
    let answer = SdpAnswer::from_sdp_string(std::str::from_utf8(&body).unwrap()).unwrap();
    rtc.sdp_api().accept_answer(pending, answer).unwrap();
    (rtc, sock, location, mid)
}

/// Run a peer until `stop`: publish a 20 ms Opus frame every 20 ms once connected (if `publish`), count media received.
fn drive(mut rtc: Rtc, sock: UdpSocket, publish: Option<Mid>, received: Arc<AtomicUsize>, stop: Arc<AtomicBool>) {
    let local = sock.local_addr().unwrap();
    let mut buf = vec![0u8; 2000];
    let mut connected = false;
    let mut next_frame = Instant::now();
    let mut rtp = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let timeout = loop {
            match rtc.poll_output().unwrap() {
                Output::Transmit(t) => {
                    sock.send_to(&t.contents, t.destination).unwrap();
                }
                Output::Timeout(t) => break t,
                Output::Event(Event::Connected) => connected = true,
                Output::Event(Event::MediaData(_)) => {
                    received.fetch_add(1, Ordering::Relaxed);
                }
                Output::Event(_) => {}
            }
        };
        let now = Instant::now();
        if publish.is_some() && connected && now >= next_frame {
            if let Some(w) = publish.and_then(|m| rtc.writer(m)) {
                let pt = w.payload_params().next().unwrap().pt();
                w.write(pt, now, MediaTime::new(rtp, Frequency::FORTY_EIGHT_KHZ), vec![0xF8, 0xFF, 0xFE]).unwrap();
                rtp += 960;
            }
            next_frame = now + Duration::from_millis(20);
            continue;
        }
        let wait = timeout
            .min(next_frame)
            .saturating_duration_since(now)
            .clamp(Duration::from_millis(1), Duration::from_millis(20));
        sock.set_read_timeout(Some(wait)).unwrap();
        match sock.recv_from(&mut buf) {
            Ok((n, source)) => {
                let contents = buf[..n].try_into().unwrap();
                rtc.handle_input(Input::Receive(
                    Instant::now(),
                    Receive { proto: Protocol::Udp, source, destination: local, contents },
                ))
                .unwrap();
            }
            Err(_) => rtc.handle_input(Input::Timeout(Instant::now())).unwrap(),
        }
    }
}

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
