//! The SFrame header (RFC 9605 §4.3): one config byte `X KKK Y CCC`, then the key id and the counter, each in its
//! shortest big-endian form. A value under 8 sits in the config byte itself (`X` or `Y` clear); otherwise `X`/`Y`
//! is set and the three bits say how many bytes follow, less one.

use crate::SframeError;

/// A parsed header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Which key encrypted the frame.
    pub kid: u64,
    /// The sender's frame counter under that key.
    pub ctr: u64,
}

fn min_len(v: u64) -> usize {
    (8 - (v.leading_zeros() as usize) / 8).max(1)
}

impl Header {
    /// The header's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![0u8];
        let put = |v: u64, shift: u8, out: &mut Vec<u8>| -> u8 {
            if v < 8 {
                (v as u8) << shift
            } else {
                let n = min_len(v);
                out.extend_from_slice(&v.to_be_bytes()[8 - n..]);
                (0x8 | (n as u8 - 1)) << shift
            }
        };
        let k = put(self.kid, 4, &mut out);
        let c = put(self.ctr, 0, &mut out);
        out[0] = k | c;
        out
    }

    /// Parse a header at the start of `b`: the header and its length.
    pub fn decode(b: &[u8]) -> Result<(Header, usize), SframeError> {
        let config = *b.first().ok_or(SframeError::Malformed("no header"))?;
        let mut at = 1;
        let mut take = |nibble: u8| -> Result<u64, SframeError> {
            if nibble & 0x8 == 0 {
                return Ok(u64::from(nibble));
            }
            let n = usize::from(nibble & 0x7) + 1;
            let bytes = b.get(at..at + n).ok_or(SframeError::Malformed("header cut short"))?;
            at += n;
            Ok(bytes.iter().fold(0u64, |v, x| (v << 8) | u64::from(*x)))
        };
        let kid = take(config >> 4)?;
        let ctr = take(config & 0xf)?;
        Ok((Header { kid, ctr }, at))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_and_extended_forms_round_trip() {
        for (kid, ctr, hex) in [
            (0u64, 0u64, "00"),
            (7, 7, "77"),
            (8, 0, "8008"),
            (0x123, 0x4567, "9901234567"),
            (u64::MAX, u64::MAX, "ffffffffffffffffffffffffffffffffff"),
        ] {
            let h = Header { kid, ctr };
            let b = h.encode();
            let got: String = b.iter().map(|x| format!("{x:02x}")).collect();
            assert_eq!(got, hex, "{kid:#x} {ctr:#x}");
            assert_eq!(Header::decode(&b).unwrap(), (h, b.len()));
        }
        assert!(Header::decode(&[]).is_err());
        assert!(Header::decode(&[0x99, 0x01]).is_err(), "cut short");
    }
}
