//! One recording on disk: `recording.json` (id, data key id and envelope, tracks), `tracks/<n>/` segment logs, and
//! at the end `manifest.json`. The recorder service drives a [`Recording`] with packets and time; after a crash,
//! [`Recording::resume`] repairs every track and lists the gap.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::RecorderError;
use crate::disk::{TrackDir, recover};
use crate::format::{DataKey, RecordKind, SegmentHeader};
use crate::manifest::{Gap, Manifest, Track};
use crate::segmenter::{Policy, Segmenter};

/// `recording.json`: what is needed to read the recording back, and nothing secret.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordingHeader {
    /// Always `vbank-recording/1`.
    pub format: String,
    /// The recording id.
    pub recording: String,
    /// The call (room) recorded.
    pub call: String,
    /// keyd's id of the data key.
    pub key_id: String,
    /// The data key wrapped by keyd (hex): opened through keyd, under audit, to play the recording back.
    pub key_envelope: String,
    /// The AEAD algorithm's name.
    pub alg: String,
    /// When recording started, Unix µs.
    pub started_us: u64,
    /// The tracks so far.
    pub tracks: Vec<Track>,
    /// Gaps noted so far (crash restarts).
    pub gaps: Vec<Gap>,
    /// The recording of the same call this one continues (the recorder dropped out of the call and was replaced).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub continues: Option<String>,
}

impl RecordingHeader {
    /// The header of a new recording `recording` of `call`, under the data key `key` (keyd's `key_envelope` of it),
    /// started at `started_us`: no tracks or gaps yet, continuing no other recording.
    pub fn new(recording: &str, call: &str, key: &DataKey, key_envelope: &str, started_us: u64) -> RecordingHeader {
        RecordingHeader {
            format: "vbank-recording/1".into(),
            recording: recording.into(),
            call: call.into(),
            key_id: key.id.clone(),
            key_envelope: key_envelope.into(),
            alg: key.alg.name().into(),
            started_us,
            tracks: vec![],
            gaps: vec![],
            continues: None,
        }
    }
}

/// Write `bytes` to `path` so that a crash leaves either the old or the new content: temp file, fsync, rename,
/// directory fsync.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), RecorderError> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).map_err(|e| RecorderError::io(&tmp, e))?;
    std::fs::File::open(&tmp).and_then(|f| f.sync_all()).map_err(|e| RecorderError::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| RecorderError::io(path, e))?;
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(|e| RecorderError::io(dir, e))
}

struct TrackLog {
    segmenter: Segmenter,
    dir: TrackDir,
}

/// A recording being written.
pub struct Recording {
    root: PathBuf,
    header: RecordingHeader,
    key: Arc<DataKey>,
    policy: Policy,
    logs: Vec<TrackLog>,
    /// Tracks resumed after a crash whose gap is still open: the gap's index, closed by the track's next packet.
    open_gaps: Vec<(u32, usize)>,
    /// Each track's last packet written by this process (Unix µs).
    last_us: Vec<Option<u64>>,
}

impl Recording {
    /// Start a recording in `root` (which must not exist yet).
    pub fn create(
        root: &Path,
        header: RecordingHeader,
        key: DataKey,
        policy: Policy,
    ) -> Result<Recording, RecorderError> {
        if root.exists() {
            return Err(RecorderError::Format(format!(
                "{} already exists: a recording is never overwritten",
                root.display()
            )));
        }
        std::fs::create_dir_all(root.join("tracks")).map_err(|e| RecorderError::io(root, e))?;
        write_atomically(&root.join("recording.json"), &serde_json::to_vec_pretty(&header).expect("serializes"))?;
        Ok(Recording {
            root: root.to_path_buf(),
            header,
            key: Arc::new(key),
            policy,
            logs: Vec::new(),
            open_gaps: Vec::new(),
            last_us: Vec::new(),
        })
    }

    /// Continue a recording after a crash: repair every track (cutting torn records), note a gap on each from its
    /// last kept packet to `now_us` — or, once the track's next packet is written, to that packet's arrival — and go
    /// on in new segments. `key` is the recording's data key, opened through keyd.
    pub fn resume(
        root: &Path,
        key: DataKey,
        policy: Policy,
        now_us: u64,
        reason: &str,
    ) -> Result<Recording, RecorderError> {
        let path = root.join("recording.json");
        let bytes = std::fs::read(&path).map_err(|e| RecorderError::io(&path, e))?;
        let mut header: RecordingHeader =
            serde_json::from_slice(&bytes).map_err(|e| RecorderError::Format(format!("{}: {e}", path.display())))?;
        if header.key_id != key.id {
            return Err(RecorderError::Format(format!(
                "{} is under key {}, not {}",
                path.display(),
                header.key_id,
                key.id
            )));
        }
        let key = Arc::new(key);
        let mut logs = Vec::new();
        let mut open_gaps = Vec::new();
        for t in header.tracks.clone() {
            let dir = root.join("tracks").join(t.track.to_string());
            let found = recover(&dir)?;
            let from = found.repaired.iter().filter_map(|r| r.last_arrival_us).max();
            if let Some(from_us) = from.filter(|_| t.media != "events") {
                open_gaps.push((t.track, header.gaps.len()));
                header.gaps.push(Gap { track: t.track, from_us, to_us: now_us, reason: reason.to_string() });
            }
            let template = segment_template(&header, &t);
            logs.push(TrackLog {
                segmenter: Segmenter::new(template, key.clone(), policy, found.next_segment),
                dir: TrackDir::create(&dir)?,
            });
        }
        write_atomically(&path, &serde_json::to_vec_pretty(&header).expect("serializes"))?;
        let last_us = vec![None; logs.len()];
        Ok(Recording { root: root.to_path_buf(), header, key, policy, logs, open_gaps, last_us })
    }

    /// The recorder lost the call while still running (its session dropped): note a gap on every media track from
    /// its last packet, closed by the track's next one, as [`Recording::resume`] does after a crash.
    pub fn interrupt(&mut self, now_us: u64, reason: &str) -> Result<(), RecorderError> {
        for t in &self.header.tracks {
            let (track, from) = (t.track, self.last_us.get(t.track as usize).copied().flatten());
            if let Some(from_us) = from.filter(|_| t.media != "events" && !self.open_gaps.iter().any(|g| g.0 == track))
            {
                self.open_gaps.push((track, self.header.gaps.len()));
                self.header.gaps.push(Gap { track, from_us, to_us: now_us, reason: reason.to_string() });
            }
        }
        write_atomically(
            &self.root.join("recording.json"),
            &serde_json::to_vec_pretty(&self.header).expect("serializes"),
        )
    }

    /// Where a resumed track's kept packets end (Unix µs), while its gap is open: what comes after it is missing.
    pub fn resumed_from(&self, track: u32) -> Option<u64> {
        let &(_, gap) = self.open_gaps.iter().find(|(t, _)| *t == track)?;
        Some(self.header.gaps[gap].from_us)
    }

    /// The header as it stands.
    pub fn header(&self) -> &RecordingHeader {
        &self.header
    }

    /// A new track (`label` such as `customer/camera`, `media` audio or video); returns its number.
    pub fn add_track(&mut self, label: &str, media: &str) -> Result<u32, RecorderError> {
        let track = Track {
            track: self.header.tracks.len() as u32,
            label: label.into(),
            media: media.into(),
            payloads: Default::default(),
        };
        let dir = TrackDir::create(&self.root.join("tracks").join(track.track.to_string()))?;
        let template = segment_template(&self.header, &track);
        self.logs.push(TrackLog { segmenter: Segmenter::new(template, self.key.clone(), self.policy, 0), dir });
        self.last_us.push(None);
        self.header.tracks.push(track.clone());
        write_atomically(
            &self.root.join("recording.json"),
            &serde_json::to_vec_pretty(&self.header).expect("serializes"),
        )?;
        Ok(track.track)
    }

    /// Note the codec of payload type `pt` on `track` (e.g. `VP8/90000`), once per payload type: fusion reads it.
    pub fn note_payload(&mut self, track: u32, pt: u8, codec: &str) -> Result<(), RecorderError> {
        let t = self
            .header
            .tracks
            .get_mut(track as usize)
            .ok_or_else(|| RecorderError::Format(format!("no track {track}")))?;
        if t.payloads.get(&pt).map(String::as_str) == Some(codec) {
            return Ok(());
        }
        t.payloads.insert(pt, codec.to_string());
        write_atomically(
            &self.root.join("recording.json"),
            &serde_json::to_vec_pretty(&self.header).expect("serializes"),
        )
    }

    /// Name `track` by what it carries (e.g. `customer/camera`, once the gateway says whose it is).
    pub fn relabel(&mut self, track: u32, label: &str) -> Result<(), RecorderError> {
        let (Some(t), Some(log)) = (self.header.tracks.get_mut(track as usize), self.logs.get_mut(track as usize))
        else {
            return Err(RecorderError::Format(format!("no track {track}")));
        };
        if t.label == label {
            return Ok(());
        }
        t.label = label.to_string();
        log.segmenter.relabel(label);
        write_atomically(
            &self.root.join("recording.json"),
            &serde_json::to_vec_pretty(&self.header).expect("serializes"),
        )
    }

    /// A call event (JSON), kept encrypted in the recording's `call/events` track like media, so the manifest's
    /// chain and seal cover it.
    pub fn event(&mut self, now: Instant, wall_us: u64, json: &[u8]) -> Result<(), RecorderError> {
        let track = match self.header.tracks.iter().find(|t| t.media == "events") {
            Some(t) => t.track,
            None => self.add_track("call/events", "events")?,
        };
        self.packet(track, now, wall_us, RecordKind::Event, json).map(|_| ())
    }

    /// Whether payload type `pt` of `track` has been noted.
    pub fn knows_payload(&self, track: u32, pt: u8) -> bool {
        self.header.tracks.get(track as usize).is_some_and(|t| t.payloads.contains_key(&pt))
    }

    /// A packet of `track`; true when the track's sender should be asked for a keyframe.
    pub fn packet(
        &mut self,
        track: u32,
        now: Instant,
        wall_us: u64,
        kind: RecordKind,
        payload: &[u8],
    ) -> Result<bool, RecorderError> {
        let log =
            self.logs.get_mut(track as usize).ok_or_else(|| RecorderError::Format(format!("no track {track}")))?;
        log.segmenter.record(now, wall_us, kind, payload)?;
        let keyframe = apply_all(log)?;
        self.last_us[track as usize] = Some(wall_us);
        if let Some(i) = self.open_gaps.iter().position(|(t, _)| *t == track) {
            let (_, gap) = self.open_gaps.swap_remove(i);
            let g = &mut self.header.gaps[gap];
            g.to_us = wall_us.max(g.from_us);
            write_atomically(
                &self.root.join("recording.json"),
                &serde_json::to_vec_pretty(&self.header).expect("serializes"),
            )?;
        }
        Ok(keyframe)
    }

    /// Time passed: sync what is due.
    pub fn tick(&mut self, now: Instant) -> Result<(), RecorderError> {
        for log in &mut self.logs {
            log.segmenter.timeout(now);
            apply_all(log)?;
        }
        Ok(())
    }

    /// When [`Recording::tick`] next has work.
    pub fn next_tick(&self) -> Option<Instant> {
        self.logs.iter().filter_map(|l| l.segmenter.poll_timeout()).min()
    }

    /// The call ended: close every track and write `manifest.json`; returns the manifest (for keyd to seal).
    pub fn finish(mut self, wall_us: u64) -> Result<Manifest, RecorderError> {
        // A resumed track that never came back is missing to the end.
        for (_, gap) in std::mem::take(&mut self.open_gaps) {
            let g = &mut self.header.gaps[gap];
            g.to_us = wall_us.max(g.from_us);
        }
        for log in &mut self.logs {
            log.segmenter.finish(wall_us)?;
            apply_all(log)?;
        }
        let h = &self.header;
        let manifest = Manifest::build(&self.root, &h.recording, &h.key_id, h.tracks.clone(), h.gaps.clone())?;
        write_atomically(&self.root.join("manifest.json"), &manifest.to_bytes())?;
        Ok(manifest)
    }
}

/// Close a recording whose recorder died and will not continue it (the call is over): repair every track without the
/// key, note the gap from each track's last kept packet to `now_us`, and write `manifest.json`.
pub fn close_after_crash(root: &Path, now_us: u64, reason: &str) -> Result<Manifest, RecorderError> {
    let path = root.join("recording.json");
    let bytes = std::fs::read(&path).map_err(|e| RecorderError::io(&path, e))?;
    let mut h: RecordingHeader =
        serde_json::from_slice(&bytes).map_err(|e| RecorderError::Format(format!("{}: {e}", path.display())))?;
    if root.join("manifest.json").exists() {
        return Err(RecorderError::Format(format!("{} is already closed (it has a manifest)", root.display())));
    }
    for t in &h.tracks {
        let dir = root.join("tracks").join(t.track.to_string());
        recover(&dir)?;
        // From the track's last kept packet, found on disk (not from what was repaired): a close that failed half-way
        // (a full disk refusing recording.json) and is tried again still lists the gap.
        let already = h.gaps.iter().any(|g| g.track == t.track && g.reason == reason);
        // Events are not a stream: the media tracks' gaps say when nothing was recorded.
        if let Some(from_us) = last_arrival(&dir)?
            && !already
            && t.media != "events"
        {
            h.gaps.push(Gap { track: t.track, from_us, to_us: now_us.max(from_us), reason: reason.to_string() });
        }
    }
    write_atomically(&path, &serde_json::to_vec_pretty(&h).expect("serializes"))?;
    let manifest = Manifest::build(root, &h.recording, &h.key_id, h.tracks.clone(), h.gaps.clone())?;
    write_atomically(&root.join("manifest.json"), &manifest.to_bytes())?;
    Ok(manifest)
}

/// The call events of a closed recording (its `events` track), each with its arrival time (Unix µs), in order.
pub fn read_events(root: &Path, manifest: &Manifest, key: &DataKey) -> Result<Vec<(u64, Vec<u8>)>, RecorderError> {
    let mut out = Vec::new();
    for t in manifest.tracks.iter().filter(|t| t.media == "events") {
        let dir = root.join("tracks").join(t.track.to_string());
        for seg in manifest.segments.iter().filter(|s| s.track == t.track) {
            let path = crate::disk::segment_path(&dir, seg.segment, true);
            let bytes = std::fs::read(&path).map_err(|e| RecorderError::io(&path, e))?;
            let found = crate::format::scan(&bytes)?;
            for r in found.records.iter().filter(|r| r.kind == RecordKind::Event) {
                out.push((r.arrival_us, r.open(&found.header, key)?.expose().to_vec()));
            }
        }
    }
    Ok(out)
}

/// Arrival of the last packet in a track's closed segments.
fn last_arrival(dir: &Path) -> Result<Option<u64>, RecorderError> {
    for n in crate::manifest::segments_in(dir)?.into_iter().rev() {
        let path = crate::disk::segment_path(dir, n, true);
        let bytes = std::fs::read(&path).map_err(|e| RecorderError::io(&path, e))?;
        let found = crate::format::scan(&bytes)?;
        if let Some(r) = found.records.iter().rev().find(|r| r.kind != RecordKind::End) {
            return Ok(Some(r.arrival_us));
        }
    }
    Ok(None)
}

fn segment_template(h: &RecordingHeader, t: &Track) -> SegmentHeader {
    SegmentHeader {
        format: "vbank-segment/1".into(),
        recording: h.recording.clone(),
        track: t.track,
        label: t.label.clone(),
        media: t.media.clone(),
        segment: 0,
        alg: h.alg.clone(),
        key_id: h.key_id.clone(),
        opened_us: 0,
    }
}

fn apply_all(log: &mut TrackLog) -> Result<bool, RecorderError> {
    let mut keyframe = false;
    while let Some(a) = log.segmenter.poll_action() {
        keyframe |= log.dir.apply(a)?;
    }
    Ok(keyframe)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use vbank_crypto::SecretBytes;
    use vbank_crypto::aead::AeadAlg;

    use super::*;

    fn key(bytes: &[u8]) -> DataKey {
        DataKey { id: "dek-7".into(), alg: AeadAlg::Aes256Gcm, key: SecretBytes::new(bytes.to_vec()) }
    }

    fn header() -> RecordingHeader {
        RecordingHeader::new("rec-9", "room-1", &key(&[0; 32]), "00", 0)
    }

    #[test]
    fn a_recording_resumed_after_a_crash_lists_the_gap_and_verifies() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("rec-9");
        let k = [9u8; 32];
        let mut r = Recording::create(&root, header(), key(&k), Policy::default()).unwrap();
        assert!(Recording::create(&root, header(), key(&k), Policy::default()).is_err());
        let audio = r.add_track("customer/microphone", "audio").unwrap();
        let video = r.add_track("customer/camera", "video").unwrap();
        let t0 = Instant::now();
        let mut keyframes = 0;
        for i in 0..150u64 {
            let now = t0 + Duration::from_millis(i * 20);
            r.packet(audio, now, i * 20_000, RecordKind::Rtp, &[1; 60]).unwrap();
            keyframes += usize::from(r.packet(video, now, i * 20_000, RecordKind::Rtp, &[2; 900]).unwrap());
            r.tick(now).unwrap();
        }
        assert_eq!(keyframes, 1, "one request as the video track's first segment opens");
        drop(r); // the process dies: segments stay open

        let mut r = Recording::resume(&root, key(&k), Policy::default(), 5_000_000, "recorder restarted").unwrap();
        assert_eq!(r.header().gaps.len(), 2);
        assert_eq!(r.header().gaps[0].from_us, 149 * 20_000);
        assert_eq!(r.resumed_from(audio), Some(149 * 20_000));
        // The audio goes on 20 ms after its last kept packet (from the gateway's backlog): its gap closes there.
        r.packet(audio, t0, 150 * 20_000, RecordKind::Rtp, &[1; 60]).unwrap();
        assert_eq!(r.resumed_from(audio), None);
        let m = r.finish(5_100_000).unwrap();
        assert_eq!(m.segments.len(), 3, "audio: repaired + new; video: repaired");
        assert_eq!(m.gaps.len(), 2);
        assert_eq!((m.gaps[0].from_us, m.gaps[0].to_us), (149 * 20_000, 150 * 20_000), "20 ms of audio missing");
        assert_eq!(m.gaps[1].to_us, 5_100_000, "the video never came back: its gap runs to the end");
        assert!(m.verify(&root).unwrap().is_empty());
        let on_disk: Manifest = serde_json::from_slice(&std::fs::read(root.join("manifest.json")).unwrap()).unwrap();
        assert_eq!(on_disk, m);

        let wrong = DataKey { id: "dek-8".into(), ..key(&k) };
        assert!(Recording::resume(&root, wrong, Policy::default(), 0, "x").is_err());
    }

    #[test]
    fn an_interrupted_recording_notes_a_gap_closed_by_the_next_packet() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("rec-9");
        let mut r = Recording::create(&root, header(), key(&[4; 32]), Policy::default()).unwrap();
        let mic = r.add_track("customer/microphone", "audio").unwrap();
        let idle = r.add_track("teller/camera", "video").unwrap();
        r.event(Instant::now(), 500, b"{}").unwrap();
        r.packet(mic, Instant::now(), 1_000, RecordKind::Rtp, &[0; 10]).unwrap();
        r.interrupt(9_000, "session lost").unwrap();
        assert_eq!(r.resumed_from(mic), Some(1_000));
        assert_eq!(r.resumed_from(idle), None, "a track that never had a packet has no gap");
        r.interrupt(9_500, "again").unwrap();
        assert_eq!(r.header().gaps.len(), 1, "one open gap per track");
        r.packet(mic, Instant::now(), 1_020, RecordKind::Rtp, &[0; 10]).unwrap();
        let m = r.finish(10_000).unwrap();
        assert_eq!((m.gaps[0].from_us, m.gaps[0].to_us, m.gaps[0].reason.as_str()), (1_000, 1_020, "session lost"));
        assert!(m.verify(&root).unwrap().is_empty());
    }

    #[test]
    fn a_recording_whose_recorder_died_is_closed_without_the_key() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("rec-9");
        let mut r = Recording::create(&root, header(), key(&[3; 32]), Policy::default()).unwrap();
        let t = r.add_track("teller/microphone", "audio").unwrap();
        for i in 0..10u64 {
            r.packet(t, Instant::now(), 1_000 + i, RecordKind::Rtp, &[0; 10]).unwrap();
        }
        drop(r);
        let m = close_after_crash(&root, 9_000_000, "recorder crashed; the call ended").unwrap();
        assert_eq!(m.gaps[0].from_us, 1_009);
        assert_eq!(m.segments[0].records, 10);
        assert!(m.verify(&root).unwrap().is_empty());
        assert!(close_after_crash(&root, 0, "again").unwrap_err().to_string().contains("already closed"));
    }
}
