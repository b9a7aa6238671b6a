//! The evidence manifest, `vbank-manifest/1`: every segment of every track with its SM3 hash, linked in one hash
//! chain, and every gap with its reason. Its canonical bytes ([`Manifest::to_bytes`]) are what keyd seals (SM2, user
//! ID `vbank-evidence`); an auditor checks the seal with OpenSSL and the chain with [`Manifest::verify`] or by hand:
//!
//! ```text
//! chain_0 = SM3("vbank-manifest/1" ‖ recording)
//! chain_i = SM3(chain_{i-1} ‖ sm3(segment file i) ‖ track u32 ‖ segment u32)      (big-endian)
//! ```

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use vbank_crypto::hash::sm3;
use vbank_crypto::to_hex;

use crate::RecorderError;
use crate::disk::segment_path;
use crate::format::scan;

/// One segment as the manifest lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SegmentEntry {
    /// Track number.
    pub track: u32,
    /// Segment number within the track.
    pub segment: u32,
    /// File size in bytes.
    pub bytes: u64,
    /// Records (packets) in it, the End record not counted.
    pub records: u32,
    /// Arrival of its first and last packet, Unix µs.
    pub first_us: Option<u64>,
    /// See `first_us`.
    pub last_us: Option<u64>,
    /// Whether it ended with its End record (false: cut short by a crash, and repaired).
    pub closed: bool,
    /// SM3 of the file, hex.
    pub sm3: String,
    /// The hash chain after this segment, hex.
    pub chain: String,
}

/// A stretch of a track with no media, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Gap {
    /// Track number.
    pub track: u32,
    /// From (Unix µs).
    pub from_us: u64,
    /// To (Unix µs).
    pub to_us: u64,
    /// Why, e.g. `recorder restarted after a crash`.
    pub reason: String,
}

/// A track of the recording.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Track {
    /// Its number (the directory name under `tracks/`).
    pub track: u32,
    /// What it is, e.g. `customer/camera`.
    pub label: String,
    /// `audio` or `video`.
    pub media: String,
    /// The RTP payload types seen on it and their codecs as negotiated, e.g. `96 → VP8/90000`, `111 → opus/48000/2`:
    /// what fusion needs to decode the track.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub payloads: BTreeMap<u8, String>,
}

/// The manifest of one recording.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Always `vbank-manifest/1`.
    pub format: String,
    /// The recording id.
    pub recording: String,
    /// keyd's id of the recording's data key.
    pub key_id: String,
    /// The tracks.
    pub tracks: Vec<Track>,
    /// Every segment, by track then number.
    pub segments: Vec<SegmentEntry>,
    /// Every gap.
    pub gaps: Vec<Gap>,
    /// The chain's last value, hex.
    pub chain_head: String,
}

fn chain_start(recording: &str) -> [u8; 32] {
    sm3(&[b"vbank-manifest/1".as_slice(), recording.as_bytes()].concat())
}

fn chain_next(prev: &[u8; 32], file_sm3: &[u8; 32], track: u32, segment: u32) -> [u8; 32] {
    let mut m = Vec::with_capacity(72);
    m.extend_from_slice(prev);
    m.extend_from_slice(file_sm3);
    m.extend_from_slice(&track.to_be_bytes());
    m.extend_from_slice(&segment.to_be_bytes());
    sm3(&m)
}

/// Segment numbers of the closed segments in a track directory, in order.
pub(crate) fn segments_in(dir: &Path) -> Result<Vec<u32>, RecorderError> {
    let mut found = Vec::new();
    for e in std::fs::read_dir(dir).map_err(|e| RecorderError::io(dir, e))? {
        let path = e.map_err(|e| RecorderError::io(dir, e))?.path();
        match (path.extension().and_then(|s| s.to_str()), path.file_stem().and_then(|s| s.to_str())) {
            (Some("seg"), Some(stem)) => found.push(
                stem.parse::<u32>()
                    .map_err(|_| RecorderError::Format(format!("{}: not a segment name", path.display())))?,
            ),
            (Some("open"), _) => {
                return Err(RecorderError::Format(format!(
                    "{} is still open: recover the track (or finish the recording) first",
                    path.display()
                )));
            }
            _ => {}
        }
    }
    found.sort_unstable();
    Ok(found)
}

impl Manifest {
    /// List `root/tracks/<n>/` for each of `tracks`, hash every segment and build the chain.
    pub fn build(
        root: &Path,
        recording: &str,
        key_id: &str,
        tracks: Vec<Track>,
        gaps: Vec<Gap>,
    ) -> Result<Manifest, RecorderError> {
        let mut chain = chain_start(recording);
        let mut segments = Vec::new();
        for t in &tracks {
            let dir = root.join("tracks").join(t.track.to_string());
            for n in segments_in(&dir)? {
                let path = segment_path(&dir, n, true);
                let bytes = std::fs::read(&path).map_err(|e| RecorderError::io(&path, e))?;
                let found = scan(&bytes).map_err(|e| RecorderError::Format(format!("{}: {e}", path.display())))?;
                if found.header.recording != recording || found.header.track != t.track || found.header.segment != n {
                    return Err(RecorderError::Format(format!("{} belongs to another place", path.display())));
                }
                let file_sm3 = sm3(&bytes);
                chain = chain_next(&chain, &file_sm3, t.track, n);
                let packets: Vec<_> =
                    found.records.iter().filter(|r| r.kind != crate::format::RecordKind::End).collect();
                segments.push(SegmentEntry {
                    track: t.track,
                    segment: n,
                    bytes: bytes.len() as u64,
                    records: packets.len() as u32,
                    first_us: packets.first().map(|r| r.arrival_us),
                    last_us: packets.last().map(|r| r.arrival_us),
                    closed: found.closed,
                    sm3: to_hex(&file_sm3),
                    chain: to_hex(&chain),
                });
            }
        }
        Ok(Manifest {
            format: "vbank-manifest/1".into(),
            recording: recording.into(),
            key_id: key_id.into(),
            tracks,
            segments,
            gaps,
            chain_head: to_hex(&chain),
        })
    }

    /// The canonical bytes that are sealed.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).expect("a manifest always serializes")
    }

    /// Check the files under `root` against this manifest: every listed segment present with its hash, no segment
    /// missing from the list, and the chain recomputed. Returns every problem found (empty: it verifies).
    pub fn verify(&self, root: &Path) -> Result<Vec<String>, RecorderError> {
        let mut problems = Vec::new();
        let mut chain = chain_start(&self.recording);
        for e in &self.segments {
            let path = segment_path(&root.join("tracks").join(e.track.to_string()), e.segment, true);
            match std::fs::read(&path) {
                Ok(bytes) => {
                    let file_sm3 = sm3(&bytes);
                    if to_hex(&file_sm3) != e.sm3 {
                        problems
                            .push(format!("track {} segment {}: content changed (SM3 mismatch)", e.track, e.segment));
                    }
                    chain = chain_next(&chain, &file_sm3, e.track, e.segment);
                }
                Err(err) => {
                    problems.push(format!("track {} segment {}: {err}", e.track, e.segment));
                    chain = [0; 32];
                }
            }
            if to_hex(&chain) != e.chain {
                problems.push(format!("track {} segment {}: hash chain broken", e.track, e.segment));
            }
        }
        if to_hex(&chain) != self.chain_head {
            problems.push("the chain head does not match".into());
        }
        for t in &self.tracks {
            for n in segments_in(&root.join("tracks").join(t.track.to_string()))? {
                if !self.segments.iter().any(|e| e.track == t.track && e.segment == n) {
                    problems.push(format!("track {} segment {n}: on disk but not in the manifest", t.track));
                }
            }
        }
        Ok(problems)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use vbank_crypto::aead::AeadAlg;

    use super::*;
    use crate::disk::{TrackDir, recover};
    use crate::format::RecordKind;
    use crate::format::tests::{header, key};
    use crate::segmenter::{Policy, Segmenter};

    fn record(root: &Path, track: u32, seconds: u64, finish: bool) {
        let k = Arc::new(key(AeadAlg::Aes256Gcm));
        let template = crate::format::SegmentHeader { track, recording: "rec-1".into(), ..header(0) };
        let policy = Policy { roll_every: Duration::from_secs(2), ..Policy::default() };
        let mut s = Segmenter::new(template, k, policy, 0);
        let mut d = TrackDir::create(&root.join("tracks").join(track.to_string())).unwrap();
        let t0 = Instant::now();
        for i in 0..seconds * 10 {
            s.record(t0 + Duration::from_millis(i * 100), i * 100_000, RecordKind::Rtp, &[1; 20]).unwrap();
            while let Some(a) = s.poll_action() {
                d.apply(a).unwrap();
            }
        }
        if finish {
            s.finish(seconds * 1_000_000).unwrap();
            while let Some(a) = s.poll_action() {
                d.apply(a).unwrap();
            }
        }
    }

    fn tracks() -> Vec<Track> {
        vec![
            Track { track: 0, label: "customer/microphone".into(), media: "audio".into(), payloads: BTreeMap::new() },
            Track { track: 1, label: "customer/camera".into(), media: "video".into(), payloads: BTreeMap::new() },
        ]
    }

    #[test]
    fn a_manifest_verifies_and_names_any_change() {
        let tmp = tempfile::tempdir().unwrap();
        record(tmp.path(), 0, 5, true);
        record(tmp.path(), 1, 5, true);
        let m = Manifest::build(tmp.path(), "rec-1", "dek-test", tracks(), vec![]).unwrap();
        assert_eq!(m.segments.len(), 6);
        assert!(m.segments.iter().all(|s| s.closed));
        assert_eq!(m.segments.iter().map(|s| s.records).sum::<u32>(), 100);
        assert_eq!(m.verify(tmp.path()).unwrap(), Vec::<String>::new());
        let parsed: Manifest = serde_json::from_slice(&m.to_bytes()).unwrap();
        assert_eq!(parsed, m);

        // One byte of one segment changed.
        let p = segment_path(&tmp.path().join("tracks/1"), 1, true);
        let mut b = std::fs::read(&p).unwrap();
        let last = b.len() - 1;
        b[last] ^= 1;
        std::fs::write(&p, b).unwrap();
        let problems = m.verify(tmp.path()).unwrap();
        assert!(problems.iter().any(|p| p.contains("track 1 segment 1: content changed")), "{problems:?}");
        assert!(problems.iter().any(|p| p.contains("chain")), "{problems:?}");

        // A segment removed, and an extra one slipped in.
        std::fs::remove_file(segment_path(&tmp.path().join("tracks/0"), 2, true)).unwrap();
        std::fs::copy(
            segment_path(&tmp.path().join("tracks/0"), 0, true),
            segment_path(&tmp.path().join("tracks/0"), 9, true),
        )
        .unwrap();
        let problems = m.verify(tmp.path()).unwrap();
        assert!(problems.iter().any(|p| p.starts_with("track 0 segment 2:")), "{problems:?}");
        assert!(problems.iter().any(|p| p.contains("segment 9: on disk but not in the manifest")), "{problems:?}");
    }

    #[test]
    fn a_crashed_track_is_listed_with_its_repaired_segment_and_the_gap() {
        let tmp = tempfile::tempdir().unwrap();
        record(tmp.path(), 0, 3, false);
        let dir = tmp.path().join("tracks/0");
        assert!(
            Manifest::build(tmp.path(), "rec-1", "k", tracks()[..1].to_vec(), vec![])
                .unwrap_err()
                .to_string()
                .contains("still open")
        );
        let r = recover(&dir).unwrap();
        let gap = Gap {
            track: 0,
            from_us: r.repaired[0].last_arrival_us.unwrap(),
            to_us: 3_500_000,
            reason: "recorder restarted after a crash".into(),
        };
        let m = Manifest::build(tmp.path(), "rec-1", "k", tracks()[..1].to_vec(), vec![gap]).unwrap();
        assert_eq!(m.segments.iter().filter(|s| !s.closed).count(), 1);
        assert_eq!(m.gaps[0].from_us, 2_900_000);
        assert!(m.verify(tmp.path()).unwrap().is_empty());
    }
}
