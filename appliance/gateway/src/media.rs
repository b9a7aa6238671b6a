//! The media loop: one thread owns the UDP socket and the sans-IO [`Sfu`], as str0m's design wants (mutate, then
//! drain to a timeout). Signalling tasks talk to it through a channel; it answers joins and pushes renegotiation
//! offers and departures back to each participant's signalling task.

use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::sync::{mpsc as tmpsc, oneshot};
use vbank_gateway_core::{Counters, Output, ParticipantId, Role, Sfu, Summary};

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
            "media_datagrams_in",
            "UDP datagrams received and claimed by a participant",
            self.datagrams_in.clone(),
        );
        r.register("media_bytes_in", "Bytes of those datagrams", self.bytes_in.clone());
        r.register("media_datagrams_out", "UDP datagrams sent", self.datagrams_out.clone());
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
        let loss = |q: &vbank_gateway_core::Quality| {
            f64::from(q.ingress_loss.unwrap_or(0.0).max(q.egress_loss.unwrap_or(0.0)))
        };
        self.worst_loss_permille.set((worst(&loss) * 1000.0) as i64);
        self.nacks.set(q.iter().map(|(_, s)| s.quality.nacks_sent + s.quality.nacks_received).sum::<u64>() as i64);
        self.keyframe_requests.set(
            q.iter().map(|(_, s)| s.quality.keyframe_requests_sent + s.quality.keyframe_requests_received).sum::<u64>()
                as i64,
        );
    }
}

/// What the media loop tells a participant's signalling task.
#[derive(Debug)]
pub enum ToPeer {
    /// A renegotiation offer (SDP).
    Offer(String),
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
        reply: oneshot::Sender<Result<(ParticipantId, String), String>>,
        /// WHIP/WHEP: no renegotiation; receiving m-lines are bound to the room's tracks.
        fixed: bool,
    },
    /// An answer to our renegotiation offer.
    Answer(ParticipantId, String),
    /// Signalling closed.
    Leave(ParticipantId),
}

/// A handle to the media loop.
#[derive(Clone)]
pub struct Media {
    tx: mpsc::Sender<Command>,
}

impl Media {
    /// Send a request; false when the loop has stopped.
    pub fn send(&self, c: Command) -> bool {
        self.tx.send(c).is_ok()
    }
}

/// Longest the loop blocks on the socket before looking at commands again.
const MAX_WAIT: Duration = Duration::from_millis(10);

/// Bind the media socket (errors name the key) and start the loop. Each departing participant's quality summary
/// goes to `summaries`.
pub fn start(
    listen: SocketAddr,
    advertise: SocketAddr,
    metrics: MediaMetrics,
    summaries: tmpsc::UnboundedSender<(ParticipantId, Summary)>,
) -> std::io::Result<Media> {
    let socket = UdpSocket::bind(listen)?;
    let (tx, rx) = mpsc::channel();
    std::thread::Builder::new()
        .name("vbank-media".into())
        .spawn(move || run(socket, advertise, rx, metrics, summaries))?;
    Ok(Media { tx })
}

fn run(
    socket: UdpSocket,
    advertise: SocketAddr,
    rx: mpsc::Receiver<Command>,
    metrics: MediaMetrics,
    summaries: tmpsc::UnboundedSender<(ParticipantId, Summary)>,
) {
    let mut sfu = Sfu::new(Instant::now(), advertise);
    let mut last = Counters::default();
    let mut last_update = Instant::now();
    let mut peers: HashMap<ParticipantId, tmpsc::UnboundedSender<ToPeer>> = HashMap::new();
    let mut buf = vec![0u8; 2000];
    loop {
        loop {
            match rx.try_recv() {
                Ok(Command::Join { room, role, offer, events, reply, fixed }) => {
                    let r = if fixed {
                        sfu.join_fixed(Instant::now(), &room, role, &offer)
                    } else {
                        sfu.join(Instant::now(), &room, role, &offer)
                    }
                    .map_err(|e| e.to_string());
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
                Ok(Command::Leave(id)) => sfu.leave(id),
                Err(mpsc::TryRecvError::Empty) => break,
                Err(mpsc::TryRecvError::Disconnected) => return,
            }
        }
        let deadline = loop {
            match sfu.poll_output() {
                Output::Transmit(t) => {
                    let _ = socket.send_to(&t.contents, t.destination);
                }
                Output::Offer(id, sdp) => {
                    if let Some(p) = peers.get(&id) {
                        let _ = p.send(ToPeer::Offer(sdp));
                    }
                }
                Output::Left(id, summary) => {
                    if let Some(p) = peers.remove(&id) {
                        let _ = p.send(ToPeer::Left);
                    }
                    let _ = summaries.send((id, summary));
                }
                Output::Timeout(t) => break t,
            }
        };
        let wait = deadline.saturating_duration_since(Instant::now()).clamp(Duration::from_millis(1), MAX_WAIT);
        let _ = socket.set_read_timeout(Some(wait));
        buf.resize(2000, 0);
        if let Ok((n, source)) = socket.recv_from(&mut buf) {
            // The socket may be bound to a wildcard; ICE knows it by the one address it advertises.
            if !sfu.receive(Instant::now(), source, advertise, &buf[..n]) {
                log::debug!("unclaimed datagram from {source}");
            }
        }
        sfu.timeout(Instant::now());
        if last_update.elapsed() >= Duration::from_secs(1) {
            metrics.update(&sfu, &mut last);
            last_update = Instant::now();
        }
    }
}
