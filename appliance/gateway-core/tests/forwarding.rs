//! The SFU with two in-memory str0m peers on virtual time: no sockets, no clock. Each peer publishes audio; each
//! must receive the other's through the SFU after the SFU's renegotiation offer. Then hostile and misplaced input.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::media::{Direction, MediaKind, MediaTime, Mid};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, Input, Output as RtcOutput, Rtc};
use vbank_gateway_core::{MAX_PER_ROOM, Output, ParticipantId, Role, Sfu, SfuError};

const SFU_ADDR: &str = "10.0.0.1:5000";

struct Peer {
    addr: SocketAddr,
    rtc: Rtc,
    id: ParticipantId,
    mid: Mid,
    connected: bool,
    received: usize,
}

fn offer(now: Instant, addr: SocketAddr) -> (Rtc, String, SdpPendingOffer, Mid) {
    offer_dir(now, addr, Direction::SendOnly)
}

fn offer_dir(now: Instant, addr: SocketAddr, dir: Direction) -> (Rtc, String, SdpPendingOffer, Mid) {
    let mut rtc = Rtc::builder().build(now);
    rtc.add_local_candidate(Candidate::host(addr, "udp").unwrap());
    let mut api = rtc.sdp_api();
    let mid = api.add_media(MediaKind::Audio, dir, Some("me".into()), None, None);
    let (offer, pending) = api.apply().unwrap();
    (rtc, offer.to_sdp_string(), pending, mid)
}

fn join(sfu: &mut Sfu, now: Instant, addr: &str, role: Role) -> Peer {
    let addr: SocketAddr = addr.parse().unwrap();
    let (mut rtc, sdp, pending, mid) = offer(now, addr);
    let (id, answer) = sfu.join(now, "call", role, &sdp).unwrap();
    rtc.sdp_api().accept_answer(pending, SdpAnswer::from_sdp_string(&answer).unwrap()).unwrap();
    Peer { addr, rtc, id, mid, connected: false, received: 0 }
}

thread_local! {
    /// Tracks bound to recorders so far in this test: the recorder's m-line, the sender's role, the kind.
    static BOUND: std::cell::RefCell<Vec<(String, Role, MediaKind)>> = const { std::cell::RefCell::new(Vec::new()) };
}

thread_local! {
    /// Participants the SFU reported gone.
    static LEFT: std::cell::RefCell<Vec<ParticipantId>> = const { std::cell::RefCell::new(Vec::new()) };
    /// The RTP time of every frame each peer received, by its address.
    static TIMES: std::cell::RefCell<std::collections::HashMap<SocketAddr, Vec<u64>>> = Default::default();
}

/// Move everything that is ready between the SFU and the peers at `now`.
fn exchange(sfu: &mut Sfu, peers: &mut [Peer], now: Instant) {
    for _ in 0..50 {
        let mut moved = false;
        loop {
            match sfu.poll_output() {
                Output::Transmit(t) => {
                    moved = true;
                    if let Some(p) = peers.iter_mut().find(|p| p.addr == t.destination) {
                        let input = Input::Receive(
                            now,
                            Receive {
                                proto: Protocol::Udp,
                                source: t.source,
                                destination: t.destination,
                                contents: (&t.contents[..]).try_into().unwrap(),
                            },
                        );
                        p.rtc.handle_input(input).unwrap();
                    }
                }
                Output::Offer(id, sdp) => {
                    moved = true;
                    let p = peers.iter_mut().find(|p| p.id == id).unwrap();
                    let answer = p.rtc.sdp_api().accept_offer(SdpOffer::from_sdp_string(&sdp).unwrap()).unwrap();
                    sfu.answer(id, &answer.to_sdp_string()).unwrap();
                }
                Output::Left(id, _) => {
                    moved = true;
                    LEFT.with(|l| l.borrow_mut().push(id));
                }
                Output::Bound { mid, role, kind, .. } => BOUND.with(|b| b.borrow_mut().push((mid, role, kind))),
                Output::Timeout(_) => break,
            }
        }
        for p in peers.iter_mut() {
            loop {
                match p.rtc.poll_output().unwrap() {
                    RtcOutput::Transmit(t) => {
                        moved = true;
                        sfu.receive(now, t.source, t.destination, &t.contents);
                    }
                    RtcOutput::Event(Event::Connected) => p.connected = true,
                    RtcOutput::Event(Event::MediaData(d)) => {
                        p.received += 1;
                        let (addr, t) = (p.addr, d.time.numer());
                        TIMES.with(|m| m.borrow_mut().entry(addr).or_default().push(t));
                    }
                    RtcOutput::Event(_) => {}
                    RtcOutput::Timeout(_) => break,
                }
            }
        }
        if !moved {
            return;
        }
    }
}

/// Advance virtual time in 10 ms steps (at most 15 s): the `publishers` write one audio frame per step once
/// connected, everything is exchanged, until `done` holds. Returns the time reached.
fn run_until(
    sfu: &mut Sfu,
    peers: &mut [Peer],
    start: Instant,
    publishers: &[usize],
    done: impl Fn(&[Peer]) -> bool,
) -> Instant {
    thread_local! {
        /// The first time a test ran: RTP time counts from it, so it goes on across calls.
        static EPOCH: std::cell::Cell<Option<Instant>> = const { std::cell::Cell::new(None) };
    }
    let epoch = EPOCH.with(|e| {
        let t = e.get().unwrap_or(start);
        e.set(Some(t));
        t
    });
    let mut now = start;
    for _ in 0..1500 {
        now += Duration::from_millis(10);
        sfu.timeout(now);
        for (i, p) in peers.iter_mut().enumerate() {
            p.rtc.handle_input(Input::Timeout(now)).unwrap();
            if p.connected && publishers.contains(&i) {
                let mid = p.mid;
                let w = p.rtc.writer(mid).unwrap();
                let pt = w.payload_params().next().unwrap().pt();
                let rtp_time = now.duration_since(epoch).as_millis() as u64 * 48;
                let t = MediaTime::new(rtp_time, str0m::media::Frequency::FORTY_EIGHT_KHZ);
                w.write(pt, now, t, vec![0xF8, 0xFF, 0xFE]).unwrap();
            }
        }
        exchange(sfu, peers, now);
        if done(peers) {
            break;
        }
    }
    now
}

#[test]
fn audio_is_forwarded_both_ways_after_renegotiation() {
    let start = Instant::now();
    let mut sfu = Sfu::new(start, SFU_ADDR.parse().unwrap());
    let mut peers = vec![
        join(&mut sfu, start, "10.0.0.2:7000", Role::Customer),
        join(&mut sfu, start, "10.0.0.3:7000", Role::Teller),
    ];
    let mut now = run_until(&mut sfu, &mut peers, start, &[0, 1], |p| p.iter().all(|p| p.received >= 20));
    // Statistics arrive every second: step on until both participants have reported traffic.
    for _ in 0..300 {
        if sfu.quality().iter().all(|(_, s)| s.quality.bytes_rx > 0 && s.quality.bytes_tx > 0) {
            break;
        }
        now = run_until(&mut sfu, &mut peers, now, &[0, 1], |_| true);
    }
    assert!(peers.iter().all(|p| p.connected), "ICE/DTLS completed");
    assert!(
        peers[0].received >= 20 && peers[1].received >= 20,
        "received: {} and {}",
        peers[0].received,
        peers[1].received
    );
    assert!(now - start < Duration::from_secs(15), "within 15 s of virtual time");
    let c = sfu.counters();
    assert!(c.frames_forwarded >= 40 && c.datagrams_in > 0 && c.datagrams_out > 0 && c.bytes_out > 0, "{c:?}");
    assert_eq!((sfu.participant_count(), sfu.room_count()), (2, 1));
    let q = sfu.quality();
    assert_eq!(q.len(), 2);
    assert!(q.iter().all(|(_, s)| s.quality.bytes_rx > 0 && s.quality.bytes_tx > 0), "{q:?}");

    // One leaves: the SFU reports it.
    sfu.leave(peers[1].id);
    let mut left = false;
    for _ in 0..10 {
        if let Output::Left(id, summary) = sfu.poll_output() {
            left = id == peers[1].id;
            assert_eq!((summary.room.as_str(), summary.role), ("call", Role::Teller));
            assert!(summary.quality.bytes_rx > 0 && summary.quality.bytes_tx > 0, "{summary:?}");
            break;
        }
    }
    assert!(left);
}

#[test]
fn a_whep_style_subscriber_gets_tracks_without_renegotiation() {
    let start = Instant::now();
    let mut sfu = Sfu::new(start, SFU_ADDR.parse().unwrap());
    let publisher = join(&mut sfu, start, "10.0.0.2:7000", Role::Customer);
    let addr: SocketAddr = "10.0.0.4:7000".parse().unwrap();
    let (mut rtc, sdp, pending, mid) = offer_dir(start, addr, Direction::RecvOnly);
    let (id, answer) = sfu.join_fixed(start, "call", Role::Observer, &sdp).unwrap();
    rtc.sdp_api().accept_answer(pending, SdpAnswer::from_sdp_string(&answer).unwrap()).unwrap();
    let mut peers = vec![publisher, Peer { addr, rtc, id, mid, connected: false, received: 0 }];
    run_until(&mut sfu, &mut peers, start, &[0], |p| p[1].received >= 20);
    assert!(peers[1].received >= 20, "the fixed subscriber received {}", peers[1].received);
}

#[test]
fn a_recorder_learns_whose_track_each_of_its_m_lines_carries() {
    let start = Instant::now();
    let mut sfu = Sfu::new(start, SFU_ADDR.parse().unwrap());
    let publisher = join(&mut sfu, start, "10.0.0.2:7000", Role::Customer);
    let addr: SocketAddr = "10.0.0.5:7000".parse().unwrap();
    let (mut rtc, sdp, pending, mid) = offer_dir(start, addr, Direction::RecvOnly);
    let (id, answer) = sfu.join_fixed(start, "call", Role::Recorder, &sdp).unwrap();
    rtc.sdp_api().accept_answer(pending, SdpAnswer::from_sdp_string(&answer).unwrap()).unwrap();
    let mut peers = vec![publisher, Peer { addr, rtc, id, mid, connected: false, received: 0 }];
    run_until(&mut sfu, &mut peers, start, &[0], |p| p[1].received >= 20);
    let bound = BOUND.with(|b| b.take());
    assert_eq!(bound, [(mid.to_string(), Role::Customer, MediaKind::Audio)], "reported once, with the sender's role");
}

/// A call whose recorder went away 15 s ago, with a replacement just connected (held): the SFU, the peers
/// (publisher, replacement) and the time reached. The SFU keeps backlogs within `budget` bytes.
fn recorder_replaced(budget: usize) -> (Sfu, Vec<Peer>, Instant) {
    let start = Instant::now();
    let mut sfu = Sfu::new(start, SFU_ADDR.parse().unwrap()).with_recorder_backlog(Duration::from_secs(30), budget);
    let publisher = join(&mut sfu, start, "10.0.0.2:7000", Role::Customer);
    let recorder = |sfu: &mut Sfu, now: Instant, addr: &str| {
        let addr: SocketAddr = addr.parse().unwrap();
        let (mut rtc, sdp, pending, mid) = offer_dir(now, addr, Direction::RecvOnly);
        let (id, answer) = sfu.join_fixed(now, "call", Role::Recorder, &sdp).unwrap();
        rtc.sdp_api().accept_answer(pending, SdpAnswer::from_sdp_string(&answer).unwrap()).unwrap();
        Peer { addr, rtc, id, mid, connected: false, received: 0 }
    };
    let first = recorder(&mut sfu, start, "10.0.0.5:7000");
    let mut peers = vec![publisher, first];
    let now = run_until(&mut sfu, &mut peers, start, &[0], |p| p[1].received >= 20);
    assert!(peers[1].received >= 20);

    // The recorder goes away; the call goes on for a while before its replacement joins.
    let lost = peers.pop().unwrap();
    sfu.leave(lost.id);
    let now = run_until(&mut sfu, &mut peers, now, &[0], |_| false);
    let second = recorder(&mut sfu, now, "10.0.0.6:7000");
    peers.push(second);
    let now = run_until(&mut sfu, &mut peers, now, &[0], |p| p[1].connected);
    (sfu, peers, now)
}

#[test]
fn a_recorder_that_replaces_a_lost_one_gets_the_backlog_then_live_media_with_nothing_missing_or_twice() {
    let (mut sfu, mut peers, now) = recorder_replaced(16 << 20);
    let steps = std::cell::Cell::new(0);
    let now = run_until(&mut sfu, &mut peers, now, &[0], |_| {
        steps.set(steps.get() + 1);
        steps.get() >= 200
    });
    assert_eq!(peers[1].received, 0, "live media is held until the backlog is taken");
    assert!(matches!(sfu.take_backlog(peers[0].id, "call"), Err(SfuError::NotRecorder(_))), "only a recorder takes it");

    assert!(matches!(sfu.take_backlog(peers[1].id, "other"), Err(SfuError::UnknownParticipant(_))), "its own room's");
    let taken = sfu.take_backlog(peers[1].id, "call").unwrap();
    assert_eq!(taken.bound, [(peers[1].mid.to_string(), Role::Customer, MediaKind::Audio)], "its m-line's track");
    let backlog = taken.frames;
    assert!(backlog.len() > 1500, "17 s of 10 ms frames: {}", backlog.len());
    assert!(backlog.iter().all(|f| f.label() == "customer/microphone" && f.codec().starts_with("opus/48000")));
    assert!(backlog.windows(2).all(|w| w[1].rtp_time == w[0].rtp_time + 480), "no frame missing in the backlog");
    assert!(now.duration_since(backlog[0].at) <= Duration::from_secs(30), "bounded by the window");
    run_until(&mut sfu, &mut peers, now, &[0], |p| p[1].received >= 20);
    let live = TIMES.with(|m| m.borrow().get(&peers[1].addr).cloned().unwrap_or_default());
    let last = backlog.last().unwrap().rtp_time;
    assert_eq!(live[0] - live[0].min(last), 480, "live media goes on from the frame after the backlog's last");
}

#[test]
fn a_recorder_that_goes_silent_is_dropped_within_seconds_and_a_live_one_never() {
    let (mut sfu, mut peers, now) = recorder_replaced(16 << 20);
    sfu.take_backlog(peers[1].id, "call").unwrap();
    let steps = std::cell::Cell::new(0);
    let ten_seconds = |_: &[Peer]| {
        steps.set(steps.get() + 1);
        steps.get() >= 1000
    };
    let now = run_until(&mut sfu, &mut peers, now, &[0], ten_seconds);
    assert!(!LEFT.with(|l| l.borrow().contains(&peers[1].id)), "a recorder that talks stays");
    let received = peers[1].received;
    assert!(received > 900, "it received the call: {received}");

    // Its process dies: nothing more from it, no goodbye.
    let dead = peers.pop().unwrap();
    steps.set(0);
    let gone = |_: &[Peer]| LEFT.with(|l| l.borrow().contains(&dead.id));
    let later = run_until(&mut sfu, &mut peers, now, &[0], gone);
    assert!(LEFT.with(|l| l.borrow().contains(&dead.id)), "the silent recorder was dropped");
    let took = later.duration_since(now);
    let silence = vbank_gateway_core::RECORDER_SILENCE;
    assert!(took >= silence && took <= silence + Duration::from_secs(1), "{took:?}");
}

#[test]
fn a_recorder_in_a_call_without_media_yet_is_not_taken_for_dead() {
    let start = Instant::now();
    let mut sfu = Sfu::new(start, SFU_ADDR.parse().unwrap()).with_recorder_backlog(Duration::from_secs(30), 1 << 20);
    let addr: SocketAddr = "10.0.0.7:7000".parse().unwrap();
    let (mut rtc, sdp, pending, mid) = offer_dir(start, addr, Direction::RecvOnly);
    let (id, answer) = sfu.join_fixed(start, "call", Role::Recorder, &sdp).unwrap();
    rtc.sdp_api().accept_answer(pending, SdpAnswer::from_sdp_string(&answer).unwrap()).unwrap();
    let mut peers = vec![Peer { addr, rtc, id, mid, connected: false, received: 0 }];
    // 15 s with only ICE between them (no publisher, no RTCP).
    run_until(&mut sfu, &mut peers, start, &[], |_| false);
    assert!(peers[0].connected);
    assert!(!LEFT.with(|l| l.borrow().contains(&id)), "kept alive by its ICE checks alone");
}

#[test]
fn a_backlog_stays_within_the_nodes_memory_budget() {
    // 3-byte frames: a 300-byte budget keeps the newest 100 of them, still without a hole.
    let (mut sfu, peers, _) = recorder_replaced(300);
    let backlog = sfu.take_backlog(peers[1].id, "call").unwrap().frames;
    assert!((90..=100).contains(&backlog.len()), "{} frames", backlog.len());
    assert_eq!(sfu.backlog_bytes(), backlog.len() * 3, "what the metric shows");
    assert!(backlog.windows(2).all(|w| w[1].rtp_time == w[0].rtp_time + 480));
}

#[test]
fn hostile_sdp_and_unknown_participants_are_refused_without_harm() {
    let now = Instant::now();
    let mut sfu = Sfu::new(now, SFU_ADDR.parse().unwrap());
    for bad in ["", "v=0", "not sdp at all \u{0}\u{1}", &"a=x\r\n".repeat(10_000)] {
        assert!(matches!(sfu.join(now, "r", Role::Customer, bad), Err(SfuError::Sdp(_))));
    }
    assert!(matches!(sfu.answer(ParticipantId(99), "v=0"), Err(SfuError::UnknownParticipant(99))));
    assert!(!sfu.receive(now, "10.9.9.9:1".parse().unwrap(), SFU_ADDR.parse().unwrap(), &[0x16, 0xfe, 0xfd, 0, 0]));
    assert!(!sfu.receive(now, "10.9.9.9:1".parse().unwrap(), SFU_ADDR.parse().unwrap(), &[]));
    assert_eq!(sfu.participant_count(), 0);
}

#[test]
fn a_room_holds_a_bounded_number_of_participants() {
    let now = Instant::now();
    let mut sfu = Sfu::new(now, SFU_ADDR.parse().unwrap());
    for i in 0..MAX_PER_ROOM {
        let (_, sdp, _, _) = offer(now, format!("10.0.1.{}:7000", i + 1).parse().unwrap());
        sfu.join(now, "full", Role::Customer, &sdp).unwrap();
    }
    let (_, sdp, _, _) = offer(now, "10.0.2.1:7000".parse().unwrap());
    assert!(matches!(sfu.join(now, "full", Role::Customer, &sdp), Err(SfuError::RoomFull(_, n)) if n == MAX_PER_ROOM));
    // Other rooms are not affected.
    assert!(sfu.join(now, "other", Role::Customer, &sdp).is_ok());
}

#[test]
fn roles() {
    assert_eq!(Role::from_name("teller"), Some(Role::Teller));
    assert_eq!(Role::from_name("admin"), None);
    for r in [Role::Customer, Role::Teller, Role::Specialist, Role::Recorder, Role::Observer] {
        assert_eq!(Role::from_name(r.name()), Some(r), "name and from_name agree");
    }
    assert!(!Role::Recorder.publishes() && Role::Recorder.subscribes());
    assert!(Role::Customer.publishes());
}

#[test]
fn an_ice_restart_from_a_new_address_keeps_the_session_and_its_media() {
    let start = Instant::now();
    let mut sfu = Sfu::new(start, SFU_ADDR.parse().unwrap());
    let mut peers = vec![
        join(&mut sfu, start, "10.0.0.2:7000", Role::Customer),
        join(&mut sfu, start, "10.0.0.3:7000", Role::Teller),
    ];
    let now = run_until(&mut sfu, &mut peers, start, &[0, 1], |p| p.iter().all(|p| p.received >= 20));
    assert!(peers.iter().all(|p| p.received >= 20), "media before the restart");

    // The customer's phone moves from Wi-Fi to 4G: a new address, new ICE credentials, the same session.
    let moved: SocketAddr = "10.9.9.9:4000".parse().unwrap();
    let p = &mut peers[0];
    let mut api = p.rtc.sdp_api();
    api.ice_restart(false);
    let (offer, pending) = api.apply().unwrap();
    let answer = sfu.restart(now, p.id, &offer.to_sdp_string()).unwrap();
    // str0m replaces its local candidates when the restart completes, so the new address is added after.
    p.rtc.sdp_api().accept_answer(pending, SdpAnswer::from_sdp_string(&answer).unwrap()).unwrap();
    p.rtc.add_local_candidate(Candidate::host(moved, "udp").unwrap());
    p.addr = moved;
    let before = (peers[0].received, peers[1].received);

    run_until(&mut sfu, &mut peers, now, &[0, 1], |p| p[0].received >= before.0 + 20 && p[1].received >= before.1 + 20);
    assert!(peers[0].received >= before.0 + 20, "the customer receives again at its new address");
    assert!(peers[1].received >= before.1 + 20, "the teller receives the customer's media again");
    assert_eq!(sfu.participant_count(), 2, "nobody left: the session survived the restart");

    let err = sfu.restart(now, ParticipantId(999), &offer.to_sdp_string()).unwrap_err();
    assert!(matches!(err, SfuError::UnknownParticipant(999)));
}

#[test]
fn a_flood_of_joins_stops_at_the_node_limit_with_a_routable_error() {
    let now = Instant::now();
    let mut sfu = Sfu::new(now, SFU_ADDR.parse().unwrap()).with_max_participants(5);
    for i in 0..5 {
        let (_, sdp, _, _) = offer(now, format!("10.0.3.{}:7000", i + 1).parse().unwrap());
        sfu.join(now, &format!("call-{i}"), Role::Customer, &sdp).unwrap();
    }
    let (_, sdp, _, _) = offer(now, "10.0.4.1:7000".parse().unwrap());
    let err = sfu.join(now, "call-new", Role::Customer, &sdp).unwrap_err();
    assert!(matches!(err, SfuError::NodeFull(5)), "{err}");
    assert!(err.to_string().contains("max_participants"), "the error names the setting: {err}");
    assert_eq!(sfu.participant_count(), 5, "the refused join left nothing behind");
}
