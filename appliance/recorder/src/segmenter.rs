//! One track's segment log as a sans-IO state machine: packets and time in; file actions out (open, append, sync,
//! close) and keyframe requests. [`crate::disk::TrackDir`] carries the actions out; tests read them directly.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::RecorderError;
use crate::format::{DataKey, RecordKind, SegmentHeader};

/// When segments are synced and rolled.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    /// A new segment starts with the first packet after this long (10 s by default).
    pub roll_every: Duration,
    /// Appended records reach the disk (fdatasync) at most this long after they were appended (1 s): what a power
    /// cut can lose.
    pub sync_every: Duration,
    /// Appended records reach the kernel at most this long after they were appended (200 ms): what a crash of the
    /// recorder can lose.
    pub flush_every: Duration,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            roll_every: Duration::from_secs(10),
            sync_every: Duration::from_secs(1),
            flush_every: Duration::from_millis(200),
        }
    }
}

/// What the IO edge must do, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Create segment `segment` (it must not exist yet) and write `header` to it.
    Open {
        /// The segment number.
        segment: u32,
        /// Its header bytes.
        header: Vec<u8>,
    },
    /// Append these bytes to the open segment (they may wait in a buffer until the next flush).
    Append(Vec<u8>),
    /// Hand buffered appends to the kernel.
    Flush,
    /// fdatasync the open segment.
    Sync,
    /// The open segment is complete (its End record was appended): sync it, rename it to closed, sync the directory.
    Close {
        /// The segment number.
        segment: u32,
    },
    /// Ask the track's sender for a keyframe: a segment must be decodable from its own start.
    RequestKeyframe,
}

struct Open {
    header: SegmentHeader,
    next_index: u32,
    opened_at: Instant,
    /// The first append not yet synced.
    unsynced_since: Option<Instant>,
    /// The first append not yet flushed.
    unflushed_since: Option<Instant>,
}

/// One track's log.
pub struct Segmenter {
    template: SegmentHeader,
    key: Arc<DataKey>,
    policy: Policy,
    open: Option<Open>,
    next_segment: u32,
    finished: bool,
    actions: VecDeque<Action>,
}

impl Segmenter {
    /// A log for the track described by `template` (its `segment` and `opened_us` are filled in per segment),
    /// sealing under `key`, numbering segments from `first_segment` (after a restart: one past the last on disk).
    pub fn new(template: SegmentHeader, key: Arc<DataKey>, policy: Policy, first_segment: u32) -> Segmenter {
        Segmenter {
            template,
            key,
            policy,
            open: None,
            next_segment: first_segment,
            finished: false,
            actions: VecDeque::new(),
        }
    }

    /// The track is now known as `label` (segments opened from now on say so).
    pub fn relabel(&mut self, label: &str) {
        self.template.label = label.to_string();
    }

    /// A packet arrived at `now` (monotonic) / `wall_us` (Unix microseconds).
    pub fn record(
        &mut self,
        now: Instant,
        wall_us: u64,
        kind: RecordKind,
        payload: &[u8],
    ) -> Result<(), RecorderError> {
        if self.finished {
            return Err(RecorderError::Format("the track's log is already closed".into()));
        }
        let roll =
            self.open.as_ref().is_some_and(|o| now.saturating_duration_since(o.opened_at) >= self.policy.roll_every);
        if roll {
            self.close(wall_us)?;
        }
        if self.open.is_none() {
            self.start(now, wall_us);
        }
        let o = self.open.as_mut().expect("a segment is open");
        let bytes = o.header.seal(&self.key, o.next_index, kind, wall_us, payload)?;
        o.next_index += 1;
        o.unsynced_since.get_or_insert(now);
        o.unflushed_since.get_or_insert(now);
        self.actions.push_back(Action::Append(bytes));
        Ok(())
    }

    /// Time passed: flush and sync what is due.
    pub fn timeout(&mut self, now: Instant) {
        let Some(o) = self.open.as_mut() else { return };
        let due =
            |since: Option<Instant>, every: Duration| since.is_some_and(|t| now.saturating_duration_since(t) >= every);
        if due(o.unsynced_since, self.policy.sync_every) {
            // A sync flushes first.
            o.unsynced_since = None;
            o.unflushed_since = None;
            self.actions.push_back(Action::Sync);
        } else if due(o.unflushed_since, self.policy.flush_every) {
            o.unflushed_since = None;
            self.actions.push_back(Action::Flush);
        }
    }

    /// When [`Segmenter::timeout`] next has work.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let o = self.open.as_ref()?;
        let sync = o.unsynced_since.map(|t| t + self.policy.sync_every);
        let flush = o.unflushed_since.map(|t| t + self.policy.flush_every);
        sync.into_iter().chain(flush).min()
    }

    /// The track ended: close the open segment. Nothing more can be recorded.
    pub fn finish(&mut self, wall_us: u64) -> Result<(), RecorderError> {
        if self.open.is_some() {
            self.close(wall_us)?;
        }
        self.finished = true;
        Ok(())
    }

    /// The next action, in order.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    fn start(&mut self, now: Instant, wall_us: u64) {
        let header = SegmentHeader { segment: self.next_segment, opened_us: wall_us, ..self.template.clone() };
        self.actions.push_back(Action::Open { segment: self.next_segment, header: header.encode() });
        self.actions.push_back(Action::RequestKeyframe);
        self.next_segment += 1;
        self.open = Some(Open { header, next_index: 0, opened_at: now, unsynced_since: None, unflushed_since: None });
    }

    fn close(&mut self, wall_us: u64) -> Result<(), RecorderError> {
        let o = self.open.take().expect("a segment is open");
        let end = o.header.seal(&self.key, o.next_index, RecordKind::End, wall_us, &[])?;
        self.actions.push_back(Action::Append(end));
        self.actions.push_back(Action::Close { segment: o.header.segment });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::scan;
    use crate::format::tests::{header, key};
    use vbank_crypto::aead::AeadAlg;

    fn drain(s: &mut Segmenter) -> Vec<Action> {
        std::iter::from_fn(|| s.poll_action()).collect()
    }

    #[test]
    fn segments_open_with_a_keyframe_request_flush_sync_each_second_and_roll_every_ten() {
        let t0 = Instant::now();
        let k = Arc::new(key(AeadAlg::Aes256Gcm));
        let mut s = Segmenter::new(header(0), k.clone(), Policy::default(), 7);
        let mut files: Vec<(u32, Vec<u8>, bool)> = Vec::new();
        let mut syncs = 0;
        let mut flushes = 0;
        let mut keyframes = 0;
        // 25 s of 50 packets a second.
        for i in 0..1250u64 {
            let now = t0 + Duration::from_millis(i * 20);
            s.timeout(now);
            s.record(now, 1_000_000 + i * 20_000, RecordKind::Rtp, &[1, 2, 3]).unwrap();
            assert!(s.poll_timeout().is_some_and(|t| t <= now + Duration::from_secs(1)));
            for a in drain(&mut s) {
                match a {
                    Action::Open { segment, header } => files.push((segment, header, false)),
                    Action::Append(b) => files.last_mut().unwrap().1.extend(b),
                    Action::Sync => syncs += 1,
                    Action::Flush => flushes += 1,
                    Action::Close { segment } => {
                        assert_eq!(files.last().unwrap().0, segment);
                        files.last_mut().unwrap().2 = true;
                    }
                    Action::RequestKeyframe => keyframes += 1,
                }
            }
        }
        s.finish(99).unwrap();
        for a in drain(&mut s) {
            match a {
                Action::Append(b) => files.last_mut().unwrap().1.extend(b),
                Action::Close { .. } => files.last_mut().unwrap().2 = true,
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(files.iter().map(|f| f.0).collect::<Vec<_>>(), vec![7, 8, 9]);
        assert_eq!(keyframes, 3);
        assert!((20..=25).contains(&syncs), "{syncs} syncs in 25 s");
        assert!((80..=110).contains(&flushes), "{flushes} flushes besides the syncs in 25 s");
        let mut packets = 0;
        for (n, bytes, closed) in &files {
            assert!(closed);
            let sc = scan(bytes).unwrap();
            assert!(sc.closed);
            assert_eq!(sc.header.segment, *n);
            packets += sc.records.iter().filter(|r| r.kind == RecordKind::Rtp).count();
            assert_eq!(sc.records[0].open(&sc.header, &k).unwrap().expose(), &[1, 2, 3]);
        }
        assert_eq!(packets, 1250);
        assert!(s.record(t0, 0, RecordKind::Rtp, &[]).is_err());
    }
}
