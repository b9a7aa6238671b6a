//! Reading an RTP packet (RFC 3550 §5.1) as the recorder stored it.

/// The parts of an RTP packet fusion uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpView<'a> {
    /// Payload type.
    pub pt: u8,
    /// Sequence number.
    pub seq: u16,
    /// Media timestamp.
    pub ts: u32,
    /// Synchronisation source.
    pub ssrc: u32,
    /// The marker bit (video: last packet of a frame).
    pub marker: bool,
    /// The payload, without padding.
    pub payload: &'a [u8],
}

/// Parse `b`; `None` when it is not an RTP version 2 packet or is cut short.
pub fn parse(b: &[u8]) -> Option<RtpView<'_>> {
    if b.len() < 12 || b[0] >> 6 != 2 {
        return None;
    }
    let csrcs = usize::from(b[0] & 0x0f);
    let mut at = 12 + 4 * csrcs;
    if b[0] & 0x10 != 0 {
        let words = usize::from(u16::from_be_bytes([*b.get(at + 2)?, *b.get(at + 3)?]));
        at += 4 + 4 * words;
    }
    let mut end = b.len();
    if b[0] & 0x20 != 0 {
        end = end.checked_sub(usize::from(*b.last()?))?;
    }
    Some(RtpView {
        pt: b[1] & 0x7f,
        seq: u16::from_be_bytes([b[2], b[3]]),
        ts: u32::from_be_bytes([b[4], b[5], b[6], b[7]]),
        ssrc: u32::from_be_bytes([b[8], b[9], b[10], b[11]]),
        marker: b[1] & 0x80 != 0,
        payload: b.get(at..end)?,
    })
}

/// Build a packet: the form the recorder stores (12-byte header, no CSRCs or extensions), and the synthetic clips.
pub fn build(pt: u8, seq: u16, ts: u32, ssrc: u32, marker: bool, payload: &[u8]) -> Vec<u8> {
    let mut b = Vec::with_capacity(12 + payload.len());
    b.push(0x80);
    b.push((u8::from(marker) << 7) | (pt & 0x7f));
    b.extend_from_slice(&seq.to_be_bytes());
    b.extend_from_slice(&ts.to_be_bytes());
    b.extend_from_slice(&ssrc.to_be_bytes());
    b.extend_from_slice(payload);
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_extensions_csrcs_and_padding_are_skipped() {
        let p = build(96, 7, 9000, 0xdead_beef, true, b"abc");
        let v = parse(&p).unwrap();
        assert_eq!((v.pt, v.seq, v.ts, v.ssrc, v.marker, v.payload), (96, 7, 9000, 0xdead_beef, true, &b"abc"[..]));

        let mut x = p.clone();
        x[0] = 0x80 | 0x10 | 0x20 | 1; // extension, padding, one CSRC
        let mut q = x[..12].to_vec();
        q.extend_from_slice(&[0, 0, 0, 1]); // CSRC
        q.extend_from_slice(&[0xbe, 0xde, 0, 1, 0x10, 0xff, 0, 0]); // one-word extension
        q.extend_from_slice(b"abc");
        q.extend_from_slice(&[0, 0, 3]); // three bytes of padding
        assert_eq!(parse(&q).unwrap().payload, b"abc");
        assert!(parse(&q[..14]).is_none());
        assert!(parse(&[0x40; 20]).is_none(), "version 1");
    }
}
