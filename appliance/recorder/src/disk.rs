//! The filesystem edge of a track's log: one directory per track, `NNNNNN.open` while a segment is written and
//! `NNNNNN.seg` once it is closed. A close is fdatasync, rename, fsync of the directory, so a closed name always means
//! a complete file. [`recover`] repairs a directory left by a crash.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::RecorderError;
use crate::format::scan;
use crate::segmenter::Action;

/// The path of segment `n` in `dir`, open (being written) or closed.
pub fn segment_path(dir: &Path, n: u32, closed: bool) -> PathBuf {
    dir.join(format!("{n:06}.{}", if closed { "seg" } else { "open" }))
}

fn sync_dir(dir: &Path) -> Result<(), RecorderError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(|e| RecorderError::io(dir, e))
}

/// A track's directory and its open segment. Appends are buffered in memory until the segmenter's next flush (200
/// ms by default) or 64 KiB, so a packet costs no system call; a crash loses at most that much, and recovery cuts
/// the file back to its last whole record.
pub struct TrackDir {
    dir: PathBuf,
    open: Option<(u32, BufWriter<File>)>,
}

const BUFFER: usize = 64 * 1024;

impl TrackDir {
    /// Use (and create) `dir`.
    pub fn create(dir: &Path) -> Result<TrackDir, RecorderError> {
        std::fs::create_dir_all(dir).map_err(|e| RecorderError::io(dir, e))?;
        Ok(TrackDir { dir: dir.to_path_buf(), open: None })
    }

    /// Carry out one action; true when it asks for a keyframe (the caller forwards that to the sender).
    pub fn apply(&mut self, action: Action) -> Result<bool, RecorderError> {
        match action {
            Action::Open { segment, header } => {
                let path = segment_path(&self.dir, segment, false);
                let mut f = OpenOptions::new()
                    .append(true)
                    .create_new(true)
                    .open(&path)
                    .map_err(|e| RecorderError::io(&path, e))?;
                f.write_all(&header).map_err(|e| RecorderError::io(&path, e))?;
                sync_dir(&self.dir)?;
                self.open = Some((segment, BufWriter::with_capacity(BUFFER, f)));
            }
            Action::Append(bytes) => {
                let (n, f) =
                    self.open.as_mut().ok_or_else(|| RecorderError::Format("append with no open segment".into()))?;
                f.write_all(&bytes).map_err(|e| RecorderError::io(&segment_path(&self.dir, *n, false), e))?;
            }
            Action::Flush => {
                if let Some((n, f)) = &mut self.open {
                    f.flush().map_err(|e| RecorderError::io(&segment_path(&self.dir, *n, false), e))?;
                }
            }
            Action::Sync => {
                if let Some((n, f)) = &mut self.open {
                    let path = segment_path(&self.dir, *n, false);
                    f.flush().map_err(|e| RecorderError::io(&path, e))?;
                    f.get_ref().sync_data().map_err(|e| RecorderError::io(&path, e))?;
                }
            }
            Action::Close { segment } => {
                let (n, f) =
                    self.open.take().ok_or_else(|| RecorderError::Format("close with no open segment".into()))?;
                debug_assert_eq!(n, segment);
                let open = segment_path(&self.dir, n, false);
                let f = f.into_inner().map_err(|e| RecorderError::io(&open, e.into_error()))?;
                f.sync_data().map_err(|e| RecorderError::io(&open, e))?;
                let closed = segment_path(&self.dir, n, true);
                std::fs::rename(&open, &closed).map_err(|e| RecorderError::io(&closed, e))?;
                sync_dir(&self.dir)?;
            }
            Action::RequestKeyframe => return Ok(true),
        }
        Ok(false)
    }
}

/// A segment that a crash left open, as [`recover`] found and repaired it.
#[derive(Debug, Clone, PartialEq)]
pub struct Repaired {
    /// The segment number.
    pub segment: u32,
    /// Records kept.
    pub records: usize,
    /// Bytes cut off its end (a record torn by the crash).
    pub cut_bytes: u64,
    /// Arrival time of the last record kept (Unix µs): the recording's gap starts here.
    pub last_arrival_us: Option<u64>,
}

/// What [`recover`] found in a track directory.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Recovery {
    /// The number the next segment must take (one past every segment on disk, so no nonce repeats).
    pub next_segment: u32,
    /// Segments left open by a crash, now cut back to their last whole record and closed.
    pub repaired: Vec<Repaired>,
}

/// Make a track directory consistent after a crash: every `.open` segment is cut back to its last whole record
/// (CRC-checked; no key needed), synced, and renamed to `.seg`; one whose header never reached the disk is removed.
pub fn recover(dir: &Path) -> Result<Recovery, RecorderError> {
    let mut out = Recovery::default();
    let entries = std::fs::read_dir(dir).map_err(|e| RecorderError::io(dir, e))?;
    let mut open = Vec::new();
    for e in entries {
        let path = e.map_err(|e| RecorderError::io(dir, e))?.path();
        let (Some(stem), Some(ext)) =
            (path.file_stem().and_then(|s| s.to_str()), path.extension().and_then(|s| s.to_str()))
        else {
            continue;
        };
        let Ok(n) = stem.parse::<u32>() else { continue };
        out.next_segment = out.next_segment.max(n + 1);
        if ext == "open" {
            open.push((n, path));
        }
    }
    open.sort();
    for (n, path) in open {
        let bytes = std::fs::read(&path).map_err(|e| RecorderError::io(&path, e))?;
        let Ok(found) = scan(&bytes) else {
            // Created, but the header never made it to disk whole: there is nothing to keep.
            std::fs::remove_file(&path).map_err(|e| RecorderError::io(&path, e))?;
            out.repaired.push(Repaired {
                segment: n,
                records: 0,
                cut_bytes: bytes.len() as u64,
                last_arrival_us: None,
            });
            continue;
        };
        let f = OpenOptions::new().write(true).open(&path).map_err(|e| RecorderError::io(&path, e))?;
        f.set_len(found.valid_len as u64).map_err(|e| RecorderError::io(&path, e))?;
        f.sync_all().map_err(|e| RecorderError::io(&path, e))?;
        let closed = segment_path(dir, n, true);
        std::fs::rename(&path, &closed).map_err(|e| RecorderError::io(&closed, e))?;
        log::warn!("recovered segment {} after a crash: {} records kept", closed.display(), found.records.len());
        out.repaired.push(Repaired {
            segment: n,
            records: found.records.len(),
            cut_bytes: (bytes.len() - found.valid_len) as u64,
            last_arrival_us: found.records.last().map(|r| r.arrival_us),
        });
    }
    sync_dir(dir)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use vbank_crypto::aead::AeadAlg;

    use super::*;
    use crate::format::tests::{header, key};
    use crate::format::{RecordKind, scan};
    use crate::segmenter::{Policy, Segmenter};

    fn run(s: &mut Segmenter, d: &mut TrackDir) -> usize {
        let mut keyframes = 0;
        while let Some(a) = s.poll_action() {
            keyframes += usize::from(d.apply(a).unwrap());
        }
        keyframes
    }

    #[test]
    fn a_crash_mid_segment_loses_only_the_torn_record_and_numbering_continues() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("track-2");
        let k = Arc::new(key(AeadAlg::Aes256Gcm));
        let policy = Policy { roll_every: Duration::from_secs(10), ..Policy::default() };
        let mut s = Segmenter::new(header(0), k.clone(), policy, 0);
        let mut d = TrackDir::create(&dir).unwrap();
        let t0 = Instant::now();
        let mut keyframes = 0;
        for i in 0..600u64 {
            let now = t0 + Duration::from_millis(i * 20);
            s.timeout(now);
            s.record(now, 1_000_000 + i * 20_000, RecordKind::Rtp, &[7; 100]).unwrap();
            keyframes += run(&mut s, &mut d);
        }
        assert_eq!(keyframes, 2);
        // The process dies here, in the middle of writing a record: half of one is on disk.
        drop(d);
        let open = segment_path(&dir, 1, false);
        let whole = std::fs::read(&open).unwrap();
        let mut torn = whole.clone();
        torn.extend_from_slice(&header(1).seal(&k, 999, RecordKind::Rtp, 5, &[1; 100]).unwrap()[..60]);
        std::fs::write(&open, &torn).unwrap();

        let r = recover(&dir).unwrap();
        assert_eq!(r.next_segment, 2);
        assert_eq!(r.repaired.len(), 1);
        assert_eq!(r.repaired[0].records, 100, "records 500..600 went to segment 1");
        assert_eq!(r.repaired[0].cut_bytes, 60);
        assert_eq!(r.repaired[0].last_arrival_us, Some(1_000_000 + 599 * 20_000));
        assert!(!open.exists());
        let repaired = std::fs::read(segment_path(&dir, 1, true)).unwrap();
        assert_eq!(repaired, whole);
        let sc = scan(&repaired).unwrap();
        assert!(!sc.closed, "a repaired segment has no End record: the manifest lists the gap after it");
        assert!(sc.records.iter().all(|rec| rec.open(&sc.header, &k).is_ok()));
        assert!(scan(&std::fs::read(segment_path(&dir, 0, true)).unwrap()).unwrap().closed);

        // Recording resumes in a new segment; recovering again changes nothing.
        let mut s = Segmenter::new(header(0), k, policy, r.next_segment);
        let mut d = TrackDir::create(&dir).unwrap();
        s.record(t0, 2_000_000_000_000, RecordKind::Rtp, &[1]).unwrap();
        s.finish(2_000_000_000_001).unwrap();
        run(&mut s, &mut d);
        assert!(segment_path(&dir, 2, true).exists());
        assert_eq!(recover(&dir).unwrap(), Recovery { next_segment: 3, repaired: vec![] });
    }

    #[test]
    fn a_segment_whose_header_never_landed_is_removed() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(segment_path(tmp.path(), 4, false), &header(4).encode()[..10]).unwrap();
        let r = recover(tmp.path()).unwrap();
        assert_eq!(r.next_segment, 5);
        assert_eq!(r.repaired[0].records, 0);
        assert!(std::fs::read_dir(tmp.path()).unwrap().next().is_none());
    }

    #[test]
    fn an_existing_segment_is_never_overwritten() {
        let tmp = tempfile::tempdir().unwrap();
        let mut d = TrackDir::create(tmp.path()).unwrap();
        d.apply(Action::Open { segment: 0, header: header(0).encode() }).unwrap();
        let mut d2 = TrackDir::create(tmp.path()).unwrap();
        let e = d2.apply(Action::Open { segment: 0, header: header(0).encode() }).unwrap_err();
        assert!(e.to_string().contains("000000.open"), "{e}");
    }
}
