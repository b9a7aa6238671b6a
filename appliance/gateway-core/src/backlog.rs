//! The recorder's backlog: the last seconds of media of every recorded room, kept by the SFU so that a recorder that
//! crashed and came back continues its recording without a hole. While the recorder is gone (its process restarting,
//! then its session timing out here, then the gateway asking it to continue), the backlog keeps what it would have
//! written; the returning recorder's session is held (no live media) until it takes the backlog, so what it writes is
//! the backlog and then the live media from the very next frame, with nothing missing and nothing twice.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use str0m::format::CodecSpec;
use str0m::media::{MediaData, MediaKind};

use crate::Role;

/// How long a returning recorder may leave its session held before live media flows anyway (it did not ask for the
/// backlog: an older recorder, or it failed).
pub const HOLD_AT_MOST: Duration = Duration::from_secs(5);

/// One frame as the SFU received it.
#[derive(Debug, Clone)]
pub struct BackFrame {
    /// The sender's role: with `kind`, the label the recorder gives the track (`customer/camera`).
    pub role: Role,
    /// Audio or video.
    pub kind: MediaKind,
    /// When the SFU received it.
    pub at: Instant,
    /// Its codec (see [`codec_name`]).
    pub spec: CodecSpec,
    /// Its payload type on the way in.
    pub pt: u8,
    /// Its RTP time, in its codec's clock.
    pub rtp_time: u64,
    /// The whole frame (as str0m's frame API gives it: no RTP payload headers).
    pub data: Arc<[u8]>,
}

impl BackFrame {
    /// The recorder's label of its track, e.g. `customer/camera`.
    pub fn label(&self) -> String {
        label(self.role, self.kind)
    }

    /// Its codec as SDP names it.
    pub fn codec(&self) -> String {
        codec_name(self.spec)
    }
}

/// What a continuing recorder takes: the backlog, and which track each of its m-lines carries now.
#[derive(Debug, Clone)]
pub struct Taken {
    /// The frames kept, oldest first.
    pub frames: Vec<BackFrame>,
    /// The recorder's m-lines bound to a track: the m-line, the sender's role, the kind.
    pub bound: Vec<(String, Role, MediaKind)>,
}

/// A codec as SDP names it, which the recording notes per payload type: `VP8/90000`, `opus/48000/2`.
pub fn codec_name(spec: CodecSpec) -> String {
    match spec.channels {
        Some(ch) => format!("{}/{}/{ch}", spec.codec, spec.clock_rate.get()),
        None => format!("{}/{}", spec.codec, spec.clock_rate.get()),
    }
}

/// The recorder's label of the `kind` track of a sender with `role`, e.g. `customer/camera`.
pub fn label(role: Role, kind: MediaKind) -> String {
    let what = if kind == MediaKind::Audio { "microphone" } else { "camera" };
    format!("{}/{what}", role.name())
}

#[derive(Debug, Default)]
struct Ring {
    frames: VecDeque<BackFrame>,
    bytes: usize,
    /// Its recorder left while the call went on: the next recorder continues from the backlog.
    recorder_lost: bool,
}

/// A room's backlog never holds more than this, however many rooms share the node's budget.
pub const ROOM_MAX_BYTES: usize = 48 << 20;

/// Every recorded room's backlog, bounded by age, and by size: the node's budget shared evenly among its recorded
/// rooms, at most [`ROOM_MAX_BYTES`] each.
#[derive(Debug)]
pub(crate) struct Backlog {
    window: Duration,
    budget: usize,
    rooms: HashMap<String, Ring>,
}

impl Backlog {
    pub fn new(window: Duration, budget: usize) -> Backlog {
        Backlog { window, budget, rooms: HashMap::new() }
    }

    fn enabled(&self) -> bool {
        !self.window.is_zero() && self.budget > 0
    }

    /// A recorder joined `room`: keep its backlog from now on. True when it replaces a recorder that was lost, so
    /// its session is held until it takes the backlog.
    pub fn recorder_joined(&mut self, room: &str) -> bool {
        if !self.enabled() {
            return false;
        }
        std::mem::take(&mut self.rooms.entry(room.to_string()).or_default().recorder_lost)
    }

    /// The recorder of `room` left while others are still in it.
    pub fn recorder_lost(&mut self, room: &str) {
        if let Some(r) = self.rooms.get_mut(room) {
            r.recorder_lost = true;
        }
    }

    /// A frame from a sender with `role` in `room`, received at `d.network_time`. On the media path: no allocation
    /// (the frame's bytes are shared), nothing at all for a room nobody records.
    pub fn push(&mut self, room: &str, role: Role, kind: MediaKind, d: &MediaData) {
        let max_bytes = (self.budget / self.rooms.len().max(1)).min(ROOM_MAX_BYTES);
        let Some(ring) = self.rooms.get_mut(room) else { return };
        let spec = d.params.spec();
        let frame = BackFrame {
            role,
            kind,
            at: d.network_time,
            spec,
            pt: *d.pt,
            rtp_time: d.time.rebase(spec.clock_rate).numer(),
            data: d.data.clone(),
        };
        ring.bytes += frame.data.len();
        ring.frames.push_back(frame);
        let oldest = d.network_time.checked_sub(self.window);
        while let Some(f) = ring.frames.front() {
            if ring.bytes <= max_bytes && oldest.is_none_or(|o| f.at >= o) {
                break;
            }
            ring.bytes -= f.data.len();
            ring.frames.pop_front();
        }
    }

    /// Bytes held, all rooms together.
    pub fn bytes(&self) -> usize {
        self.rooms.values().map(|r| r.bytes).sum()
    }

    /// What `room`'s backlog holds, oldest first.
    pub fn snapshot(&self, room: &str) -> Vec<BackFrame> {
        self.rooms.get(room).map(|r| r.frames.iter().cloned().collect()).unwrap_or_default()
    }

    /// Forget rooms that `keep` says are gone.
    pub fn retain(&mut self, keep: impl Fn(&str) -> bool) {
        self.rooms.retain(|room, _| keep(room));
    }
}

/// A backlog frame on the wire, from the gateway to the recorder (`GET /whep/{room}/{id}/backlog`), with its
/// reception as Unix time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireFrame {
    /// The recorder's track label, e.g. `customer/camera`.
    pub label: String,
    /// The codec as SDP names it.
    pub codec: String,
    /// Its payload type.
    pub pt: u8,
    /// When the gateway received it, Unix µs.
    pub at_us: u64,
    /// Its RTP time in the codec's clock.
    pub rtp_time: u64,
    /// The frame.
    pub data: Vec<u8>,
}

/// The body's first bytes: format and version.
const MAGIC: &[u8; 8] = b"VBBLOG1\n";

/// The wire form: `VBBLOG1\n`; the bindings: a count (u8), then each m-line and label (u8 length, bytes); then per
/// frame: label and codec (u8 length, bytes), pt (u8), at_us and rtp_time (u64 BE), the frame (u32 BE length, bytes).
pub fn encode(bound: &[(String, String)], frames: &[WireFrame]) -> Vec<u8> {
    let mut out = MAGIC.to_vec();
    let bound = &bound[..bound.len().min(255)];
    out.push(bound.len() as u8);
    for s in bound.iter().flat_map(|(m, l)| [m, l]) {
        let b = &s.as_bytes()[..s.len().min(255)];
        out.push(b.len() as u8);
        out.extend_from_slice(b);
    }
    for f in frames {
        for s in [&f.label, &f.codec] {
            let b = &s.as_bytes()[..s.len().min(255)];
            out.push(b.len() as u8);
            out.extend_from_slice(b);
        }
        out.push(f.pt);
        out.extend_from_slice(&f.at_us.to_be_bytes());
        out.extend_from_slice(&f.rtp_time.to_be_bytes());
        out.extend_from_slice(&(f.data.len() as u32).to_be_bytes());
        out.extend_from_slice(&f.data);
    }
    out
}

/// The bindings (m-line, label) and frames of a body [`encode`] made.
pub type Decoded = (Vec<(String, String)>, Vec<WireFrame>);

/// Read [`encode`]'s output; an error names what is wrong.
pub fn decode(mut b: &[u8]) -> Result<Decoded, String> {
    fn take<'a>(b: &mut &'a [u8], n: usize) -> Result<&'a [u8], String> {
        if b.len() < n {
            return Err("the backlog ends inside a frame".into());
        }
        let (head, rest) = b.split_at(n);
        *b = rest;
        Ok(head)
    }
    fn text(b: &mut &[u8]) -> Result<String, String> {
        let n = take(b, 1)?[0] as usize;
        String::from_utf8(take(b, n)?.to_vec()).map_err(|_| "a label or codec is not UTF-8".to_string())
    }
    let u64_of = |s: &[u8]| u64::from_be_bytes(s.try_into().expect("8 bytes"));
    if take(&mut b, MAGIC.len()).ok() != Some(&MAGIC[..]) {
        return Err("not a vbank backlog (VBBLOG1)".into());
    }
    let mut bound = Vec::new();
    for _ in 0..take(&mut b, 1)?[0] {
        bound.push((text(&mut b)?, text(&mut b)?));
    }
    let mut out = Vec::new();
    while !b.is_empty() {
        let (label, codec) = (text(&mut b)?, text(&mut b)?);
        let pt = take(&mut b, 1)?[0];
        let at_us = u64_of(take(&mut b, 8)?);
        let rtp_time = u64_of(take(&mut b, 8)?);
        let n = u32::from_be_bytes(take(&mut b, 4)?.try_into().expect("4 bytes")) as usize;
        out.push(WireFrame { label, codec, pt, at_us, rtp_time, data: take(&mut b, n)?.to_vec() });
    }
    Ok((bound, out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wire_form_round_trips_and_refuses_a_torn_body() {
        let f = |label: &str, n: u8| WireFrame {
            label: label.into(),
            codec: "VP8/90000".into(),
            pt: 96,
            at_us: 1_700_000_000_000_000 + u64::from(n),
            rtp_time: 3000 * u64::from(n),
            data: vec![n; usize::from(n) * 100],
        };
        let frames = vec![f("customer/camera", 1), f("teller/microphone", 2), f("customer/camera", 0)];
        let bound = vec![("3".to_string(), "customer/camera".to_string())];
        let bytes = encode(&bound, &frames);
        assert_eq!(decode(&bytes).unwrap(), (bound, frames));
        assert_eq!(decode(&encode(&[], &[])).unwrap(), (vec![], vec![]));
        assert!(decode(&bytes[..bytes.len() - 1]).unwrap_err().contains("ends inside"));
        assert!(decode(b"GIF89a..").unwrap_err().contains("not a vbank backlog"));
    }
}
