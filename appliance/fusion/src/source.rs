//! Reading a track back: its closed segments in order, each record opened with the recording's key, and packets put
//! back in sequence order (the network may have swapped a few).

use std::collections::BTreeMap;
use std::path::Path;

use vbank_recorder::disk::segment_path;
use vbank_recorder::format::{DataKey, RecordKind, scan};
use vbank_recorder::manifest::Manifest;

use crate::FusionError;
use crate::rtp;
use crate::timeline::Unwrap;

/// Call `each(arrival_us, packet)` for every RTP packet of `track`, in the order stored.
pub fn for_each_packet(
    root: &Path,
    manifest: &Manifest,
    track: u32,
    key: &DataKey,
    mut each: impl FnMut(u64, &[u8]) -> Result<(), FusionError>,
) -> Result<(), FusionError> {
    let dir = root.join("tracks").join(track.to_string());
    for seg in manifest.segments.iter().filter(|s| s.track == track) {
        let path = segment_path(&dir, seg.segment, true);
        let bytes = std::fs::read(&path).map_err(|e| FusionError::Io(format!("{}: {e}", path.display())))?;
        let found = scan(&bytes).map_err(|e| FusionError::Recording(format!("{}: {e}", path.display())))?;
        for r in found.records.iter().filter(|r| r.kind == RecordKind::Rtp) {
            let packet = r.open(&found.header, key).map_err(|e| FusionError::Recording(e.to_string()))?;
            each(r.arrival_us, packet.expose())?;
        }
    }
    Ok(())
}

/// Call `each(packet)` for every RTP packet of `track` in sequence order (put back in order within 64 packets).
pub fn in_order(
    root: &Path,
    manifest: &Manifest,
    track: u32,
    key: &DataKey,
    mut each: impl FnMut(&[u8]) -> Result<(), FusionError>,
) -> Result<(), FusionError> {
    let mut reorder = Reorder::new(64);
    let mut due = Vec::new();
    for_each_packet(root, manifest, track, key, |arrival, packet| {
        reorder.push(arrival, packet, &mut due);
        due.drain(..).try_for_each(|(_, p)| each(&p))
    })?;
    reorder.flush(&mut due);
    due.drain(..).try_for_each(|(_, p)| each(&p))
}

/// Holds up to `window` packets and releases them in sequence order; a new SSRC flushes the old one's packets.
pub struct Reorder {
    window: usize,
    ssrc: Option<u32>,
    seq: Unwrap,
    held: BTreeMap<i64, (u64, Vec<u8>)>,
}

impl Reorder {
    /// A buffer of `window` packets.
    pub fn new(window: usize) -> Reorder {
        Reorder { window, ssrc: None, seq: Unwrap::default(), held: BTreeMap::new() }
    }

    /// Add a packet; `out` receives whatever is now due, in order.
    pub fn push(&mut self, arrival_us: u64, packet: &[u8], out: &mut Vec<(u64, Vec<u8>)>) {
        let Some(p) = rtp::parse(packet) else { return };
        if self.ssrc != Some(p.ssrc) {
            self.flush(out);
            self.ssrc = Some(p.ssrc);
            self.seq = Unwrap::default();
        }
        let ext = self.seq.next(u32::from(p.seq), 16);
        self.held.entry(ext).or_insert_with(|| (arrival_us, packet.to_vec()));
        while self.held.len() > self.window {
            if let Some((_, v)) = self.held.pop_first() {
                out.push(v);
            }
        }
    }

    /// Release everything held.
    pub fn flush(&mut self, out: &mut Vec<(u64, Vec<u8>)>) {
        out.extend(std::mem::take(&mut self.held).into_values());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn swapped_and_duplicated_packets_come_out_in_order_once() {
        let mut r = Reorder::new(3);
        let mut out = Vec::new();
        for seq in [65_534u16, 0, 65_535, 1, 1, 3, 2, 4, 5] {
            r.push(u64::from(seq), &rtp::build(96, seq, 0, 1, false, &[]), &mut out);
        }
        r.flush(&mut out);
        let seqs: Vec<u16> = out.iter().map(|(_, p)| rtp::parse(p).unwrap().seq).collect();
        assert_eq!(seqs, [65_534, 65_535, 0, 1, 2, 3, 4, 5]);
    }
}
