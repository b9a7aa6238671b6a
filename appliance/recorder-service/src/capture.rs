//! Capture: a str0m session in RTP mode that joins the call through the gateway's WHEP endpoint as the hidden
//! recorder (receiving m-lines for every track a call can have), and a thread that writes each packet it receives to
//! the recording as it arrives — no decoding, no transcoding.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use str0m::change::{SdpAnswer, SdpPendingOffer};
use str0m::media::{Direction, KeyframeRequestKind, MediaKind, Mid};
use str0m::net::{Protocol, Receive};
use str0m::rtp::{RtpPacket, Ssrc};
use str0m::{Candidate, Event, Input, Output, Rtc};
use vbank_recorder::format::RecordKind;
use vbank_recorder::recording::Recording;

use crate::still::{StillRequest, Stills};
use crate::{RecorderServiceError, now_us};

/// Receiving m-lines offered: customer, teller and specialist microphones; their cameras and two screen shares.
const AUDIO_LINES: usize = 3;
const VIDEO_LINES: usize = 5;

/// A session offered to the gateway, waiting for its answer.
pub struct Offered {
    rtc: Rtc,
    sock: UdpSocket,
    pending: SdpPendingOffer,
    /// The SDP offer to POST to `/whep/{call}`.
    pub sdp: String,
}

/// Make the WHEP offer, with a host candidate on `ip`.
pub fn offer(ip: IpAddr) -> Result<Offered, RecorderServiceError> {
    let sock =
        UdpSocket::bind((ip, 0)).map_err(|e| RecorderServiceError::Media(format!("media socket on {ip}: {e}")))?;
    let local = sock.local_addr().map_err(|e| RecorderServiceError::Media(e.to_string()))?;
    let mut rtc = Rtc::builder().set_rtp_mode(true).set_stats_interval(None).build(Instant::now());
    let candidate = Candidate::host(local, "udp").map_err(|e| RecorderServiceError::Media(e.to_string()))?;
    rtc.add_local_candidate(candidate);
    let mut api = rtc.sdp_api();
    for _ in 0..AUDIO_LINES {
        api.add_media(MediaKind::Audio, Direction::RecvOnly, None, None, None);
    }
    for _ in 0..VIDEO_LINES {
        api.add_media(MediaKind::Video, Direction::RecvOnly, None, None, None);
    }
    let (offer, pending) = api.apply().ok_or_else(|| RecorderServiceError::Media("no offer".into()))?;
    Ok(Offered { rtc, sock, pending, sdp: offer.to_sdp_string() })
}

/// A running capture; [`Capture::stop`] ends it and hands the recording back for closing.
pub struct Capture {
    stop: Arc<AtomicBool>,
    events: mpsc::Sender<serde_json::Value>,
    stills: mpsc::Sender<StillRequest>,
    thread: std::thread::JoinHandle<Ended>,
}

/// How a capture ended: the recording (to close) and, if it stopped by itself, why (a full disk, a media failure).
pub struct Ended {
    /// The recording, as far as it got.
    pub recording: Recording,
    /// Why capturing stopped before it was asked to.
    pub error: Option<RecorderServiceError>,
}

impl Capture {
    /// Apply the gateway's answer and start writing `recording`. `bound`: m-lines already known to carry a labelled
    /// track (a continued recording goes on in its track of that label, asking its sender for a keyframe).
    pub fn start(
        o: Offered,
        answer_sdp: &str,
        recording: Recording,
        bound: Vec<(String, String)>,
    ) -> Result<Capture, RecorderServiceError> {
        let Offered { mut rtc, sock, pending, .. } = o;
        let answer = SdpAnswer::from_sdp_string(answer_sdp).map_err(|e| RecorderServiceError::Media(e.to_string()))?;
        rtc.sdp_api().accept_answer(pending, answer).map_err(|e| RecorderServiceError::Media(e.to_string()))?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let (events, inbox) = mpsc::channel();
        let (stills, still_requests) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("vbank-capture".into())
            .spawn(move || run(rtc, sock, recording, flag, Inbox { events: inbox, stills: still_requests, bound }))
            .map_err(|e| RecorderServiceError::Media(e.to_string()))?;
        Ok(Capture { stop, events, stills, thread })
    }

    /// A call event for the recording (JSON with a `kind`). `{"kind": "track", "mid": …, "label": …}` also names
    /// the track received on that m-line.
    pub fn event(&self, event: serde_json::Value) -> bool {
        self.events.send(event).is_ok()
    }

    /// Ask for the next keyframe of the track labelled `label`; false when capturing has stopped.
    pub fn still(&self, request: StillRequest) -> bool {
        self.stills.send(request).is_ok()
    }

    /// Whether capturing stopped by itself (see [`Ended::error`]).
    pub fn has_stopped(&self) -> bool {
        self.thread.is_finished()
    }

    /// Stop capturing; the recording, for [`Recording::finish`].
    pub fn stop(self) -> Result<Ended, RecorderServiceError> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().map_err(|_| RecorderServiceError::Media("the capture thread panicked".into()))
    }
}

/// An RTP packet in RFC 3550 form (12-byte header, no extensions), as fusion and standard tools read it.
fn rtp_bytes(p: &RtpPacket) -> Vec<u8> {
    let h = &p.header;
    vbank_fusion::rtp::build(*h.payload_type, h.sequence_number, h.timestamp, *h.ssrc, h.marker, &p.payload)
}

/// What the API hands the capture thread.
struct Inbox {
    events: mpsc::Receiver<serde_json::Value>,
    stills: mpsc::Receiver<StillRequest>,
    bound: Vec<(String, String)>,
}

fn run(rtc: Rtc, sock: UdpSocket, mut recording: Recording, stop: Arc<AtomicBool>, inbox: Inbox) -> Ended {
    let error = capture(rtc, sock, &mut recording, &stop, &inbox).err();
    if let Some(e) = &error {
        log::error!("recording {}: capture stopped: {e}", recording.header().recording);
    }
    Ended { recording, error }
}

/// Tracks by m-line, labels that arrived before their track's first packet, the m-line of each label, and the
/// stills asked for.
#[derive(Default)]
struct Tracks {
    by_mid: HashMap<Mid, u32>,
    labels: HashMap<String, String>,
    mids: HashMap<String, Mid>,
    ssrcs: HashMap<Mid, Ssrc>,
    stills: Stills,
    /// m-lines continuing a track of a resumed recording: their first packet asks for a keyframe.
    continuing: std::collections::HashSet<Mid>,
    /// When packets began arriving on an m-line whose label had not come yet.
    unlabeled: HashMap<Mid, Instant>,
}

/// How long packets on an m-line whose label has not come are held back while a resumed track waits for its sender.
const LABEL_WAIT: Duration = Duration::from_secs(1);

impl Tracks {
    /// Whether packets on `mid` (no track yet) wait for its label: a resumed recording has a track waiting for its
    /// sender, and the gateway's `track` event, which says whether this is that sender, is on its way. What they
    /// carry stays in the waiting track's gap; after [`LABEL_WAIT`] the m-line gets a track of its own.
    fn awaits_label(&mut self, rec: &Recording, mid: Mid) -> bool {
        if self.labels.contains_key(&mid.to_string()) {
            return false;
        }
        let claimed = |t: u32| self.by_mid.values().any(|&v| v == t);
        let waiting = rec
            .header()
            .tracks
            .iter()
            .any(|t| t.media != "events" && rec.resumed_from(t.track).is_some() && !claimed(t.track));
        waiting && self.unlabeled.entry(mid).or_insert_with(Instant::now).elapsed() < LABEL_WAIT
    }

    /// m-lines the gateway said carry a labelled track: one continuing a track of that label goes on in it.
    fn known(rec: &Recording, bound: &[(String, String)]) -> Tracks {
        let mut t = Tracks::default();
        for (mid, label) in bound {
            let m = Mid::from(mid.as_str());
            t.mids.insert(label.clone(), m);
            match crate::continuity::track_labelled(rec, label) {
                Some(track) => {
                    t.by_mid.insert(m, track);
                    t.continuing.insert(m);
                }
                None => {
                    t.labels.insert(mid.clone(), label.clone());
                }
            }
        }
        t
    }
}

/// Write call events into the recording; a `track` event names the track on its m-line.
fn take_events(
    inbox: &mpsc::Receiver<serde_json::Value>,
    rec: &mut Recording,
    tracks: &mut Tracks,
) -> Result<(), RecorderServiceError> {
    let io = |e: vbank_recorder::RecorderError| RecorderServiceError::Recording(e.to_string());
    while let Ok(mut ev) = inbox.try_recv() {
        let at = now_us();
        ev["at_us"] = at.into();
        if ev["kind"] == "track"
            && let (Some(mid), Some(label)) = (ev["mid"].as_str(), ev["label"].as_str())
        {
            let m = Mid::from(mid);
            tracks.mids.insert(label.to_string(), m);
            match tracks.by_mid.get(&m) {
                Some(&t) => rec.relabel(t, label).map_err(io)?,
                // A resumed recording's track of this label, still waiting for its sender (who rejoined after the
                // recording was continued, e.g. on another gateway node): it goes on in that track.
                None if let Some(t) = crate::continuity::track_labelled(rec, label)
                    .filter(|&t| rec.resumed_from(t).is_some() && !tracks.by_mid.values().any(|&v| v == t)) =>
                {
                    tracks.by_mid.insert(m, t);
                    tracks.continuing.insert(m);
                }
                None => {
                    tracks.labels.insert(mid.to_string(), label.to_string());
                }
            }
        }
        rec.event(Instant::now(), at, ev.to_string().as_bytes()).map_err(io)?;
    }
    Ok(())
}

fn capture(
    mut rtc: Rtc,
    sock: UdpSocket,
    rec: &mut Recording,
    stop: &AtomicBool,
    inbox: &Inbox,
) -> Result<(), RecorderServiceError> {
    let media = |e: str0m::RtcError| RecorderServiceError::Media(e.to_string());
    let local = sock.local_addr().map_err(|e| RecorderServiceError::Media(e.to_string()))?;
    sock.set_nonblocking(true).map_err(|e| RecorderServiceError::Media(e.to_string()))?;
    let mut buf = vec![0u8; 2048];
    let mut tracks = Tracks::known(rec, &inbox.bound);
    while !stop.load(Ordering::Relaxed) {
        take_events(&inbox.events, rec, &mut tracks)?;
        take_stills(&inbox.stills, &mut rtc, &mut tracks);
        let mut timeout = drain(&mut rtc, &sock, rec, &mut tracks)?;
        // Take every waiting datagram, each drained at once (in RTP mode str0m holds one packet until the next poll);
        // then sleep in poll(2) until the next datagram or timeout.
        let mut received = false;
        while let Ok((n, source)) = sock.recv_from(&mut buf) {
            received = true;
            let Ok(contents) = buf[..n].try_into() else { continue };
            let input =
                Input::Receive(Instant::now(), Receive { proto: Protocol::Udp, source, destination: local, contents });
            if rtc.accepts(&input) {
                rtc.handle_input(input).map_err(media)?;
                timeout = drain(&mut rtc, &sock, rec, &mut tracks)?;
            }
        }
        rec.tick(Instant::now()).map_err(|e| RecorderServiceError::Recording(e.to_string()))?;
        let now = Instant::now();
        if now >= timeout {
            rtc.handle_input(Input::Timeout(now)).map_err(media)?;
        } else if !received {
            let next = rec.next_tick().map_or(timeout, |t| t.min(timeout));
            let wait = next.saturating_duration_since(now).min(Duration::from_millis(50));
            let ms = u16::try_from(wait.as_micros().div_ceil(1000)).unwrap_or(u16::MAX);
            let mut fds = [PollFd::new(sock.as_fd(), PollFlags::POLLIN)];
            let _ = poll(&mut fds, PollTimeout::from(ms));
        }
    }
    // Events the gateway posted just before it finished the recording (the last one out leaving) are in by now.
    take_events(&inbox.events, rec, &mut tracks)
}

/// Take still requests: ask the track's sender for a keyframe (PLI) and wait for it; answer those out of time.
fn take_stills(inbox: &mpsc::Receiver<StillRequest>, rtc: &mut Rtc, tracks: &mut Tracks) {
    let now = Instant::now();
    while let Ok(r) = inbox.try_recv() {
        let mid = tracks.mids.get(&r.label).copied();
        if tracks.stills.request(r, mid, now)
            && let Some(ssrc) = mid.and_then(|m| tracks.ssrcs.get(&m))
            && let Some(rx) = rtc.direct_api().stream_rx(ssrc)
        {
            rx.request_keyframe(KeyframeRequestKind::Pli);
        }
    }
    tracks.stills.expire(now);
}

/// Hand str0m's output to the network and received packets to the recording, until str0m wants a timeout.
fn drain(
    rtc: &mut Rtc,
    sock: &UdpSocket,
    rec: &mut Recording,
    tracks: &mut Tracks,
) -> Result<Instant, RecorderServiceError> {
    let io = |e: vbank_recorder::RecorderError| RecorderServiceError::Recording(e.to_string());
    loop {
        match rtc.poll_output().map_err(|e| RecorderServiceError::Media(e.to_string()))? {
            Output::Transmit(t) => {
                let _ = sock.send_to(&t.contents, t.destination);
            }
            Output::Timeout(t) => return Ok(t),
            Output::Event(Event::RtpPacket(p)) => {
                let ssrc: Ssrc = p.header.ssrc;
                let Some(mid) = rtc.direct_api().stream_rx(&ssrc).map(|s| s.mid()) else { continue };
                tracks.ssrcs.insert(mid, ssrc);
                let track = match tracks.by_mid.get(&mid).copied() {
                    Some(t) => t,
                    None if tracks.awaits_label(rec, mid) => continue,
                    None => {
                        let media = rtc.media(mid).map(|m| m.kind());
                        let kind = if media == Some(MediaKind::Audio) { "audio" } else { "video" };
                        let label = tracks.labels.remove(&mid.to_string()).unwrap_or_else(|| format!("mid {mid}"));
                        let t = rec.add_track(&label, kind).map_err(io)?;
                        log::info!(
                            "recording {}: track {t} ({label}, {kind}) from m-line {mid}",
                            rec.header().recording
                        );
                        tracks.by_mid.insert(mid, t);
                        t
                    }
                };
                let pt = *p.header.payload_type;
                if !rec.knows_payload(track, pt)
                    && let Some(params) = rtc.codec_config().params().iter().find(|c| *c.pt() == pt)
                {
                    let codec = vbank_gateway_core::backlog::codec_name(params.spec());
                    rec.note_payload(track, pt, &codec).map_err(io)?;
                }
                let bytes = rtp_bytes(&p);
                if tracks.continuing.remove(&mid)
                    && rtc.media(mid).is_some_and(|m| m.kind() == MediaKind::Video)
                    && let Some(rx) = rtc.direct_api().stream_rx(&ssrc)
                {
                    // A new stream goes on where the backlog ended: a keyframe lets playback decode on at once.
                    rx.request_keyframe(KeyframeRequestKind::Pli);
                }
                if tracks.stills.wants(mid) {
                    let codec =
                        rtc.codec_config().params().iter().find(|c| *c.pt() == pt).and_then(|c| {
                            vbank_fusion::depacketize::VideoCodec::from_noted(&c.spec().codec.to_string())
                        });
                    tracks.stills.packet(mid, codec, &bytes);
                }
                if rec.packet(track, Instant::now(), now_us(), RecordKind::Rtp, &bytes).map_err(io)?
                    && let Some(rx) = rtc.direct_api().stream_rx(&ssrc)
                {
                    rx.request_keyframe(KeyframeRequestKind::Pli);
                }
            }
            Output::Event(Event::IceConnectionStateChange(s)) => log::info!("capture ICE: {s:?}"),
            Output::Event(_) => {}
        }
    }
}

/// Where the gateway's public listener is reached from this host.
pub fn gateway_addr(listen: SocketAddr) -> SocketAddr {
    if listen.ip().is_unspecified() { SocketAddr::from(([127, 0, 0, 1], listen.port())) } else { listen }
}

#[cfg(test)]
mod tests {
    use vbank_crypto::SecretBytes;
    use vbank_crypto::aead::AeadAlg;
    use vbank_recorder::format::DataKey;
    use vbank_recorder::recording::RecordingHeader;
    use vbank_recorder::segmenter::Policy;

    use super::*;

    fn key() -> DataKey {
        DataKey { id: "dek-1".into(), alg: AeadAlg::Aes256Gcm, key: SecretBytes::new(vec![7; 32]) }
    }

    #[test]
    fn a_resumed_track_waits_for_its_senders_label_and_goes_on_in_it() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("rec-1");
        let header = RecordingHeader::new("rec-1", "call-1", &key(), "00", 0);
        let mut rec = Recording::create(&root, header, key(), Policy::default()).unwrap();
        let mic = rec.add_track("customer/microphone", "audio").unwrap();
        let rtp = [&[0x80u8, 111, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1][..], &[0xfc; 40]].concat();
        rec.packet(mic, Instant::now(), 1_000, RecordKind::Rtp, &rtp).unwrap();
        drop(rec); // its gateway node died

        let mut rec = Recording::resume(&root, key(), Policy::default(), 2_000, "moved").unwrap();
        let mut tracks = Tracks::default();
        let (a, b) = (Mid::from("a"), Mid::from("b"));
        assert!(tracks.awaits_label(&rec, a), "a sender not yet named may be the one the track waits for");
        let (tx, rx) = mpsc::channel();
        tx.send(serde_json::json!({"kind": "track", "mid": "a", "label": "customer/microphone"})).unwrap();
        take_events(&rx, &mut rec, &mut tracks).unwrap();
        assert_eq!(tracks.by_mid.get(&a), Some(&mic), "the rejoined sender goes on in its track");
        assert!(tracks.continuing.contains(&a), "and is asked for a keyframe");
        assert!(!tracks.awaits_label(&rec, b), "no track waits any more: another sender gets its own at once");
    }
}
