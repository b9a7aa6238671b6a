//! The gateway's SFU, sans IO (after str0m): a state machine that takes joins, SDP answers, received datagrams and
//! the time, and gives datagrams to send, SDP offers to signal, departures, and when to wake it next. No sockets, no
//! threads, no clock: `vbank gateway`'s media loop owns those, and tests drive it directly.
//!
//! Rooms are calls. Media from a participant that publishes is forwarded to every other participant of the same
//! room that subscribes; a new track triggers a renegotiation offer to each subscriber, sent through signalling.
//! Keyframe requests travel back to the sender; a gap in an incoming stream asks the sender for a keyframe.

pub mod backlog;
mod participant;
mod quality;

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use str0m::change::{SdpAnswer, SdpOffer};
/// Audio or video, as str0m names them.
pub use str0m::media::MediaKind;
use str0m::net::Receive;
use str0m::{Candidate, Input, Rtc};

pub use backlog::{BackFrame, HOLD_AT_MOST, Taken};
use participant::{Participant, Propagated};
pub use quality::Quality;
/// The transport and packet types of [`Output::Transmit`], from str0m.
pub use str0m::net::{Protocol, Transmit};

/// A participant, unique for the life of the process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ParticipantId(pub u64);

/// What a participant is in a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The bank's customer.
    Customer,
    /// The teller serving the call.
    Teller,
    /// A specialist conferenced or transferred in.
    Specialist,
    /// The recorder: receives every track, sends none, hidden.
    Recorder,
    /// A supervisor listening in: receives, sends nothing, hidden.
    Observer,
}

impl Role {
    /// Parse the signalling name.
    pub fn from_name(s: &str) -> Option<Role> {
        Some(match s {
            "customer" => Role::Customer,
            "teller" => Role::Teller,
            "specialist" => Role::Specialist,
            "recorder" => Role::Recorder,
            "observer" => Role::Observer,
            _ => return None,
        })
    }

    /// The signalling name (the inverse of [`Role::from_name`]).
    pub fn name(self) -> &'static str {
        match self {
            Role::Customer => "customer",
            Role::Teller => "teller",
            Role::Specialist => "specialist",
            Role::Recorder => "recorder",
            Role::Observer => "observer",
        }
    }

    /// Whether its media is forwarded to others.
    pub fn publishes(self) -> bool {
        !matches!(self, Role::Recorder | Role::Observer)
    }

    /// Whether it receives others' media.
    pub fn subscribes(self) -> bool {
        true
    }
}

/// Why a request to the SFU failed. Each names the peer's fault; none affects other calls.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SfuError {
    /// The SDP could not be parsed or accepted.
    #[error("SDP refused: {0}")]
    Sdp(String),
    /// No such participant (left, or never joined).
    #[error("no participant {0}")]
    UnknownParticipant(u64),
    /// Only a recorder may take its room's backlog.
    #[error("participant {0} is not a recorder: only a recorder takes the backlog")]
    NotRecorder(u64),
    /// The room is full.
    #[error("room {0} is full ({1} participants)")]
    RoomFull(String, usize),
    /// This node carries as many participants as it is rated for; the caller should route the call elsewhere.
    #[error("this gateway node is at its limit of {0} participants (`[gateway] max_participants`); try another node")]
    NodeFull(usize),
}

/// What the SFU wants done.
#[derive(Debug)]
pub enum Output {
    /// Send this datagram.
    Transmit(str0m::net::Transmit),
    /// Send this SDP offer to the participant over signalling; its answer comes back through [`Sfu::answer`].
    Offer(ParticipantId, String),
    /// The participant's media session ended (ICE gone, DTLS closed, or it left), with its room, role and the quality
    /// its media had: the per-call quality summary.
    Left(ParticipantId, Summary),
    /// A recorder's receiving m-line `mid` now carries a track of a participant with `role`: the recorder labels the
    /// track by it (e.g. `customer/camera`).
    Bound {
        /// The recorder.
        recorder: ParticipantId,
        /// Its room (the call).
        room: String,
        /// The recorder's m-line.
        mid: String,
        /// The role of the track's sender.
        role: Role,
        /// Audio or video.
        kind: MediaKind,
    },
    /// Nothing more until this time (or new input).
    Timeout(Instant),
}

/// Counters of the media path, for `/metrics`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Datagrams received and claimed by a participant.
    pub datagrams_in: u64,
    /// Bytes of those datagrams.
    pub bytes_in: u64,
    /// Datagrams sent.
    pub datagrams_out: u64,
    /// Bytes sent.
    pub bytes_out: u64,
    /// Datagrams no participant claimed (stray, stale or hostile).
    pub unclaimed: u64,
    /// Media frames forwarded to subscribers.
    pub frames_forwarded: u64,
}

/// What a departing participant's call looked like.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    /// The room (call).
    pub room: String,
    /// The role it had.
    pub role: Role,
    /// Its media quality.
    pub quality: Quality,
}

/// A connected recorder that sends nothing (no ICE check, no RTCP report) for this long is taken for dead. Its ICE
/// checks come at least every 3 s (str0m's largest retransmission timeout) even when no media flows to it: two
/// missed in a row.
pub const RECORDER_SILENCE: Duration = Duration::from_secs(6);

/// Participants per room, a bound against join floods.
pub const MAX_PER_ROOM: usize = 8;

/// The SFU.
#[derive(Debug)]
pub struct Sfu {
    /// The latest time given as input: the SFU never reads a clock.
    now: Instant,
    candidate: SocketAddr,
    /// A passive ICE-TCP candidate (RFC 4571 framing) for clients behind UDP-blocking firewalls.
    tcp_candidate: Option<SocketAddr>,
    max_participants: usize,
    participants: Vec<Participant>,
    /// Indices into `participants` by room; rebuilt whenever `participants` changes.
    rooms: HashMap<String, Vec<usize>>,
    /// Which participant last claimed a datagram from this source: checked first, so routing is O(1) per packet.
    routes: HashMap<(Protocol, SocketAddr), usize>,
    /// Participants that had input since they were last polled: only they can have output.
    work: Vec<usize>,
    /// Receiving m-lines of WHEP clients appeared, or a track opened while some are free: try binding.
    slots_open: bool,
    next_id: u64,
    queue: VecDeque<Output>,
    counters: Counters,
    backlog: backlog::Backlog,
}

impl Sfu {
    /// An SFU starting at `now`, whose media is reached at `candidate` (the UDP address browsers send to).
    pub fn new(now: Instant, candidate: SocketAddr) -> Sfu {
        Sfu {
            now,
            candidate,
            tcp_candidate: None,
            max_participants: usize::MAX,
            participants: Vec::new(),
            rooms: HashMap::new(),
            routes: HashMap::new(),
            work: Vec::new(),
            slots_open: false,
            next_id: 1,
            queue: VecDeque::new(),
            counters: Counters::default(),
            backlog: backlog::Backlog::new(Duration::ZERO, 0),
        }
    }

    /// Keep the last `window` of every recorded room's media, for a recorder that replaces a lost one
    /// ([`Sfu::take_backlog`]), in at most `budget` bytes for the node (shared evenly among the recorded rooms, at
    /// most [`backlog::ROOM_MAX_BYTES`] each). Off by default.
    pub fn with_recorder_backlog(mut self, window: Duration, budget: usize) -> Sfu {
        self.backlog = backlog::Backlog::new(window, budget);
        self
    }

    /// Also offer a passive ICE-TCP candidate at `tcp` (where the caller accepts TCP connections and feeds their
    /// RFC 4571 frames to [`Sfu::receive_tcp`]); transmits to such participants come out with `proto == Tcp`.
    pub fn with_tcp(mut self, tcp: SocketAddr) -> Sfu {
        self.tcp_candidate = Some(tcp);
        self
    }

    /// Refuse joins beyond `n` participants on this node (a flood of joins cannot exhaust it).
    pub fn with_max_participants(mut self, n: usize) -> Sfu {
        self.max_participants = n;
        self
    }

    /// Participants now, for metrics.
    pub fn participant_count(&self) -> usize {
        self.participants.len()
    }

    /// Rooms with at least one participant.
    pub fn room_count(&self) -> usize {
        self.rooms.len()
    }

    /// Bytes the recorders' backlogs hold.
    pub fn backlog_bytes(&self) -> usize {
        self.backlog.bytes()
    }

    /// After `participants` changed: index rooms again and forget routes (indices moved).
    fn reindex(&mut self) {
        self.rooms.clear();
        for (i, p) in self.participants.iter().enumerate() {
            self.rooms.entry(p.room.clone()).or_default().push(i);
        }
        self.routes.clear();
    }

    /// Queue participant `i` for polling.
    fn mark(&mut self, i: usize) {
        if !std::mem::replace(&mut self.participants[i].dirty, true) {
            self.work.push(i);
        }
    }

    fn find(&mut self, id: ParticipantId) -> Option<&mut Participant> {
        let i = self.participants.iter().position(|p| p.id == id)?;
        self.mark(i);
        Some(&mut self.participants[i])
    }

    /// The current quality of every participant, with its room and role.
    pub fn quality(&self) -> Vec<(ParticipantId, Summary)> {
        self.participants
            .iter()
            .map(|p| (p.id, Summary { room: p.room.clone(), role: p.role, quality: p.quality.snapshot() }))
            .collect()
    }

    /// The media path's counters since start.
    pub fn counters(&self) -> Counters {
        self.counters
    }

    /// A participant joins `room` with its SDP offer; returns its id and the SDP answer.
    pub fn join(
        &mut self,
        now: Instant,
        room: &str,
        role: Role,
        offer_sdp: &str,
    ) -> Result<(ParticipantId, String), SfuError> {
        self.join_with(now, room, role, offer_sdp, true)
    }

    /// A WHIP or WHEP client joins: no renegotiation; what it receives is bound to the receiving m-lines of its one
    /// offer, by kind, as tracks become available.
    pub fn join_fixed(
        &mut self,
        now: Instant,
        room: &str,
        role: Role,
        offer_sdp: &str,
    ) -> Result<(ParticipantId, String), SfuError> {
        self.join_with(now, room, role, offer_sdp, false)
    }

    fn join_with(
        &mut self,
        now: Instant,
        room: &str,
        role: Role,
        offer_sdp: &str,
        renegotiates: bool,
    ) -> Result<(ParticipantId, String), SfuError> {
        let in_room = self.rooms.get(room).map_or(0, Vec::len);
        if self.participants.len() >= self.max_participants {
            return Err(SfuError::NodeFull(self.max_participants));
        }
        if in_room >= MAX_PER_ROOM {
            return Err(SfuError::RoomFull(room.to_string(), in_room));
        }
        let offer = SdpOffer::from_sdp_string(offer_sdp).map_err(|e| SfuError::Sdp(e.to_string()))?;
        let mut rtc = Rtc::builder().set_ice_lite(true).set_stats_interval(Some(Duration::from_secs(1))).build(now);
        let candidate = Candidate::host(self.candidate, "udp").map_err(|e| SfuError::Sdp(e.to_string()))?;
        rtc.add_local_candidate(candidate);
        if let Some(tcp) = self.tcp_candidate {
            let c = Candidate::builder().tcp().host(tcp).tcptype(str0m::net::TcpType::Passive).build();
            rtc.add_local_candidate(c.map_err(|e| SfuError::Sdp(e.to_string()))?);
        }
        let answer = rtc.sdp_api().accept_offer(offer).map_err(|e| SfuError::Sdp(e.to_string()))?;
        let id = ParticipantId(self.next_id);
        self.next_id += 1;
        let mut p = Participant::new(id, room.to_string(), role, rtc, renegotiates, now);
        if role == Role::Recorder && self.backlog.recorder_joined(room) {
            p.held_until = Some(now + HOLD_AT_MOST);
            log::info!(participant = id.0, room = room; "a recorder continues the call: live media held until it takes the backlog");
        }
        // Subscribe the newcomer to everything already published in the room.
        for &i in self.rooms.get(room).into_iter().flatten() {
            for t in self.participants[i].published() {
                p.track_opened(t);
            }
        }
        self.participants.push(p);
        self.reindex();
        self.mark(self.participants.len() - 1);
        log::info!(participant = id.0, room = room; "joined as {role:?}");
        Ok((id, answer.to_sdp_string()))
    }

    /// The participant's answer to a renegotiation offer.
    pub fn answer(&mut self, id: ParticipantId, answer_sdp: &str) -> Result<(), SfuError> {
        let p = self.find(id).ok_or(SfuError::UnknownParticipant(id.0))?;
        let answer = SdpAnswer::from_sdp_string(answer_sdp).map_err(|e| SfuError::Sdp(e.to_string()))?;
        p.accept_answer(answer).map_err(|e| SfuError::Sdp(e.to_string()))
    }

    /// The participant restarts ICE (its address changed, or its media path broke while signalling stayed up): its
    /// offer carries new ICE credentials; the answer carries ours. The session, its tracks and subscriptions stay.
    pub fn restart(&mut self, now: Instant, id: ParticipantId, offer_sdp: &str) -> Result<String, SfuError> {
        self.now = now;
        let p = self.find(id).ok_or(SfuError::UnknownParticipant(id.0))?;
        let offer = SdpOffer::from_sdp_string(offer_sdp).map_err(|e| SfuError::Sdp(e.to_string()))?;
        let answer = p.accept_restart(offer).map_err(|e| SfuError::Sdp(e.to_string()))?;
        log::info!(participant = id.0; "ICE restart");
        Ok(answer.to_sdp_string())
    }

    /// The participant leaves (signalling closed).
    pub fn leave(&mut self, id: ParticipantId) {
        if let Some(p) = self.find(id) {
            p.rtc.disconnect();
        }
    }

    /// A recorder that replaces a lost one takes its room's backlog: every frame kept, oldest first, and which track
    /// each of its m-lines carries now. Its live media, held until now, flows from the next frame on. `room` must be
    /// the participant's.
    pub fn take_backlog(&mut self, id: ParticipantId, room: &str) -> Result<Taken, SfuError> {
        let p = self.find(id).filter(|p| p.room == room).ok_or(SfuError::UnknownParticipant(id.0))?;
        if p.role != Role::Recorder {
            return Err(SfuError::NotRecorder(id.0));
        }
        p.held_until = None;
        let bound = p.bound();
        let role_of = |origin| self.participants.iter().find(|q| q.id == origin).map(|q| q.role);
        let bound = bound.into_iter().filter_map(|(mid, origin, kind)| Some((mid.to_string(), role_of(origin)?, kind)));
        Ok(Taken { frames: self.backlog.snapshot(room), bound: bound.collect() })
    }

    /// A UDP datagram arrived. Returns false when no participant claims it (stray or stale traffic).
    pub fn receive(&mut self, now: Instant, source: SocketAddr, destination: SocketAddr, contents: &[u8]) -> bool {
        self.receive_on(now, Protocol::Udp, source, destination, contents)
    }

    /// A packet arrived on an ICE-TCP connection (one RFC 4571 frame).
    pub fn receive_tcp(&mut self, now: Instant, source: SocketAddr, destination: SocketAddr, contents: &[u8]) -> bool {
        self.receive_on(now, Protocol::Tcp, source, destination, contents)
    }

    fn receive_on(
        &mut self,
        now: Instant,
        proto: Protocol,
        source: SocketAddr,
        destination: SocketAddr,
        contents: &[u8],
    ) -> bool {
        self.now = now;
        let len = contents.len() as u64;
        let Ok(contents) = contents.try_into() else {
            self.counters.unclaimed += 1;
            return false;
        };
        let input = Input::Receive(now, Receive { proto, source, destination, contents });
        let routed = self.routes.get(&(proto, source)).copied().filter(|&i| self.participants[i].rtc.accepts(&input));
        let Some(i) = routed.or_else(|| self.participants.iter().position(|p| p.rtc.accepts(&input))) else {
            self.counters.unclaimed += 1;
            return false;
        };
        self.routes.insert((proto, source), i);
        self.mark(i);
        let p = &mut self.participants[i];
        p.last_heard = now;
        self.counters.datagrams_in += 1;
        self.counters.bytes_in += len;
        if let Err(e) = p.rtc.handle_input(input) {
            log::warn!(participant = p.id.0; "dropping participant after bad input: {e}");
            p.rtc.disconnect();
        }
        true
    }

    /// Time passed: sessions whose timeout has come handle it.
    pub fn timeout(&mut self, now: Instant) {
        self.now = now;
        for i in 0..self.participants.len() {
            let p = &mut self.participants[i];
            if p.held_until.is_some_and(|t| t <= now) {
                p.held_until = None;
                log::warn!(participant = p.id.0; "the recorder did not take the backlog: live media flows without it");
            }
            if p.role == Role::Recorder
                && p.connected
                && p.rtc.is_alive()
                && now.saturating_duration_since(p.last_heard) > RECORDER_SILENCE
            {
                // A recorder on the bank's own network that stops talking has died: its call gets the restarted
                // recorder at once, instead of after ICE's 15 s (whose media the backlog would have to hold).
                log::warn!(participant = p.id.0, room = p.room.as_str(); "the recorder went silent: dropping its session");
                p.rtc.disconnect();
                self.mark(i);
                continue;
            }
            if p.next_timeout > now || !p.rtc.is_alive() {
                continue;
            }
            if let Err(e) = p.rtc.handle_input(Input::Timeout(now)) {
                log::warn!(participant = p.id.0; "session failed: {e}");
                p.rtc.disconnect();
            }
            self.mark(i);
        }
    }

    /// The next thing to do. Call until it returns [`Output::Timeout`].
    pub fn poll_output(&mut self) -> Output {
        if let Some(o) = self.queue.pop_front() {
            return o;
        }
        // Only sessions that had input since their last poll can have output; forwarding queues the receivers.
        let mut died = false;
        loop {
            while let Some(i) = self.work.pop() {
                self.participants[i].dirty = false;
                let slots_before = self.participants[i].free_slots.len();
                loop {
                    match self.participants[i].poll() {
                        Propagated::Timeout(t) => {
                            self.participants[i].next_timeout = t;
                            break;
                        }
                        Propagated::Nothing => {
                            if !self.participants[i].rtc.is_alive() {
                                break;
                            }
                        }
                        Propagated::Transmit(t) => {
                            self.counters.datagrams_out += 1;
                            self.counters.bytes_out += t.contents.len() as u64;
                            self.queue.push_back(Output::Transmit(t));
                        }
                        Propagated::Offer(sdp) => self.queue.push_back(Output::Offer(self.participants[i].id, sdp)),
                        other => self.propagate(i, other),
                    }
                }
                died |= !self.participants[i].rtc.is_alive();
                // New receiving m-lines (a WHEP client's first poll) may take tracks already published.
                self.slots_open |= self.participants[i].free_slots.len() > slots_before;
            }
            if !std::mem::take(&mut self.slots_open) || !self.fill_slots() {
                break;
            }
        }
        if died {
            let (alive, dead): (Vec<_>, Vec<_>) =
                std::mem::take(&mut self.participants).into_iter().partition(|p| p.rtc.is_alive());
            self.participants = alive;
            self.reindex();
            for p in dead.iter().filter(|p| p.role == Role::Recorder && self.rooms.contains_key(&p.room)) {
                self.backlog.recorder_lost(&p.room);
            }
            let rooms = &self.rooms;
            self.backlog.retain(|r| rooms.contains_key(r));
            for p in dead {
                log::info!(participant = p.id.0, room = p.room.as_str(); "left");
                let summary = Summary { room: p.room.clone(), role: p.role, quality: p.quality.snapshot() };
                self.queue.push_back(Output::Left(p.id, summary));
            }
        }
        // With nothing scheduled, wake in a second (the IO loop looks at new commands sooner anyway).
        let next =
            self.participants.iter().map(|p| p.next_timeout).fold(self.now + Duration::from_secs(1), Instant::min);
        self.queue.pop_front().unwrap_or(Output::Timeout(next))
    }

    /// Bind published tracks to WHEP clients' free receiving m-lines; whether any was bound.
    fn fill_slots(&mut self) -> bool {
        let mut bound = false;
        for i in 0..self.participants.len() {
            self.report_bound(i);
            if self.participants[i].free_slots.is_empty() {
                continue;
            }
            let members = self.rooms.get(&self.participants[i].room).cloned().unwrap_or_default();
            let tracks: Vec<_> =
                members.into_iter().filter(|&j| j != i).flat_map(|j| self.participants[j].published()).collect();
            for t in tracks {
                if self.participants[i].bind(t).is_some() {
                    self.mark(i);
                    bound = true;
                }
            }
            self.report_bound(i);
        }
        bound
    }

    /// Tell the recorder `i` (if it is one) which sender's track each newly bound m-line carries.
    fn report_bound(&mut self, i: usize) {
        let p = &mut self.participants[i];
        if p.role != Role::Recorder || p.newly_bound.is_empty() {
            p.newly_bound.clear();
            return;
        }
        let (recorder, room, bound) = (p.id, p.room.clone(), std::mem::take(&mut p.newly_bound));
        for (mid, origin, kind) in bound {
            if let Some(from) = self.participants.iter().find(|q| q.id == origin) {
                let (room, mid, role) = (room.clone(), mid.to_string(), from.role);
                self.queue.push_back(Output::Bound { recorder, room, mid, role, kind });
            }
        }
    }

    fn propagate(&mut self, from: usize, what: Propagated) {
        let origin = self.participants[from].id;
        if let Propagated::Media(d) = &what
            && d.rid.as_ref().is_none_or(|r| *r == "h".into())
            && let Some(kind) = self.participants[from].kind_of(d.mid)
        {
            let p = &self.participants[from];
            self.backlog.push(&p.room, p.role, kind, d);
        }
        let Some(members) = self.rooms.get(&self.participants[from].room) else { return };
        for &j in members {
            if j == from {
                continue;
            }
            let p = &mut self.participants[j];
            match &what {
                Propagated::TrackOpen(t) => {
                    p.track_opened(t.clone());
                    // Free m-lines may take it, or it was just bound to one a recorder must hear about.
                    self.slots_open |= !p.free_slots.is_empty() || !p.newly_bound.is_empty();
                }
                Propagated::Media(d) if p.held_until.is_none() && p.media_out(origin, d) => {
                    self.counters.frames_forwarded += 1
                }
                Propagated::Keyframe(req, source, mid) if p.id == *source => p.keyframe_wanted(*req, *mid),
                _ => continue,
            }
            if !std::mem::replace(&mut p.dirty, true) {
                self.work.push(j);
            }
        }
    }
}
