//! The load generator: str0m peers in RTP mode (no encoding, no depacketizing) on one thread, epoll over their UDP
//! sockets. Publishers send synthetic VP8 (30 frames/s, a keyframe every second and on request) and Opus (50
//! packets/s); subscribers time what comes back. Every audio packet and every video frame's first packet carries its
//! leg and sequence number in the payload, so loss and latency are exact whatever an SFU does to RTP headers,
//! sequence numbers or packet boundaries.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::ops::Range;
use std::os::fd::AsFd;
use std::sync::mpsc::{Receiver, TryRecvError};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use str0m::change::{SdpOffer, SdpPendingOffer};
use str0m::format::Codec;
use str0m::media::{Direction, MediaKind, Mid, Pt};
use str0m::net::{Protocol, Receive};
use str0m::rtp::RtpWrite;
use str0m::{Candidate, Event, Input, Output, Rtc};

use super::payload::{read_tag, tagged, vp8_first_header, vp8_keyframe, vp8_tag};

/// Video frames per second.
const FPS: u32 = 30;
/// A keyframe every this many frames (2 s), besides those asked for.
const KEYFRAME_EVERY: u32 = 2 * FPS;
/// RTP packets in a delta frame, and in a keyframe.
const DELTA_PACKETS: usize = 3;
const KEY_PACKETS: usize = 8;
/// RTP payload bytes of a video packet and of an audio packet.
const VIDEO_PAYLOAD: usize = 1000;
const AUDIO_PAYLOAD: usize = 80;

/// What a packet carries: audio, or the first packet of a video frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    Audio,
    Video,
}

/// A new str0m peer in RTP mode that speaks only VP8 and Opus, with a host candidate on a fresh socket on `ip`.
pub fn peer(ip: IpAddr) -> Result<(Rtc, UdpSocket)> {
    let sock = UdpSocket::bind((ip, 0))?;
    sock.set_nonblocking(true)?;
    let _ = nix::sys::socket::setsockopt(&sock, nix::sys::socket::sockopt::RcvBuf, &(4 << 20));
    let mut rtc = Rtc::builder()
        .set_rtp_mode(true)
        .clear_codecs()
        .enable_vp8(true)
        .enable_opus(true, false)
        .set_stats_interval(None)
        .build(Instant::now());
    rtc.add_local_candidate(Candidate::host(sock.local_addr()?, "udp")?);
    Ok((rtc, sock))
}

/// Add one audio and one video m-line in `dir` and make the offer. Returns (audio mid, video mid, offer, pending).
pub fn offer(rtc: &mut Rtc, dir: Direction) -> Result<(Mid, Mid, SdpOffer, SdpPendingOffer)> {
    let mut api = rtc.sdp_api();
    let audio = api.add_media(MediaKind::Audio, dir, Some("bench".into()), None, None);
    let video = api.add_media(MediaKind::Video, dir, Some("bench".into()), None, None);
    let (offer, pending) = api.apply().context("no offer")?;
    Ok((audio, video, offer, pending))
}

/// One peer of the load: a publisher of leg `leg`, or a subscriber that should receive leg `leg`.
pub struct Peer {
    rtc: Rtc,
    sock: UdpSocket,
    local: SocketAddr,
    leg: u32,
    publish: Option<Publish>,
    connected: bool,
    timeout: Instant,
    kinds: HashMap<Pt, Kind>,
    received: u64,
    arrivals: Arrivals,
    /// Its server is gone: no longer driven, what arrives on its socket is dropped.
    retired: bool,
}

/// When a subscriber's media arrived (receive times).
#[derive(Debug, Clone, Copy, Default)]
pub struct Arrivals {
    /// The first audio packet.
    pub first_audio: Option<Instant>,
    /// The first video keyframe: the first picture a player could show.
    pub first_keyframe: Option<Instant>,
    /// The last audio packet.
    pub last_audio: Option<Instant>,
    /// The last video packet.
    pub last_video: Option<Instant>,
}

impl Arrivals {
    /// The last media packet of either kind.
    pub fn last(&self) -> Option<Instant> {
        self.last_audio.max(self.last_video)
    }

    /// When both audio and a picture had arrived.
    pub fn flowing(&self) -> Option<Instant> {
        Some(self.first_audio?.max(self.first_keyframe?))
    }
}

struct Publish {
    audio: Mid,
    video: Mid,
    next_audio: Instant,
    next_video: Instant,
    audio_seq: u64,
    video_seq: u64,
    audio_n: u32,
    frame_n: u32,
    /// Frames until this leg's first scheduled keyframe, so legs do not all send keyframes at once.
    key_phase: u32,
    keyframe_due: bool,
    /// RTP time 0: media clocks run on while a leg is paused, as a muted sender's do.
    epoch: Instant,
}

/// The RTP timestamp at `at` of a `hz` clock started at `epoch`.
fn rtp_time(epoch: Instant, at: Instant, hz: u64) -> u32 {
    (at.saturating_duration_since(epoch).as_micros() as u64 * hz / 1_000_000) as u32
}

impl Peer {
    /// A publisher of `leg`, sending on `audio` and `video` once connected.
    pub fn publisher(rtc: Rtc, sock: UdpSocket, leg: u32, audio: Mid, video: Mid) -> Peer {
        let now = Instant::now();
        let publish = Publish {
            audio,
            video,
            next_audio: now,
            next_video: now,
            audio_seq: 1,
            video_seq: 1,
            audio_n: 0,
            frame_n: 0,
            key_phase: 0,
            keyframe_due: true,
            epoch: now,
        };
        Peer::new(rtc, sock, leg, Some(publish))
    }

    /// A subscriber expecting `leg`'s media.
    pub fn subscriber(rtc: Rtc, sock: UdpSocket, leg: u32) -> Peer {
        Peer::new(rtc, sock, leg, None)
    }

    fn new(rtc: Rtc, sock: UdpSocket, leg: u32, publish: Option<Publish>) -> Peer {
        let local = sock.local_addr().expect("a bound socket has an address");
        Peer {
            rtc,
            sock,
            local,
            leg,
            publish,
            connected: false,
            timeout: Instant::now(),
            kinds: HashMap::new(),
            received: 0,
            arrivals: Arrivals::default(),
            retired: false,
        }
    }

    fn kind_of(&mut self, pt: Pt) -> Option<Kind> {
        if let Some(k) = self.kinds.get(&pt) {
            return Some(*k);
        }
        let codec = self.rtc.codec_config().params().iter().find(|p| p.pt() == pt)?.spec().codec;
        let kind = match codec {
            Codec::Opus => Kind::Audio,
            Codec::Vp8 => Kind::Video,
            _ => return None,
        };
        self.kinds.insert(pt, kind);
        Some(kind)
    }
}

/// The negotiated payload type of `mid` for `codec`.
fn pt_for(rtc: &Rtc, mid: Mid, codec: Codec) -> Option<Pt> {
    let remote = rtc.media(mid)?.remote_pts();
    rtc.codec_config().params().iter().find(|p| p.spec().codec == codec && remote.contains(&p.pt())).map(|p| p.pt())
}

/// What was sent and what came back: per (leg, kind), the send time of each numbered unit and whether it arrived.
#[derive(Default)]
struct Ledger {
    sent: HashMap<(u32, Kind), Vec<(Instant, bool)>>,
}

/// What the subscribers saw during one measured window.
#[derive(Debug, Default, Clone)]
pub struct Window {
    /// RTP packets the subscribers received (everything the SFU forwarded).
    pub packets: u64,
    /// Latency of each numbered unit, publisher write → subscriber receipt, in microseconds.
    pub latencies_us: Vec<f64>,
}

/// All peers of a run on one thread.
pub struct Generator {
    peers: Vec<Peer>,
    /// Peers still being negotiated arrive here; `None` once the signalling side is done.
    incoming: Option<Receiver<Peer>>,
    epoll: Epoll,
    ledger: Ledger,
    /// Publishers of these legs send; subscribers of these legs count in windows.
    live: Range<u32>,
    /// Units sent before this instant are not counted for loss (set when measuring starts).
    count_from: Instant,
}

impl Generator {
    /// Take peers from `incoming` as the signalling side negotiates them, until it hangs up.
    pub fn new(incoming: Receiver<Peer>) -> Result<Generator> {
        let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?;
        Ok(Generator {
            peers: Vec::new(),
            incoming: Some(incoming),
            epoll,
            ledger: Ledger::default(),
            live: 0..u32::MAX,
            count_from: Instant::now(),
        })
    }

    /// Adopt newly negotiated peers; whether any arrived.
    fn adopt(&mut self) -> Result<bool> {
        let mut any = false;
        while let Some(rx) = &self.incoming {
            match rx.try_recv() {
                Ok(p) => {
                    self.epoll.add(p.sock.as_fd(), EpollEvent::new(EpollFlags::EPOLLIN, self.peers.len() as u64))?;
                    self.peers.push(p);
                    any = true;
                }
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => self.incoming = None,
            }
        }
        Ok(any)
    }

    /// Run until signalling is done, every peer is connected and every subscriber has received both audio and a video
    /// frame of its leg; give up `within` after signalling is done.
    pub fn connect(&mut self, within: Duration) -> Result<()> {
        let mut deadline = Instant::now() + within;
        let mut window = Window::default();
        loop {
            self.run_until(Instant::now() + Duration::from_millis(100), &mut window)?;
            if self.incoming.is_some() {
                deadline = Instant::now() + within;
                continue;
            }
            let waiting: Vec<String> = self
                .peers
                .iter()
                .filter_map(|p| {
                    let what = if p.publish.is_some() { "publisher" } else { "subscriber" };
                    if !p.connected {
                        return Some(format!("{what} of leg {} (not connected)", p.leg));
                    }
                    let arrived = |k: Kind| self.ledger.sent.get(&(p.leg, k)).is_some_and(|v| v.iter().any(|u| u.1));
                    let missing: Vec<&str> = [(Kind::Audio, "audio"), (Kind::Video, "video")]
                        .into_iter()
                        .filter(|(k, _)| p.publish.is_none() && !arrived(*k))
                        .map(|(_, n)| n)
                        .collect();
                    (!missing.is_empty()).then(|| {
                        format!("{what} of leg {} (no {} yet, {} RTP packets)", p.leg, missing.join(" or "), p.received)
                    })
                })
                .collect();
            if waiting.is_empty() {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("after {within:?} {} peers are still waiting, e.g. {}", waiting.len(), waiting[0]);
            }
        }
    }

    /// From now on, count loss only for what is sent from here.
    pub fn start_counting(&mut self) {
        self.count_from = Instant::now();
    }

    /// From now on only `legs` publish and count (the others pause); an empty range stops all publishing.
    pub fn only(&mut self, legs: Range<u32>) {
        self.live = legs;
    }

    /// Units of `legs` sent since counting started, and how many of them never arrived.
    pub fn loss(&self, legs: Range<u32>) -> (u64, u64) {
        let mut sent = 0;
        let mut lost = 0;
        for (_, units) in self.ledger.sent.iter().filter(|((leg, _), _)| legs.contains(leg)) {
            for (_, got) in units.iter().filter(|(at, _)| *at >= self.count_from) {
                sent += 1;
                lost += u64::from(!got);
            }
        }
        (sent, lost)
    }

    /// When the subscriber of `leg` received its media.
    pub fn arrivals(&self, leg: u32) -> Option<Arrivals> {
        self.peers.iter().find(|p| p.leg == leg && p.publish.is_none() && !p.retired).map(|p| p.arrivals)
    }

    /// Stop driving the peers of `leg` (their server is gone; the caller rejoins as another leg).
    pub fn retire(&mut self, leg: u32) {
        for p in self.peers.iter_mut().filter(|p| p.leg == leg) {
            p.retired = true;
        }
    }

    /// Drive every peer until `end`, adding what subscribers receive to `window`.
    pub fn run_until(&mut self, end: Instant, window: &mut Window) -> Result<()> {
        let mut events = vec![EpollEvent::empty(); 256];
        let mut buf = vec![0u8; 2048];
        let mut dirty: Vec<bool> = vec![true; self.peers.len()];
        loop {
            let now = Instant::now();
            if now >= end {
                return Ok(());
            }
            if self.adopt()? {
                dirty.resize(self.peers.len(), true);
            }
            // Each peer's due work goes out at once, stamped with its own time, so the ledger's send times are when
            // packets really left, however many peers this round visits.
            for (i, p) in self.peers.iter_mut().enumerate().filter(|(_, p)| !p.retired) {
                let now = Instant::now();
                if now >= p.timeout {
                    p.rtc.handle_input(Input::Timeout(now))?;
                    dirty[i] = true;
                }
                let live = self.live.contains(&p.leg);
                if live && p.connected && p.publish.is_some() {
                    dirty[i] |= send_due(p, now, &mut self.ledger)?;
                }
                if std::mem::take(&mut dirty[i]) {
                    drain(p, &mut self.ledger, live.then_some(&mut *window))?;
                }
            }
            let mut next = end;
            for p in self.peers.iter().filter(|p| !p.retired) {
                next = next.min(p.timeout);
                if let Some(pb) = p.publish.as_ref().filter(|_| self.live.contains(&p.leg) && p.connected) {
                    next = next.min(pb.next_audio).min(pb.next_video);
                }
            }
            if self.incoming.is_some() {
                next = next.min(Instant::now() + Duration::from_millis(5));
            }
            let wait = next.saturating_duration_since(Instant::now());
            // epoll counts in whole milliseconds: round up, so an early wake-up never spins.
            let ms = u16::try_from(wait.as_micros().div_ceil(1000)).unwrap_or(u16::MAX);
            let n = self.epoll.wait(&mut events, EpollTimeout::from(ms))?;
            for ev in &events[..n] {
                let i = ev.data() as usize;
                let p = &mut self.peers[i];
                loop {
                    match p.sock.recv_from(&mut buf) {
                        Ok(_) if p.retired => {}
                        Ok((len, source)) => {
                            let contents = buf[..len].try_into().context("not a packet str0m can take")?;
                            let input = Input::Receive(
                                Instant::now(),
                                Receive { proto: Protocol::Udp, source, destination: p.local, contents },
                            );
                            if p.rtc.accepts(&input) {
                                p.rtc.handle_input(input)?;
                                // In RTP mode str0m holds one received packet until the next poll: drain each.
                                let counted = self.live.contains(&p.leg);
                                drain(p, &mut self.ledger, counted.then_some(&mut *window))?;
                            }
                        }
                        Err(e) if transient(&e) || p.retired => break,
                        Err(e) => return Err(e.into()),
                    }
                }
            }
        }
    }
}

/// Write what is due of `p`'s audio and video; whether anything was written.
fn send_due(p: &mut Peer, now: Instant, ledger: &mut Ledger) -> Result<bool> {
    let Some(pb) = p.publish.as_mut() else { return Ok(false) };
    // A leg that was paused resumes from now, not with a burst of everything it missed.
    for next in [&mut pb.next_audio, &mut pb.next_video] {
        if now.saturating_duration_since(*next) > Duration::from_millis(100) {
            *next = now;
        }
    }
    let mut wrote = false;
    while pb.next_audio <= now {
        let pt = pt_for(&p.rtc, pb.audio, Codec::Opus).context("no Opus payload type was negotiated")?;
        let units = ledger.sent.entry((p.leg, Kind::Audio)).or_default();
        let payload = tagged(&[0xF8], p.leg, pb.audio_n, AUDIO_PAYLOAD);
        let mut api = p.rtc.direct_api();
        let tx = api.stream_tx_by_mid(pb.audio, None).context("the audio m-line has no send stream")?;
        let ts = rtp_time(pb.epoch, pb.next_audio, 48_000);
        tx.write_rtp(RtpWrite::new(pt, pb.audio_seq.into(), ts, now, payload).marker(true));
        units.push((now, false));
        pb.audio_seq += 1;
        pb.audio_n += 1;
        pb.next_audio += Duration::from_millis(20);
        wrote = true;
    }
    while pb.next_video <= now {
        let pt = pt_for(&p.rtc, pb.video, Codec::Vp8).context("no VP8 payload type was negotiated")?;
        let key = pb.keyframe_due || (pb.frame_n + pb.key_phase) % KEYFRAME_EVERY == 0;
        pb.keyframe_due = false;
        let count = if key { KEY_PACKETS } else { DELTA_PACKETS };
        let ts = rtp_time(pb.epoch, pb.next_video, 90_000);
        let mut api = p.rtc.direct_api();
        let tx = api.stream_tx_by_mid(pb.video, None).context("the video m-line has no send stream")?;
        for i in 0..count {
            let payload = if i == 0 {
                tagged(&vp8_first_header(key), p.leg, pb.frame_n, VIDEO_PAYLOAD)
            } else {
                let mut v = vec![0u8; VIDEO_PAYLOAD];
                v[0] = 0x00; // VP8 payload descriptor: not the start of a partition
                v
            };
            let w = RtpWrite::new(pt, pb.video_seq.into(), ts, now, payload).marker(i + 1 == count).nackable(true);
            tx.write_rtp(w);
            pb.video_seq += 1;
        }
        ledger.sent.entry((p.leg, Kind::Video)).or_default().push((now, false));
        pb.frame_n += 1;
        pb.next_video += Duration::from_micros(1_000_000 / u64::from(FPS));
        wrote = true;
    }
    Ok(wrote)
}

/// Send what str0m wants sent, note what arrived (in `window` if given), until it asks for a timeout.
fn drain(p: &mut Peer, ledger: &mut Ledger, mut window: Option<&mut Window>) -> Result<()> {
    loop {
        match p.rtc.poll_output()? {
            Output::Transmit(t) => match p.sock.send_to(&t.contents, t.destination) {
                Ok(_) => {}
                Err(e) if transient(&e) => {}
                Err(e) => return Err(e.into()),
            },
            Output::Timeout(t) => {
                p.timeout = t;
                return Ok(());
            }
            Output::Event(Event::Connected) => {
                p.connected = true;
                // Real callers are not in step: spread each leg's audio and video phase and its keyframes.
                let leg = u64::from(p.leg);
                if let Some(pb) = p.publish.as_mut() {
                    let now = Instant::now();
                    pb.next_audio = now + Duration::from_millis(leg * 7 % 20);
                    pb.next_video = now + Duration::from_millis(leg * 13 % 33);
                    pb.key_phase = p.leg.wrapping_mul(11) % KEYFRAME_EVERY;
                }
            }
            Output::Event(Event::KeyframeRequest(_)) => {
                if let Some(pb) = p.publish.as_mut() {
                    pb.keyframe_due = true;
                }
            }
            Output::Event(Event::RtpPacket(pkt)) => {
                if let Some(w) = window.as_deref_mut() {
                    w.packets += 1;
                }
                p.received += 1;
                let Some(kind) = p.kind_of(pkt.header.payload_type) else { continue };
                let a = &mut p.arrivals;
                match kind {
                    Kind::Audio => {
                        a.first_audio.get_or_insert(pkt.timestamp);
                        a.last_audio = Some(pkt.timestamp);
                    }
                    Kind::Video => {
                        if a.first_keyframe.is_none() && vp8_keyframe(&pkt.payload) {
                            a.first_keyframe = Some(pkt.timestamp);
                        }
                        a.last_video = Some(pkt.timestamp);
                    }
                }
                let tag = match kind {
                    Kind::Audio => read_tag(pkt.payload.get(1..)),
                    Kind::Video => vp8_tag(&pkt.payload),
                };
                let Some((leg, n)) = tag else { continue };
                if let Some(unit) = ledger.sent.get_mut(&(leg, kind)).and_then(|v| v.get_mut(n as usize))
                    && !unit.1
                {
                    unit.1 = true;
                    if let Some(w) = window.as_deref_mut() {
                        w.latencies_us.push(pkt.timestamp.saturating_duration_since(unit.0).as_secs_f64() * 1e6);
                    }
                }
            }
            Output::Event(_) => {}
        }
    }
}

/// A socket error that loses a datagram but not the peer: nothing to read, or the far end is (for now) unreachable.
fn transient(e: &std::io::Error) -> bool {
    use std::io::ErrorKind as K;
    matches!(e.kind(), K::WouldBlock | K::HostUnreachable | K::NetworkUnreachable | K::ConnectionRefused)
}

#[cfg(test)]
mod direct {
    use super::*;

    /// Publisher and subscriber straight to each other, no SFU: every unit sent must arrive.
    #[test]
    fn the_generator_delivers_everything_peer_to_peer() {
        let ip: IpAddr = std::net::Ipv4Addr::LOCALHOST.into();
        let (mut a, a_sock) = peer(ip).unwrap();
        let (mut b, b_sock) = peer(ip).unwrap();
        let (audio, video, sdp, pending) = offer(&mut a, Direction::SendOnly).unwrap();
        let answer = b.sdp_api().accept_offer(sdp).unwrap();
        a.sdp_api().accept_answer(pending, answer).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        tx.send(Peer::publisher(a, a_sock, 0, audio, video)).unwrap();
        tx.send(Peer::subscriber(b, b_sock, 0)).unwrap();
        drop(tx);
        let mut g = Generator::new(rx).unwrap();
        g.connect(Duration::from_secs(10)).unwrap();
        g.start_counting();
        let mut w = Window::default();
        g.run_until(Instant::now() + Duration::from_secs(2), &mut w).unwrap();
        g.only(0..0);
        g.run_until(Instant::now() + Duration::from_millis(300), &mut w).unwrap();
        let (sent, lost) = g.loss(0..1);
        assert!(sent > 150, "{sent}");
        assert_eq!(lost, 0, "of {sent}");
    }
}
