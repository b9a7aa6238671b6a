//! Frames out of RTP payloads: VP8 (RFC 7741) and H.264 (RFC 6184, packetization modes 0 and 1), and the duration of
//! an Opus packet (RFC 6716 §3.1). A frame with a lost packet is dropped, and so is everything after it until the
//! next keyframe: a decoder fed a broken reference smears the picture, and evidence should show a freeze instead.

use crate::rtp::RtpView;

/// A video codec fusion can read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VideoCodec {
    /// VP8.
    Vp8,
    /// H.264.
    H264,
}

impl VideoCodec {
    /// From the codec name the recorder noted (`VP8/90000`, `H264/90000`).
    pub fn from_noted(noted: &str) -> Option<VideoCodec> {
        match noted.split('/').next()?.to_ascii_uppercase().as_str() {
            "VP8" => Some(VideoCodec::Vp8),
            "H264" => Some(VideoCodec::H264),
            _ => None,
        }
    }

    /// The IVF FourCC.
    pub fn fourcc(self) -> &'static [u8; 4] {
        match self {
            VideoCodec::Vp8 => b"VP80",
            VideoCodec::H264 => b"H264",
        }
    }
}

/// One whole video frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// Its RTP timestamp.
    pub ts: u32,
    /// The coded frame (H.264: Annex B byte stream).
    pub data: Vec<u8>,
    /// Whether it decodes on its own.
    pub keyframe: bool,
    /// Picture size, when the frame says (VP8 keyframes).
    pub size: Option<(u16, u16)>,
}

/// Reassembles frames from one video track's packets, given in sequence order.
#[derive(Debug)]
pub struct Depacketizer {
    codec: VideoCodec,
    next_seq: Option<u16>,
    current: Option<Frame>,
    broken: bool,
    /// Waiting for a keyframe (at the start, and after a loss).
    waiting: bool,
    /// Frames dropped for loss.
    pub dropped: u64,
}

impl Depacketizer {
    /// A depacketizer for `codec`.
    pub fn new(codec: VideoCodec) -> Depacketizer {
        Depacketizer { codec, next_seq: None, current: None, broken: false, waiting: true, dropped: 0 }
    }

    /// The next packet; a frame when this packet completed one.
    pub fn push(&mut self, p: &RtpView<'_>) -> Option<Frame> {
        if self.next_seq.is_some_and(|n| n != p.seq) {
            self.broken = true;
        }
        self.next_seq = Some(p.seq.wrapping_add(1));
        if self.current.as_ref().is_some_and(|f| f.ts != p.ts) {
            // A new frame began before the last one's marker: its end was lost.
            self.current = None;
            self.dropped += 1;
            self.waiting = true;
        }
        let frame =
            self.current.get_or_insert_with(|| Frame { ts: p.ts, data: Vec::new(), keyframe: false, size: None });
        if frame.data.is_empty() && self.broken {
            // The loss fell between frames: this one may be whole, but its references are not.
            self.waiting = true;
        }
        if frame.data.is_empty() {
            self.broken = false;
        }
        let ok = match self.codec {
            VideoCodec::Vp8 => vp8(frame, p.payload),
            VideoCodec::H264 => h264(frame, p.payload),
        };
        if !ok {
            self.broken = true;
        }
        if !p.marker {
            return None;
        }
        let frame = self.current.take()?;
        if self.broken || frame.data.is_empty() {
            self.broken = false;
            self.dropped += 1;
            self.waiting = true;
            return None;
        }
        if self.waiting && !frame.keyframe {
            self.dropped += 1;
            return None;
        }
        self.waiting = false;
        Some(frame)
    }
}

/// Append a VP8 payload (RFC 7741 §4.2 descriptor); false when it does not fit where it lands.
fn vp8(frame: &mut Frame, payload: &[u8]) -> bool {
    let Some(&b0) = payload.first() else { return false };
    let mut at = 1;
    if b0 & 0x80 != 0 {
        let Some(&x) = payload.get(1) else { return false };
        at = 2;
        if x & 0x80 != 0 {
            let Some(&pid) = payload.get(at) else { return false };
            at += if pid & 0x80 != 0 { 2 } else { 1 };
        }
        if x & 0x40 != 0 {
            at += 1;
        }
        if x & 0x30 != 0 {
            at += 1;
        }
    }
    let Some(data) = payload.get(at..) else { return false };
    let start = b0 & 0x10 != 0 && b0 & 0x07 == 0;
    if start != frame.data.is_empty() {
        return false;
    }
    if start && let Some(&h) = data.first() {
        frame.keyframe = h & 0x01 == 0;
        frame.size = vp8_size(data);
    }
    frame.data.extend_from_slice(data);
    true
}

/// The picture size a VP8 keyframe gives (none for other frames, or an end-to-end encrypted one).
pub fn vp8_size(frame: &[u8]) -> Option<(u16, u16)> {
    if frame.len() < 10 || frame[0] & 0x01 != 0 || frame[3..6] != [0x9d, 0x01, 0x2a] {
        return None;
    }
    let w = u16::from_le_bytes([frame[6], frame[7]]) & 0x3fff;
    let h = u16::from_le_bytes([frame[8], frame[9]]) & 0x3fff;
    Some((w, h))
}

const START_CODE: [u8; 4] = [0, 0, 0, 1];

fn nal(frame: &mut Frame, unit: &[u8]) {
    if let Some(&h) = unit.first() {
        frame.keyframe |= matches!(h & 0x1f, 5 | 7);
        frame.data.extend_from_slice(&START_CODE);
        frame.data.extend_from_slice(unit);
    }
}

/// Append an H.264 payload: single NAL unit, STAP-A or FU-A.
fn h264(frame: &mut Frame, payload: &[u8]) -> bool {
    let Some(&h) = payload.first() else { return false };
    match h & 0x1f {
        1..=23 => nal(frame, payload),
        24 => {
            let mut rest = &payload[1..];
            while rest.len() >= 2 {
                let n = usize::from(u16::from_be_bytes([rest[0], rest[1]]));
                let Some(unit) = rest.get(2..2 + n) else { return false };
                nal(frame, unit);
                rest = &rest[2 + n..];
            }
        }
        28 => {
            let Some(&fu) = payload.get(1) else { return false };
            if fu & 0x80 != 0 {
                let header = (h & 0xe0) | (fu & 0x1f);
                frame.keyframe |= matches!(fu & 0x1f, 5 | 7);
                frame.data.extend_from_slice(&START_CODE);
                frame.data.push(header);
            } else if frame.data.is_empty() {
                return false;
            }
            frame.data.extend_from_slice(&payload[2..]);
        }
        _ => return false,
    }
    true
}

/// Samples (at 48 kHz) in one Opus packet, from its TOC byte; `None` when the packet is malformed.
pub fn opus_samples(packet: &[u8]) -> Option<u32> {
    let toc = *packet.first()?;
    let config = toc >> 3;
    // Frame size in units of 2.5 ms.
    let unit = match config {
        0..=11 => [4, 8, 16, 24][usize::from(config % 4)],
        12..=15 => [4, 8][usize::from(config % 2)],
        _ => [1, 2, 4, 8][usize::from(config % 4)],
    };
    let frames = match toc & 3 {
        0 => 1,
        1 | 2 => 2,
        _ => u32::from(*packet.get(1)? & 0x3f),
    };
    Some(frames * unit * 120)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rtp::{build, parse};

    fn push(d: &mut Depacketizer, seq: u16, ts: u32, marker: bool, payload: &[u8]) -> Option<Frame> {
        let p = build(96, seq, ts, 1, marker, payload);
        d.push(&parse(&p).unwrap())
    }

    #[test]
    fn vp8_frames_are_joined_and_a_loss_waits_for_the_next_keyframe() {
        let mut d = Depacketizer::new(VideoCodec::Vp8);
        let key = [0x10u8, 0x00, 0, 0, 0x9d, 0x01, 0x2a, 0x80, 0x02, 0xe0, 0x01];
        // A keyframe in two packets (the second with an extended descriptor carrying a 15-bit picture id).
        assert!(push(&mut d, 1, 100, false, &key).is_none());
        let f = push(&mut d, 2, 100, true, &[0x80, 0x80, 0x81, 0x23, 0xaa]).unwrap();
        assert!(f.keyframe);
        assert_eq!(f.size, Some((640, 480)));
        assert_eq!(f.data.len(), 10 + 1);
        // A delta frame.
        assert!(!push(&mut d, 3, 200, true, &[0x10, 0x01, 0xbb]).unwrap().keyframe);
        // Packet 4 is lost: frame 300 is dropped, and delta 400 too; keyframe 500 resumes.
        assert!(push(&mut d, 5, 300, true, &[0x00, 0xcc]).is_none());
        assert!(push(&mut d, 6, 400, true, &[0x10, 0x01, 0xdd]).is_none());
        assert!(push(&mut d, 7, 500, true, &key).unwrap().keyframe);
        assert_eq!(d.dropped, 2);
    }

    #[test]
    fn h264_single_stap_a_and_fu_a_become_annex_b() {
        let mut d = Depacketizer::new(VideoCodec::H264);
        // STAP-A with SPS (7) and PPS (8), then an IDR slice (5) in two FU-A fragments.
        let stap = [24u8, 0, 2, 0x67, 0x42, 0, 1, 0x68];
        assert!(push(&mut d, 10, 9000, false, &stap).is_none());
        assert!(push(&mut d, 11, 9000, false, &[0x7c, 0x85, 1, 2]).is_none());
        let f = push(&mut d, 12, 9000, true, &[0x7c, 0x45, 3]).unwrap();
        assert!(f.keyframe);
        assert_eq!(f.data, [0, 0, 0, 1, 0x67, 0x42, 0, 0, 0, 1, 0x68, 0, 0, 0, 1, 0x65, 1, 2, 3]);
        let f = push(&mut d, 13, 12000, true, &[0x41, 9]).unwrap();
        assert!(!f.keyframe);
        // A FU-A continuation with no start is refused.
        assert!(push(&mut d, 14, 15000, true, &[0x7c, 0x05, 3]).is_none());
    }

    #[test]
    fn opus_packet_durations_follow_the_toc() {
        assert_eq!(opus_samples(&[19 << 3]), Some(960), "CELT 20 ms");
        assert_eq!(opus_samples(&[(1 << 3) | 1]), Some(1920), "SILK 20 ms, two frames");
        assert_eq!(opus_samples(&[(16 << 3) | 3, 4]), Some(480), "CELT 2.5 ms, four frames");
        assert_eq!(opus_samples(&[]), None);
    }
}
