//! The two plain containers fusion hands to ffmpeg: IVF for video frames and Ogg (RFC 7845) for Opus packets. Both
//! carry each frame's capture time, so ffmpeg (with `-copyts`) places the tracks of a call against one clock.

use std::io::{self, Write};

/// IVF with a millisecond time base.
pub struct IvfWriter<W: Write> {
    out: W,
}

impl<W: Write> IvfWriter<W> {
    /// Write the 32-byte file header.
    pub fn new(mut out: W, fourcc: &[u8; 4], width: u16, height: u16) -> io::Result<IvfWriter<W>> {
        let mut h = Vec::with_capacity(32);
        h.extend_from_slice(b"DKIF");
        h.extend_from_slice(&0u16.to_le_bytes());
        h.extend_from_slice(&32u16.to_le_bytes());
        h.extend_from_slice(fourcc);
        h.extend_from_slice(&width.to_le_bytes());
        h.extend_from_slice(&height.to_le_bytes());
        h.extend_from_slice(&1000u32.to_le_bytes()); // time base denominator
        h.extend_from_slice(&1u32.to_le_bytes()); // numerator
        h.extend_from_slice(&0u32.to_le_bytes()); // frame count: unknown on a stream
        h.extend_from_slice(&0u32.to_le_bytes());
        out.write_all(&h)?;
        Ok(IvfWriter { out })
    }

    /// One frame at `pts_ms`.
    pub fn frame(&mut self, pts_ms: u64, data: &[u8]) -> io::Result<()> {
        self.out.write_all(&(data.len() as u32).to_le_bytes())?;
        self.out.write_all(&pts_ms.to_le_bytes())?;
        self.out.write_all(data)
    }

    /// Flush and return the sink.
    pub fn finish(mut self) -> io::Result<W> {
        self.out.flush()?;
        Ok(self.out)
    }
}

/// The Ogg page checksum: CRC-32 with polynomial 0x04C11DB7, not reflected, zero initial value (RFC 3533 §6).
fn ogg_crc(data: &[u8]) -> u32 {
    let mut crc = 0u32;
    for &b in data {
        crc ^= u32::from(b) << 24;
        for _ in 0..8 {
            crc = if crc & 0x8000_0000 != 0 { (crc << 1) ^ 0x04c1_1db7 } else { crc << 1 };
        }
    }
    crc
}

/// Ogg Opus, one packet per page; the granule position is the capture time in 48 kHz samples.
pub struct OggOpusWriter<W: Write> {
    out: W,
    serial: u32,
    page: u32,
    last_granule: u64,
}

impl<W: Write> OggOpusWriter<W> {
    /// Write the identification and comment headers.
    pub fn new(out: W, serial: u32, channels: u8) -> io::Result<OggOpusWriter<W>> {
        let mut w = OggOpusWriter { out, serial, page: 0, last_granule: 0 };
        let mut head = b"OpusHead".to_vec();
        head.extend_from_slice(&[1, channels]);
        head.extend_from_slice(&0u16.to_le_bytes()); // pre-skip: RTP Opus carries none
        head.extend_from_slice(&48_000u32.to_le_bytes());
        head.extend_from_slice(&0i16.to_le_bytes());
        head.push(0);
        w.page(&head, 0, 0x02)?;
        let vendor = b"vbank";
        let mut tags = b"OpusTags".to_vec();
        tags.extend_from_slice(&(vendor.len() as u32).to_le_bytes());
        tags.extend_from_slice(vendor);
        tags.extend_from_slice(&0u32.to_le_bytes());
        w.page(&tags, 0, 0)?;
        Ok(w)
    }

    fn page(&mut self, packet: &[u8], granule: u64, flags: u8) -> io::Result<()> {
        let mut lacing = vec![255u8; packet.len() / 255];
        lacing.push((packet.len() % 255) as u8);
        let mut p = Vec::with_capacity(27 + lacing.len() + packet.len());
        p.extend_from_slice(b"OggS");
        p.push(0);
        p.push(flags);
        p.extend_from_slice(&granule.to_le_bytes());
        p.extend_from_slice(&self.serial.to_le_bytes());
        p.extend_from_slice(&self.page.to_le_bytes());
        p.extend_from_slice(&[0; 4]);
        p.push(lacing.len() as u8);
        p.extend_from_slice(&lacing);
        p.extend_from_slice(packet);
        let crc = ogg_crc(&p);
        p[22..26].copy_from_slice(&crc.to_le_bytes());
        self.page += 1;
        self.out.write_all(&p)
    }

    /// A packet whose audio ends at `end_granule` (samples at 48 kHz from the recording's start). A packet that
    /// would end at or before the last one (a duplicate or a clock step back) is skipped: granules never go back.
    pub fn packet(&mut self, packet: &[u8], end_granule: u64) -> io::Result<bool> {
        if end_granule <= self.last_granule || packet.len() > 255 * 254 {
            return Ok(false);
        }
        self.last_granule = end_granule;
        self.page(packet, end_granule, 0)?;
        Ok(true)
    }

    /// Close the stream with an empty end-of-stream page and return the sink.
    pub fn finish(mut self) -> io::Result<W> {
        let g = self.last_granule;
        self.page(&[], g, 0x04)?;
        self.out.flush()?;
        Ok(self.out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ogg_checksum_matches_the_reference_value() {
        // Ogg's CRC is CRC-32/CKSUM without its final inversion: check value 0x765E7680 ^ 0xFFFFFFFF.
        assert_eq!(ogg_crc(b"123456789"), 0x89a1_897f);
    }

    #[test]
    fn ivf_and_ogg_layouts() {
        let mut w = IvfWriter::new(Vec::new(), b"VP80", 640, 480).unwrap();
        w.frame(40, &[1, 2, 3]).unwrap();
        let b = w.finish().unwrap();
        assert_eq!(&b[..4], b"DKIF");
        assert_eq!(b.len(), 32 + 12 + 3);
        assert_eq!(u64::from_le_bytes(b[36..44].try_into().unwrap()), 40);

        let mut o = OggOpusWriter::new(Vec::new(), 7, 2).unwrap();
        assert!(o.packet(&[0xf8; 300], 960).unwrap());
        assert!(!o.packet(&[0xf8; 10], 960).unwrap(), "granules never go back");
        let b = o.finish().unwrap();
        assert_eq!(&b[..4], b"OggS");
        assert_eq!(b[5], 0x02, "first page begins the stream");
        assert_eq!(b.windows(4).filter(|w| w == b"OggS").count(), 4, "head, tags, the packet, end of stream");
    }
}
