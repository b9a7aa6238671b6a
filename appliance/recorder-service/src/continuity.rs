//! Continuing a recording after the recorder crashed. The gateway notices the recorder's session is gone and asks
//! the restarted recorder to record the call again, naming the recording it `continues`. The recorder then resumes
//! that same recording (its tracks repaired, the gap noted), joins the call, and takes the gateway's backlog: the
//! media of the time it was away, which it writes before the live media, so the recording goes on without a hole.
//! A recording left open waits [`RESUME_GRACE`] for that request before the sweep closes it.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use vbank_gateway_core::backlog::WireFrame;
use vbank_recorder::RecorderError;
use vbank_recorder::format::RecordKind;
use vbank_recorder::recording::Recording;

/// How long a recording left open by a recorder that stopped waits to be continued (the gateway asks for two
/// minutes) before the sweep closes it.
pub const RESUME_GRACE: Duration = Duration::from_secs(150);

/// The gap a resumed recording notes on each track, from its last kept packet to its next one.
pub const RESUMED: &str = "the recorder restarted (crash or kill); the gateway's backlog filled the time it was away";

/// The same, for a call whose gateway was lost (its node died): its participants rejoined on another node, whose
/// recorder continued the recording. The lost gateway held the backlog, so the gap is the time until they rejoined.
pub const MOVED: &str =
    "the call's gateway was lost (node failure); its participants rejoined on another node and the recording went on";

/// The same, for a recorder that kept running but whose session the gateway dropped (it went silent).
pub const INTERRUPTED: &str =
    "the recorder's session was lost (it went silent); the gateway's backlog filled the time it was away";

/// When the recording in `dir` was last written: its newest file.
fn last_written(dir: &Path) -> Option<SystemTime> {
    let mut newest = std::fs::metadata(dir.join("recording.json")).and_then(|m| m.modified()).ok()?;
    for track in std::fs::read_dir(dir.join("tracks")).into_iter().flatten().flatten() {
        for f in std::fs::read_dir(track.path()).into_iter().flatten().flatten() {
            if let Ok(t) = f.metadata().and_then(|m| m.modified()) {
                newest = newest.max(t);
            }
        }
    }
    Some(newest)
}

/// Whether the open recording in `dir` was written less than [`RESUME_GRACE`] ago: the gateway may still ask to
/// continue it, so the sweep leaves it alone.
pub fn awaiting_resume(dir: &Path) -> bool {
    last_written(dir).is_some_and(|t| t.elapsed().map_or(true, |age| age < RESUME_GRACE))
}

/// Largest VP8 payload in one backlog packet, below any path MTU.
const MAX_PAYLOAD: usize = 1100;

/// RTP packets for one track's backlog frames: a stream of its own (SSRC), numbered on from packet to packet.
struct Packetizer {
    ssrc: u32,
    seq: u16,
}

impl Packetizer {
    fn new(track: u32) -> Packetizer {
        Packetizer { ssrc: 0x7ba0_0000 | (track & 0xffff), seq: 0 }
    }

    /// The RTP packets of `f` (VP8: RFC 7741 with the start bit on the first, the marker on the last; Opus: one
    /// packet); `None` for a codec the recorder does not packetize.
    fn packets(&mut self, f: &WireFrame) -> Option<Vec<Vec<u8>>> {
        let codec = f.codec.split('/').next()?.to_ascii_lowercase();
        let payloads: Vec<Vec<u8>> = match codec.as_str() {
            "opus" => vec![f.data.clone()],
            "vp8" => f
                .data
                .chunks(MAX_PAYLOAD)
                .enumerate()
                .map(|(i, c)| [&[if i == 0 { 0x10 } else { 0x00 }][..], c].concat())
                .collect(),
            _ => return None,
        };
        let last = payloads.len().saturating_sub(1);
        let packets = payloads.iter().enumerate().map(|(i, p)| {
            let seq = self.seq;
            self.seq = self.seq.wrapping_add(1);
            vbank_fusion::rtp::build(f.pt, seq, f.rtp_time as u32, self.ssrc, codec == "vp8" && i == last, p)
        });
        Some(packets.collect())
    }
}

/// The newest media track of `rec` labelled `label`.
pub fn track_labelled(rec: &Recording, label: &str) -> Option<u32> {
    rec.header().tracks.iter().rev().find(|t| t.label == label && t.media != "events").map(|t| t.track)
}

/// What [`write_backlog`] wrote.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Written {
    /// Frames written.
    pub frames: usize,
    /// Frames the recording already had (kept before the crash).
    pub already: usize,
    /// Frames of a codec the recorder does not packetize.
    pub skipped: usize,
}

/// Write the gateway's backlog into `rec`: on each frame's track (added if the recording lacks it), every frame
/// newer than what that track kept.
pub fn write_backlog(rec: &mut Recording, frames: &[WireFrame]) -> Result<Written, RecorderError> {
    let mut out = Written::default();
    let mut streams: HashMap<u32, (u64, Packetizer)> = HashMap::new();
    for f in frames {
        let track = match track_labelled(rec, &f.label) {
            Some(t) => t,
            None => rec.add_track(
                &f.label,
                if f.codec.to_ascii_lowercase().starts_with("opus") { "audio" } else { "video" },
            )?,
        };
        // Read before the track's first write closes its gap.
        let (kept_until, packetizer) =
            streams.entry(track).or_insert_with(|| (rec.resumed_from(track).unwrap_or(0), Packetizer::new(track)));
        if f.at_us <= *kept_until {
            out.already += 1;
            continue;
        }
        let Some(packets) = packetizer.packets(f) else {
            out.skipped += 1;
            continue;
        };
        if !rec.knows_payload(track, f.pt) {
            rec.note_payload(track, f.pt, &f.codec)?;
        }
        for p in packets {
            rec.packet(track, Instant::now(), f.at_us, RecordKind::Rtp, &p)?;
        }
        out.frames += 1;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use vbank_crypto::SecretBytes;
    use vbank_crypto::aead::AeadAlg;
    use vbank_fusion::depacketize::{Depacketizer, VideoCodec};
    use vbank_recorder::format::DataKey;
    use vbank_recorder::recording::RecordingHeader;
    use vbank_recorder::segmenter::Policy;

    use super::*;

    fn key() -> DataKey {
        DataKey { id: "dek-1".into(), alg: AeadAlg::Aes256Gcm, key: SecretBytes::new(vec![7; 32]) }
    }

    fn frame(label: &str, codec: &str, at_ms: u64, data: Vec<u8>) -> WireFrame {
        WireFrame { label: label.into(), codec: codec.into(), pt: 96, at_us: at_ms * 1000, rtp_time: at_ms * 90, data }
    }

    #[test]
    fn vp8_frames_come_back_whole_from_their_packets() {
        let mut p = Packetizer::new(2);
        let mut d = Depacketizer::new(VideoCodec::Vp8);
        let key = [&[0x10u8, 0x02, 0x00, 0x9d, 0x01, 0x2a][..], &[5; 3000]].concat(); // a keyframe's first bytes
        for (i, data) in [key, vec![0x31; 2500], vec![0x31; 10]].into_iter().enumerate() {
            let f = frame("customer/camera", "VP8/90000", i as u64 * 33, data.clone());
            let packets = p.packets(&f).unwrap();
            assert_eq!(packets.len(), data.len().div_ceil(MAX_PAYLOAD));
            let mut out = Vec::new();
            for pkt in &packets {
                out.extend(d.push(&vbank_fusion::rtp::parse(pkt).unwrap()));
            }
            assert_eq!(out.len(), 1, "frame {i} reassembled");
            assert_eq!(out[0].data, data);
        }
        assert!(p.packets(&frame("x", "H264/90000", 0, vec![1])).is_none(), "H.264 is not packetized here");
    }

    #[test]
    fn the_backlog_fills_a_resumed_track_from_its_last_kept_packet() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("rec-1");
        let header = RecordingHeader::new("rec-1", "call-1", &key(), "00", 0);
        let mut rec = Recording::create(&root, header, key(), Policy::default()).unwrap();
        let mic = rec.add_track("customer/microphone", "audio").unwrap();
        let opus = |ms: u64| frame("customer/microphone", "opus/48000/2", ms, vec![0xfc; 40]);
        let mut first = Packetizer::new(mic);
        for ms in (0..1000).step_by(20) {
            for p in first.packets(&opus(ms)).unwrap() {
                rec.packet(mic, Instant::now(), ms * 1000, RecordKind::Rtp, &p).unwrap();
            }
        }
        drop(rec); // killed

        let mut rec = Recording::resume(&root, key(), Policy::default(), 9_000_000, RESUMED).unwrap();
        // The gateway kept 500..3000 ms; the recording has up to 980 ms.
        let backlog: Vec<_> = (500..3000).step_by(20).map(opus).collect();
        let teller = frame("teller/camera", "VP8/90000", 2500, vec![0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a, 1, 2]);
        let written = write_backlog(&mut rec, &[backlog, vec![teller]].concat()).unwrap();
        assert_eq!(written, Written { frames: 100 + 1, already: 25, skipped: 0 });
        assert_eq!(track_labelled(&rec, "teller/camera"), Some(1), "a track the recording lacked is added");
        let m = rec.finish(10_000_000).unwrap();
        assert_eq!((m.gaps[0].from_us, m.gaps[0].to_us), (980_000, 1_000_000), "20 ms between the last kept and next");
        assert!(m.verify(&root).unwrap().is_empty());
        let mut arrivals = Vec::new();
        vbank_fusion::source::for_each_packet(&root, &m, mic, &key(), |at, _| {
            arrivals.push(at);
            Ok(())
        })
        .unwrap();
        assert_eq!(arrivals.len(), 150, "0..3000 ms in 20 ms steps, each once");
        assert!(arrivals.windows(2).all(|w| w[1] == w[0] + 20_000), "no hole and nothing twice");
    }
}
