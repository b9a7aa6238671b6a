//! One participant: a str0m `Rtc`, the tracks it sends (in) and the tracks of others it receives (out), and the
//! renegotiation needed when someone else's track appears or goes.

use std::sync::{Arc, Weak};
use std::time::Instant;

use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::media::{Direction, KeyframeRequest, KeyframeRequestKind, MediaData, MediaKind, Mid, Rid};
use str0m::{Event, IceConnectionState, Output, Rtc};

use crate::quality::QualityTracker;
use crate::{ParticipantId, Role};

/// A track this participant sends.
#[derive(Debug)]
pub(crate) struct TrackIn {
    pub origin: ParticipantId,
    pub mid: Mid,
    pub kind: MediaKind,
}

#[derive(Debug, Clone, Copy)]
enum OutState {
    ToOpen,
    Negotiating(Mid),
    Open(Mid),
    ToStop(Mid),
    NegotiatingStop(Mid),
}

/// Someone else's track this participant receives.
#[derive(Debug)]
struct TrackOut {
    source: Weak<TrackIn>,
    state: OutState,
}

impl TrackOut {
    fn mid(&self) -> Option<Mid> {
        match self.state {
            OutState::ToOpen => None,
            OutState::Negotiating(m) | OutState::Open(m) | OutState::ToStop(m) | OutState::NegotiatingStop(m) => {
                Some(m)
            }
        }
    }
}

/// What one participant's output means for the room.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)] // One value at a time on the media path: boxing each packet would cost more.
pub(crate) enum Propagated {
    Nothing,
    Timeout(Instant),
    Transmit(str0m::net::Transmit),
    /// Send this SDP offer to the participant over signalling.
    Offer(String),
    TrackOpen(Weak<TrackIn>),
    Media(MediaData),
    Keyframe(KeyframeRequest, ParticipantId, Mid),
}

#[derive(Debug)]
pub(crate) struct Participant {
    pub id: ParticipantId,
    pub room: String,
    pub role: Role,
    pub rtc: Rtc,
    tracks_in: Vec<Arc<TrackIn>>,
    tracks_out: Vec<TrackOut>,
    pending: Option<SdpPendingOffer>,
    last_keyframe_request: Option<Instant>,
    chosen_rid: Option<Rid>,
    pub connected: bool,
    /// Signalling can carry renegotiation offers (WebSocket). WHIP/WHEP clients cannot: their receiving m-lines
    /// are fixed by their one offer and get bound to the room's tracks as they come ([`Participant::free_slots`]).
    renegotiates: bool,
    /// Receiving m-lines (WHEP) not yet bound to a track.
    pub free_slots: Vec<(Mid, MediaKind)>,
    /// Call quality from str0m's statistics.
    pub quality: QualityTracker,
    /// When str0m next wants a timeout.
    pub next_timeout: Instant,
    /// Queued for polling: input reached the session since it was last polled.
    pub dirty: bool,
    /// m-lines bound since the SFU last looked, with the sender and kind of their track (recorders report them).
    pub newly_bound: Vec<(Mid, ParticipantId, MediaKind)>,
    /// A recorder replacing a lost one gets no live media until it took the backlog (or until then).
    pub held_until: Option<Instant>,
    /// When a datagram from it last arrived.
    pub last_heard: Instant,
}

impl Participant {
    pub fn new(id: ParticipantId, room: String, role: Role, rtc: Rtc, renegotiates: bool, now: Instant) -> Participant {
        Participant {
            id,
            room,
            role,
            rtc,
            tracks_in: Vec::new(),
            tracks_out: Vec::new(),
            pending: None,
            last_keyframe_request: None,
            chosen_rid: None,
            connected: false,
            renegotiates,
            free_slots: Vec::new(),
            quality: QualityTracker::default(),
            next_timeout: now,
            dirty: false,
            newly_bound: Vec::new(),
            held_until: None,
            last_heard: now,
        }
    }

    /// The kind of the track this participant sends on `mid`.
    pub fn kind_of(&self, mid: Mid) -> Option<MediaKind> {
        self.tracks_in.iter().find(|t| t.mid == mid).map(|t| t.kind)
    }

    /// Tracks this participant already sends, for a newcomer to subscribe to.
    pub fn published(&self) -> Vec<Weak<TrackIn>> {
        self.tracks_in.iter().map(Arc::downgrade).collect()
    }

    pub fn poll(&mut self) -> Propagated {
        if !self.rtc.is_alive() {
            return Propagated::Nothing;
        }
        if let Some(offer) = self.negotiate_if_needed() {
            return Propagated::Offer(offer);
        }
        match self.rtc.poll_output() {
            Ok(Output::Transmit(t)) => Propagated::Transmit(t),
            Ok(Output::Timeout(t)) => Propagated::Timeout(t),
            Ok(Output::Event(e)) => self.event(e),
            Err(e) => {
                log::warn!(participant = self.id.0; "media session failed: {e}");
                self.rtc.disconnect();
                Propagated::Nothing
            }
        }
    }

    fn event(&mut self, e: Event) -> Propagated {
        match e {
            Event::IceConnectionStateChange(IceConnectionState::Disconnected) => {
                self.rtc.disconnect();
                Propagated::Nothing
            }
            Event::Connected => {
                self.connected = true;
                Propagated::Nothing
            }
            Event::MediaAdded(m) if !self.renegotiates && m.direction == Direction::SendOnly => {
                self.free_slots.push((m.mid, m.kind));
                Propagated::Nothing
            }
            Event::MediaAdded(m) if self.role.publishes() && m.direction.is_receiving() => {
                let t = Arc::new(TrackIn { origin: self.id, mid: m.mid, kind: m.kind });
                let weak = Arc::downgrade(&t);
                self.tracks_in.push(t);
                Propagated::TrackOpen(weak)
            }
            Event::MediaData(data) if self.role.publishes() => {
                if !data.contiguous {
                    // A gap in the stream: ask the sender for a fresh keyframe (at most every 500 ms).
                    self.quality.gaps += 1;
                    self.request_keyframe(data.mid, data.rid, data.network_time);
                }
                Propagated::Media(data)
            }
            Event::PeerStats(s) => {
                self.quality.peer(s);
                Propagated::Nothing
            }
            Event::MediaIngressStats(s) => {
                let audio = self.tracks_in.iter().any(|t| t.mid == s.mid && t.kind == MediaKind::Audio);
                self.quality.ingress(&s, if audio { 48_000 } else { 90_000 });
                Propagated::Nothing
            }
            Event::MediaEgressStats(s) => {
                self.quality.egress(&s);
                Propagated::Nothing
            }
            Event::KeyframeRequest(req) => {
                let Some(source) =
                    self.tracks_out.iter().find(|o| o.mid() == Some(req.mid)).and_then(|o| o.source.upgrade())
                else {
                    return Propagated::Nothing;
                };
                Propagated::Keyframe(req, source.origin, source.mid)
            }
            _ => Propagated::Nothing,
        }
    }

    fn request_keyframe(&mut self, mid: Mid, rid: Option<Rid>, now: Instant) {
        if self.last_keyframe_request.is_some_and(|t| now.saturating_duration_since(t).as_millis() < 500) {
            return;
        }
        self.last_keyframe_request = Some(now);
        if let Some(mut w) = self.rtc.writer(mid) {
            let _ = w.request_keyframe(rid, KeyframeRequestKind::Pli);
        }
    }

    /// Someone else's track: offer it to this participant (renegotiating clients), or bind it to a free receiving
    /// m-line of the same kind (WHEP).
    pub fn track_opened(&mut self, source: Weak<TrackIn>) {
        if !self.role.subscribes() {
            return;
        }
        if self.renegotiates {
            self.tracks_out.push(TrackOut { source, state: OutState::ToOpen });
        } else {
            self.bind(source);
        }
    }

    /// Bind a track to a free receiving m-line of its kind, if there is one; the m-line it was bound to.
    pub fn bind(&mut self, source: Weak<TrackIn>) -> Option<Mid> {
        let src = source.upgrade()?;
        if self.tracks_out.iter().any(|t| t.source.ptr_eq(&source)) {
            return None;
        }
        let pos = self.free_slots.iter().position(|(_, k)| *k == src.kind)?;
        let (mid, _) = self.free_slots.remove(pos);
        self.tracks_out.push(TrackOut { source, state: OutState::Open(mid) });
        self.newly_bound.push((mid, src.origin, src.kind));
        Some(mid)
    }

    /// The m-lines that carry someone's track now, with that track's sender and kind.
    pub fn bound(&self) -> Vec<(Mid, ParticipantId, MediaKind)> {
        let open = |t: &TrackOut| if let OutState::Open(m) = t.state { Some(m) } else { None };
        self.tracks_out
            .iter()
            .filter_map(|t| Some((open(t)?, t.source.upgrade()?)))
            .map(|(m, src)| (m, src.origin, src.kind))
            .collect()
    }

    /// Forward media from `origin` if this participant receives that track; true when it was written.
    pub fn media_out(&mut self, origin: ParticipantId, data: &MediaData) -> bool {
        let Some(mid) = self
            .tracks_out
            .iter()
            .find(|o| o.source.upgrade().is_some_and(|i| i.origin == origin && i.mid == data.mid))
            .and_then(|o| if let OutState::Open(m) = o.state { Some(m) } else { None })
        else {
            return false;
        };
        // Simulcast: forward the unlayered stream or the high layer until per-subscriber layer choice lands.
        if data.rid.is_some() && data.rid != Some("h".into()) {
            return false;
        }
        self.chosen_rid = data.rid;
        let Some(writer) = self.rtc.writer(mid) else { return false };
        let Some(pt) = writer.match_params(data.params) else { return false };
        if let Err(e) = writer.write(pt, data.network_time, data.time, data.data.clone()) {
            log::warn!(participant = self.id.0; "forwarding failed: {e}");
            self.rtc.disconnect();
            return false;
        }
        true
    }

    /// A receiver asked for a keyframe of our track `mid`.
    pub fn keyframe_wanted(&mut self, mut req: KeyframeRequest, mid: Mid) {
        if !self.tracks_in.iter().any(|t| t.mid == mid) {
            return;
        }
        req.rid = self.chosen_rid;
        if let Some(mut w) = self.rtc.writer(mid) {
            let _ = w.request_keyframe(req.rid, req.kind);
        }
    }

    fn negotiate_if_needed(&mut self) -> Option<String> {
        if !self.renegotiates || self.pending.is_some() || !self.connected {
            return None;
        }
        for t in &mut self.tracks_out {
            if let OutState::Open(m) = t.state
                && t.source.upgrade().is_none()
            {
                t.state = OutState::ToStop(m);
            }
        }
        let mut change = self.rtc.sdp_api();
        for t in &mut self.tracks_out {
            match t.state {
                OutState::ToOpen => {
                    if let Some(src) = t.source.upgrade() {
                        let mid =
                            change.add_media(src.kind, Direction::SendOnly, Some(src.origin.0.to_string()), None, None);
                        t.state = OutState::Negotiating(mid);
                    }
                }
                OutState::ToStop(m) => {
                    change.stop_media(m);
                    t.state = OutState::NegotiatingStop(m);
                }
                _ => {}
            }
        }
        if !change.has_changes() {
            return None;
        }
        let (offer, pending) = change.apply()?;
        self.pending = Some(pending);
        Some(offer.to_sdp_string())
    }

    /// The participant offers (an ICE restart). An offer of ours still awaiting its answer crossed it: roll ours back
    /// (str0m applies a change only when its answer is accepted) and offer it again once this exchange is done.
    pub fn accept_restart(&mut self, offer: SdpOffer) -> Result<SdpAnswer, str0m::RtcError> {
        if self.pending.take().is_some() {
            for t in &mut self.tracks_out {
                t.state = match t.state {
                    OutState::Negotiating(_) => OutState::ToOpen,
                    OutState::NegotiatingStop(m) => OutState::ToStop(m),
                    s => s,
                };
            }
        }
        self.rtc.sdp_api().accept_offer(offer)
    }

    /// The participant answered our renegotiation offer.
    pub fn accept_answer(&mut self, answer: SdpAnswer) -> Result<(), str0m::RtcError> {
        let Some(pending) = self.pending.take() else {
            return Ok(());
        };
        self.rtc.sdp_api().accept_answer(pending, answer)?;
        for t in &mut self.tracks_out {
            if let OutState::Negotiating(m) = t.state {
                t.state = OutState::Open(m);
            }
        }
        self.tracks_out.retain(|t| !matches!(t.state, OutState::NegotiatingStop(_)));
        Ok(())
    }
}
