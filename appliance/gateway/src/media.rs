//! The media loop: one thread owns the UDP socket and the sans-IO [`Sfu`], as str0m's design wants (mutate, then
//! drain to a timeout). Signalling tasks talk to it through a channel; it answers joins and pushes renegotiation
//! offers and departures back to each participant's signalling task.

use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsFd;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::sync::{mpsc as tmpsc, oneshot};
use vbank_gateway_core::backlog::WireFrame;
use vbank_gateway_core::{BackFrame, Counters, Output, ParticipantId, Role, Sfu, SfuError, Summary, Taken};

use crate::ice_tcp::{self, TcpEvent};

/// The media path's metrics (registered on the gateway's /metrics).
#[derive(Clone, Default)]
pub struct MediaMetrics {
    participants: Gauge,
    rooms: Gauge,
    datagrams_in: Counter,
    bytes_in: Counter,
    datagrams_out: Counter,
    bytes_out: Counter,
    unclaimed: Counter,
    frames_forwarded: Counter,
    worst_rtt_ms: Gauge,
    worst_loss_permille: Gauge,
    nacks: Gauge,
    keyframe_requests: Gauge,
    tcp_connections: Gauge,
    worst_jitter_ms: Gauge,
    recorder_backlog_bytes: Gauge,
    /// Each call's media quality, as last published by the media loop (for the supervisor console).
    quality: std::sync::Arc<std::sync::Mutex<HashMap<String, RoomQuality>>>,
}

/// A call's media quality now: its worst participant on each measure.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct RoomQuality {
    /// Participants with a media session (the recorder left out).
    pub participants: usize,
    /// Worst round-trip time, milliseconds.
    pub rtt_ms: Option<f64>,
    /// Worst packet loss either way, percent.
    pub loss_pct: Option<f64>,
    /// Worst interarrival jitter, milliseconds.
    pub jitter_ms: Option<f64>,
}

/// Each room's quality from the participants' (sans IO: the media loop publishes it once a second).
pub fn room_quality(q: &[(ParticipantId, Summary)]) -> HashMap<String, RoomQuality> {
    let worst = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(x), Some(y)) => Some(x.max(y)),
        (x, y) => x.or(y),
    };
    let mut rooms: HashMap<String, RoomQuality> = HashMap::new();
    for (_, s) in q.iter().filter(|(_, s)| s.role != Role::Recorder) {
        let r = rooms.entry(s.room.clone()).or_default();
        let loss = worst(s.quality.ingress_loss.map(f64::from), s.quality.egress_loss.map(f64::from));
        r.participants += 1;
        r.rtt_ms = worst(r.rtt_ms, s.quality.rtt_ms);
        r.loss_pct = worst(r.loss_pct, loss.map(|l| l * 100.0));
        r.jitter_ms = worst(r.jitter_ms, s.quality.jitter_ms);
    }
    rooms
}

/// This node's media load, for routing new calls to the least-loaded node.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Load {
    /// Calls with at least one participant.
    pub rooms: i64,
    /// Participants with a media session.
    pub participants: i64,
    /// Bytes sent since start.
    pub bytes_out: u64,
}

impl MediaMetrics {
    /// The load as last published by the media loop (at most a second old).
    pub fn load(&self) -> Load {
        Load { rooms: self.rooms.get(), participants: self.participants.get(), bytes_out: self.bytes_out.get() }
    }

    /// Register under `vbank_media_*`.
    pub fn register(&self, r: &mut Registry) {
        r.register("media_participants", "Participants with a media session", self.participants.clone());
        r.register("media_rooms", "Calls with at least one participant", self.rooms.clone());
        r.register(
            "media_recorder_backlog_bytes",
            "Media kept for recorders that continue a call after a crash, bytes",
            self.recorder_backlog_bytes.clone(),
        );
        r.register(
            "media_datagrams_in",
            "Packets (UDP datagrams or ICE-TCP frames) received and claimed by a participant",
            self.datagrams_in.clone(),
        );
        r.register("media_bytes_in", "Bytes of those datagrams", self.bytes_in.clone());
        r.register("media_datagrams_out", "Packets sent (UDP datagrams or ICE-TCP frames)", self.datagrams_out.clone());
        r.register("media_tcp_connections", "Open ICE-TCP connections", self.tcp_connections.clone());
        r.register("media_bytes_out", "Bytes sent", self.bytes_out.clone());
        r.register(
            "media_unclaimed_datagrams",
            "Datagrams no participant claimed (stray, stale or hostile)",
            self.unclaimed.clone(),
        );
        r.register("media_frames_forwarded", "Media frames forwarded to subscribers", self.frames_forwarded.clone());
        r.register(
            "media_worst_rtt_ms",
            "Highest round-trip time among current participants, ms",
            self.worst_rtt_ms.clone(),
        );
        r.register(
            "media_worst_loss_permille",
            "Highest packet loss (either way) among current participants, per mille",
            self.worst_loss_permille.clone(),
        );
        r.register(
            "media_worst_jitter_ms",
            "Highest incoming interarrival jitter among current participants, ms",
            self.worst_jitter_ms.clone(),
        );
        r.register("media_nacks", "NACKs exchanged with current participants (both ways)", self.nacks.clone());
        r.register(
            "media_keyframe_requests",
            "Keyframe requests (PLI, FIR) exchanged with current participants (both ways)",
            self.keyframe_requests.clone(),
        );
    }

    fn update(&self, sfu: &Sfu, last: &mut Counters) {
        let c = sfu.counters();
        self.participants.set(sfu.participant_count() as i64);
        self.rooms.set(sfu.room_count() as i64);
        self.recorder_backlog_bytes.set(sfu.backlog_bytes() as i64);
        self.datagrams_in.inc_by(c.datagrams_in - last.datagrams_in);
        self.bytes_in.inc_by(c.bytes_in - last.bytes_in);
        self.datagrams_out.inc_by(c.datagrams_out - last.datagrams_out);
        self.bytes_out.inc_by(c.bytes_out - last.bytes_out);
        self.unclaimed.inc_by(c.unclaimed - last.unclaimed);
        self.frames_forwarded.inc_by(c.frames_forwarded - last.frames_forwarded);
        *last = c;
        let q = sfu.quality();
        let worst =
            |f: &dyn Fn(&vbank_gateway_core::Quality) -> f64| q.iter().map(|(_, s)| f(&s.quality)).fold(0.0, f64::max);
        self.worst_rtt_ms.set(worst(&|q| q.rtt_ms.unwrap_or(0.0)) as i64);
        self.worst_jitter_ms.set(worst(&|q| q.jitter_ms.unwrap_or(0.0)) as i64);
        let loss = |q: &vbank_gateway_core::Quality| {
            f64::from(q.ingress_loss.unwrap_or(0.0).max(q.egress_loss.unwrap_or(0.0)))
        };
        self.worst_loss_permille.set((worst(&loss) * 1000.0) as i64);
        self.nacks.set(q.iter().map(|(_, s)| s.quality.nacks_sent + s.quality.nacks_received).sum::<u64>() as i64);
        self.keyframe_requests.set(
            q.iter().map(|(_, s)| s.quality.keyframe_requests_sent + s.quality.keyframe_requests_received).sum::<u64>()
                as i64,
        );
        *self.quality.lock().unwrap_or_else(|p| p.into_inner()) = room_quality(&q);
    }
}

/// What the media loop tells a participant's signalling task.
#[derive(Debug)]
pub enum ToPeer {
    /// A renegotiation offer (SDP).
    Offer(String),
    /// An end-to-end encrypted call's new epoch key, encrypted to this page (the signalling message, JSON).
    MediaKey(String),
    /// The media session ended.
    Left,
}

/// Requests from signalling.
pub enum Command {
    /// Join a room with an SDP offer; the answer (or why not) comes back on `reply`.
    Join {
        /// Room (call id).
        room: String,
        /// Role.
        role: Role,
        /// The browser's SDP offer.
        offer: String,
        /// Where to send offers and the departure.
        events: tmpsc::UnboundedSender<ToPeer>,
        /// The result.
        reply: oneshot::Sender<Result<(ParticipantId, String), SfuError>>,
        /// WHIP/WHEP: no renegotiation; receiving m-lines are bound to the room's tracks.
        fixed: bool,
    },
    /// An answer to our renegotiation offer.
    Answer(ParticipantId, String),
    /// An ICE restart offer; our answer (or why not) comes back on the sender.
    Restart(ParticipantId, String, oneshot::Sender<Result<String, String>>),
    /// Signalling closed.
    Leave(ParticipantId),
    /// A recorder continuing a call takes the call's backlog (frames stamped with Unix time); its live media flows
    /// from the next frame on.
    Backlog(ParticipantId, String, oneshot::Sender<Result<Taken, SfuError>>),
}

/// A handle to the media loop.
#[derive(Clone)]
pub struct Media {
    tx: mpsc::Sender<Command>,
    quality: std::sync::Arc<std::sync::Mutex<HashMap<String, RoomQuality>>>,
}

impl Media {
    /// The call in `room`'s media quality (at most a second old), if it has participants.
    pub fn room_quality(&self, room: &str) -> Option<RoomQuality> {
        self.quality.lock().unwrap_or_else(|p| p.into_inner()).get(room).cloned()
    }

    /// Send a request; false when the loop has stopped.
    pub fn send(&self, c: Command) -> bool {
        self.tx.send(c).is_ok()
    }
}

/// Stamp backlog frames with Unix time, from how long ago the SFU received each (off the media thread: it copies).
pub fn stamped(frames: Vec<BackFrame>) -> Vec<WireFrame> {
    let (now, wall) = (Instant::now(), std::time::SystemTime::now());
    let wall_us = wall.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_micros() as u64);
    frames
        .into_iter()
        .map(|f| WireFrame {
            label: f.label(),
            at_us: wall_us.saturating_sub(now.saturating_duration_since(f.at).as_micros() as u64),
            codec: f.codec(),
            pt: f.pt,
            rtp_time: f.rtp_time,
            data: f.data.to_vec(),
        })
        .collect()
}

/// Datagrams taken in one go before commands and ICE-TCP get their turn.
const MAX_BATCH: usize = 64;
/// Longest the loop blocks on the UDP socket before looking at commands again.
const MAX_WAIT: Duration = Duration::from_millis(10);
/// The same while ICE-TCP connections are open: their frames arrive on a channel, not the socket, so the loop
/// looks more often to keep their added latency small.
const MAX_WAIT_TCP: Duration = Duration::from_millis(2);

/// Where and how much media this node carries (from `[gateway]`).
#[derive(Debug, Clone, Copy)]
pub struct MediaOptions {
    /// The UDP socket (and the ICE-TCP listener's address).
    pub listen: SocketAddr,
    /// The UDP host candidate browsers send to.
    pub advertise: SocketAddr,
    /// The passive ICE-TCP candidate, if offered.
    pub tcp_advertise: Option<SocketAddr>,
    /// Joins beyond this many participants are refused.
    pub max_participants: usize,
    /// How much of each recorded call's media to keep for a recorder that continues it (zero: none).
    pub recorder_backlog: Duration,
    /// The most memory all those backlogs may take, in bytes.
    pub recorder_backlog_budget: usize,
}

impl MediaOptions {
    /// UDP only at `listen`, advertised as `advertise`, without a participant limit (tests).
    pub fn udp(listen: SocketAddr, advertise: SocketAddr) -> Self {
        MediaOptions {
            listen,
            advertise,
            tcp_advertise: None,
            max_participants: usize::MAX,
            recorder_backlog: Duration::ZERO,
            recorder_backlog_budget: 0,
        }
    }
}

/// What the media loop tells the rest of the gateway about calls.
#[derive(Debug)]
pub enum CallEvent {
    /// A participant's media session ended, with its quality summary.
    Left(ParticipantId, Summary),
    /// A recorder's m-line `mid` in `room` now carries the `kind` track of a participant with `role`.
    Bound {
        /// The call.
        room: String,
        /// The recorder's m-line.
        mid: String,
        /// The sender's role.
        role: vbank_gateway_core::Role,
        /// Audio or video.
        kind: vbank_gateway_core::MediaKind,
    },
}

/// Bind the media socket, and the ICE-TCP listener on the same address when `tcp_advertise` is set, and start the
/// loop. Each departing participant's quality summary, and each track bound to a recorder, goes to `summaries`.
pub fn start(
    opts: MediaOptions,
    metrics: MediaMetrics,
    summaries: tmpsc::UnboundedSender<CallEvent>,
) -> std::io::Result<Media> {
    let MediaOptions { listen, advertise, tcp_advertise, max_participants, recorder_backlog, recorder_backlog_budget } =
        opts;
    let socket = UdpSocket::bind(listen)?;
    let (tcp_tx, tcp_rx) = mpsc::channel();
    if tcp_advertise.is_some() {
        // The UDP socket's own address, so a port 0 listen gets the same port for both.
        ice_tcp::listen(socket.local_addr()?, tcp_tx)?;
    }
    let (tx, rx) = mpsc::channel();
    let mut sfu = Sfu::new(Instant::now(), advertise)
        .with_max_participants(max_participants)
        .with_recorder_backlog(recorder_backlog, recorder_backlog_budget);
    if let Some(tcp) = tcp_advertise {
        sfu = sfu.with_tcp(tcp);
    }
    let io = Io { socket, advertise, tcp_advertise, tcp_rx, tcp: HashMap::new() };
    let quality = metrics.quality.clone();
    std::thread::Builder::new().name("vbank-media".into()).spawn(move || run(sfu, io, rx, metrics, summaries))?;
    Ok(Media { tx, quality })
}

/// The media loop's network edge.
struct Io {
    socket: UdpSocket,
    advertise: SocketAddr,
    tcp_advertise: Option<SocketAddr>,
    tcp_rx: mpsc::Receiver<TcpEvent>,
    /// Open ICE-TCP connections by the browser's address.
    tcp: HashMap<SocketAddr, mpsc::SyncSender<Vec<u8>>>,
}

impl Io {
    fn transmit(&self, t: &vbank_gateway_core::Transmit) {
        if t.proto == vbank_gateway_core::Protocol::Tcp {
            if let Some(conn) = self.tcp.get(&t.destination) {
                let _ = conn.try_send(t.contents.to_vec());
            }
        } else {
            let _ = self.socket.send_to(&t.contents, t.destination);
        }
    }

    fn receive_tcp(&mut self, sfu: &mut Sfu) {
        let Some(local) = self.tcp_advertise else { return };
        while let Ok(event) = self.tcp_rx.try_recv() {
            match event {
                TcpEvent::Connected(peer, conn) => {
                    self.tcp.insert(peer, conn);
                }
                TcpEvent::Frame(peer, frame) => {
                    if !sfu.receive_tcp(Instant::now(), peer, local, &frame) {
                        log::debug!("unclaimed ICE-TCP frame from {peer}");
                    }
                }
                TcpEvent::Closed(peer) => {
                    self.tcp.remove(&peer);
                }
            }
        }
    }
}

/// Hand everything the SFU has to send or say to the network and the signalling tasks; the SFU's next timeout.
fn drain(
    sfu: &mut Sfu,
    io: &Io,
    peers: &mut HashMap<ParticipantId, tmpsc::UnboundedSender<ToPeer>>,
    summaries: &tmpsc::UnboundedSender<CallEvent>,
) -> Instant {
    loop {
        match sfu.poll_output() {
            Output::Transmit(t) => io.transmit(&t),
            Output::Offer(id, sdp) => {
                if let Some(p) = peers.get(&id) {
                    let _ = p.send(ToPeer::Offer(sdp));
                }
            }
            Output::Left(id, summary) => {
                if let Some(p) = peers.remove(&id) {
                    let _ = p.send(ToPeer::Left);
                }
                let _ = summaries.send(CallEvent::Left(id, summary));
            }
            Output::Bound { room, mid, role, kind, .. } => {
                let _ = summaries.send(CallEvent::Bound { room, mid, role, kind });
            }
            Output::Timeout(t) => return t,
        }
    }
}

fn run(
    mut sfu: Sfu,
    mut io: Io,
    rx: mpsc::Receiver<Command>,
    metrics: MediaMetrics,
    summaries: tmpsc::UnboundedSender<CallEvent>,
) {
    let advertise = io.advertise;
    let mut last = Counters::default();
    let mut last_update = Instant::now();
    let mut peers: HashMap<ParticipantId, tmpsc::UnboundedSender<ToPeer>> = HashMap::new();
    let mut buf = vec![0u8; 2000];
    if let Err(e) = io.socket.set_nonblocking(true) {
        log::error!("media socket: {e}");
        return;
    }
    // Bursts (keyframes of many calls at once) must not overflow the kernel's default ~200 KiB buffers; the kernel
    // caps these at net.core.rmem_max / wmem_max.
    let _ = nix::sys::socket::setsockopt(&io.socket, nix::sys::socket::sockopt::RcvBuf, &(4 << 20));
    let _ = nix::sys::socket::setsockopt(&io.socket, nix::sys::socket::sockopt::SndBuf, &(4 << 20));
    loop {
        loop {
            match rx.try_recv() {
                Ok(Command::Join { room, role, offer, events, reply, fixed }) => {
                    let r = if fixed {
                        sfu.join_fixed(Instant::now(), &room, role, &offer)
                    } else {
                        sfu.join(Instant::now(), &room, role, &offer)
                    };
                    if let Ok((id, _)) = &r {
                        peers.insert(*id, events);
                    }
                    let _ = reply.send(r);
                }
                Ok(Command::Answer(id, sdp)) => {
                    if let Err(e) = sfu.answer(id, &sdp) {
                        log::warn!(participant = id.0; "renegotiation answer refused: {e}");
                    }
                }
                Ok(Command::Restart(id, sdp, reply)) => {
                    let _ = reply.send(sfu.restart(Instant::now(), id, &sdp).map_err(|e| e.to_string()));
                }
                Ok(Command::Leave(id)) => sfu.leave(id),
                Ok(Command::Backlog(id, room, reply)) => {
                    let _ = reply.send(sfu.take_backlog(id, &room));
                }
                Err(mpsc::TryRecvError::Empty) => break,
                Err(mpsc::TryRecvError::Disconnected) => return,
            }
        }
        let mut deadline = drain(&mut sfu, &io, &mut peers, &summaries);
        // Take every waiting datagram, each followed by a drain so forwarding adds no batching delay; then wait on
        // the socket (poll(2), no per-packet timeout syscalls) until the next one or the SFU's next timeout.
        let mut received = 0;
        while received < MAX_BATCH {
            match io.socket.recv_from(&mut buf) {
                Ok((n, source)) => {
                    received += 1;
                    // The socket may be bound to a wildcard; ICE knows it by the one address it advertises.
                    if !sfu.receive(Instant::now(), source, advertise, &buf[..n]) {
                        log::debug!("unclaimed datagram from {source}");
                    }
                    deadline = drain(&mut sfu, &io, &mut peers, &summaries);
                }
                Err(_) => break,
            }
        }
        if received == 0 {
            let max = if io.tcp.is_empty() { MAX_WAIT } else { MAX_WAIT_TCP };
            let wait = deadline.saturating_duration_since(Instant::now()).min(max);
            let ms = u16::try_from(wait.as_micros().div_ceil(1000)).unwrap_or(u16::MAX);
            let mut fds = [PollFd::new(io.socket.as_fd(), PollFlags::POLLIN)];
            let _ = poll(&mut fds, PollTimeout::from(ms));
        }
        io.receive_tcp(&mut sfu);
        sfu.timeout(Instant::now());
        if last_update.elapsed() >= Duration::from_secs(1) {
            metrics.update(&sfu, &mut last);
            metrics.tcp_connections.set(io.tcp.len() as i64);
            last_update = Instant::now();
        }
    }
}

#[cfg(test)]
mod tests {
    use vbank_gateway_core::Quality;

    use super::*;

    #[test]
    fn a_rooms_quality_is_its_worst_participant_without_the_recorder() {
        let p = |n: u64, room: &str, role: Role, rtt: f64, loss: f32| {
            let quality = Quality { rtt_ms: Some(rtt), egress_loss: Some(loss), ..Quality::default() };
            (ParticipantId(n), Summary { room: room.into(), role, quality })
        };
        let q = vec![
            p(1, "a", Role::Customer, 80.0, 0.02),
            p(2, "a", Role::Teller, 20.0, 0.0),
            p(3, "a", Role::Recorder, 500.0, 0.5),
            p(4, "b", Role::Teller, 10.0, 0.0),
        ];
        let rooms = room_quality(&q);
        let a = &rooms["a"];
        assert_eq!((a.participants, a.rtt_ms), (2, Some(80.0)));
        assert!((a.loss_pct.unwrap() - 2.0).abs() < 1e-4);
        assert_eq!(a.jitter_ms, None);
        assert_eq!(rooms["b"].participants, 1);
    }
}
