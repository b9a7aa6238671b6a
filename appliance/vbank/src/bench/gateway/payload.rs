//! The load generator's synthetic media: every audio packet and every video frame's first packet carries its leg
//! and unit number in the payload, behind what a player would parse (an Opus TOC byte, a VP8 frame header), so a
//! subscriber finds them whatever an SFU does to RTP headers, sequence numbers or payload descriptors.

/// `header`, then the leg and unit number (big-endian u32 each), padded to `len` bytes.
pub(super) fn tagged(header: &[u8], leg: u32, n: u32, len: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(len);
    v.extend_from_slice(header);
    v.extend_from_slice(&leg.to_be_bytes());
    v.extend_from_slice(&n.to_be_bytes());
    v.resize(len.max(v.len()), 0x5a);
    v
}

pub(super) fn read_tag(b: Option<&[u8]>) -> Option<(u32, u32)> {
    let b = b?;
    Some((u32::from_be_bytes(b.get(0..4)?.try_into().ok()?), u32::from_be_bytes(b.get(4..8)?.try_into().ok()?)))
}

/// A VP8 payload descriptor (start of partition 0) and frame header: 3 bytes, plus start code and 640×480 for a
/// keyframe (RFC 6386 §9.1).
pub(super) fn vp8_first_header(key: bool) -> Vec<u8> {
    let partition = 100u32;
    let tag = u32::from(!key) | (1 << 4) | (partition << 5);
    let mut h = vec![0x10, tag as u8, (tag >> 8) as u8, (tag >> 16) as u8];
    if key {
        h.extend_from_slice(&[0x9d, 0x01, 0x2a, 0x80, 0x02, 0xe0, 0x01]);
    }
    h
}

/// The tag in a VP8 packet that starts a frame.
pub(super) fn vp8_tag(p: &[u8]) -> Option<(u32, u32)> {
    let i = vp8_frame_header(p)?;
    let key = p.get(i)? & 1 == 0;
    read_tag(p.get(i + if key { 10 } else { 3 }..))
}

/// Whether a VP8 packet starts a keyframe.
pub(super) fn vp8_keyframe(p: &[u8]) -> bool {
    vp8_frame_header(p).and_then(|i| p.get(i)).is_some_and(|b| b & 1 == 0)
}

/// Where the frame header is in a VP8 packet that starts a frame, after whatever payload descriptor the SFU wrote
/// (RFC 7741 §4.2).
fn vp8_frame_header(p: &[u8]) -> Option<usize> {
    let b0 = *p.first()?;
    if b0 & 0x10 == 0 || b0 & 0x07 != 0 {
        return None;
    }
    let mut i = 1;
    if b0 & 0x80 != 0 {
        let x = *p.get(1)?;
        i = 2;
        if x & 0x80 != 0 {
            i += if p.get(i)? & 0x80 != 0 { 2 } else { 1 };
        }
        if x & 0x40 != 0 {
            i += 1;
        }
        if x & 0x30 != 0 {
            i += 1;
        }
    }
    Some(i)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frame_tag_is_found_behind_any_payload_descriptor() {
        for key in [true, false] {
            let ours = tagged(&vp8_first_header(key), 7, 1234, 1000);
            assert_eq!(vp8_tag(&ours), Some((7, 1234)));
            // As an SFU may rewrite it: X set, a 15-bit picture id, TL0PICIDX and TID/KEYIDX.
            let mut rewritten = vec![0x90, 0xE0, 0x81, 0x23, 0x05, 0x40];
            rewritten.extend_from_slice(&ours[1..]);
            assert_eq!(vp8_tag(&rewritten), Some((7, 1234)));
            assert_eq!((vp8_keyframe(&ours), vp8_keyframe(&rewritten)), (key, key));
        }
        let mut continuation = tagged(&vp8_first_header(false), 7, 1, 100);
        continuation[0] = 0x00;
        assert_eq!(vp8_tag(&continuation), None);
        assert!(!vp8_keyframe(&continuation));
        assert_eq!(vp8_tag(&[0x10, 0x01]), None);
    }

    #[test]
    fn an_audio_tag_round_trips() {
        let p = tagged(&[0xF8], 3, 99, 80);
        assert_eq!(p.len(), 80);
        assert_eq!(read_tag(p.get(1..)), Some((3, 99)));
        assert_eq!(read_tag(Some(&p[1..5])), None);
    }
}
