//! Capture time for RTP timestamps. Each sender stamps its media with its own clock; the recorder stamps each packet
//! with its arrival. The capture time of timestamp `ts` is `ts` in µs plus the stream's offset, where the offset is
//! the smallest `arrival − ts` seen on that stream: the packet that met the least queueing. Audio and video from one
//! sender share their path, so this keeps them in sync to within the difference of their best transit times, with
//! no dependence on when fusion runs or how late packets were.

use std::collections::HashMap;

/// Unwraps 32-bit RTP timestamps (and 16-bit sequence numbers) into a monotonic 64-bit count.
#[derive(Debug, Default, Clone)]
pub struct Unwrap {
    last: Option<i64>,
}

impl Unwrap {
    /// The extended value of `v`, taken as the one nearest the previous value (`bits` wide: 16 or 32).
    pub fn next(&mut self, v: u32, bits: u32) -> i64 {
        let ext = match self.last {
            None => i64::from(v),
            Some(last) => {
                let modulus = 1i64 << bits;
                let diff = (i64::from(v) - last).rem_euclid(modulus);
                if diff >= modulus / 2 { last + diff - modulus } else { last + diff }
            }
        };
        self.last = Some(ext);
        ext
    }
}

#[derive(Debug, Clone)]
struct Stream {
    offset_us: i64,
    first_us: u64,
    last_us: u64,
    unwrap: Unwrap,
}

/// The capture clocks of one track's streams (one per SSRC: a rejoin starts a new one).
#[derive(Debug, Clone)]
pub struct Timeline {
    rate: u32,
    streams: HashMap<u32, Stream>,
}

impl Timeline {
    /// A timeline for media clocked at `rate` Hz (90 000 video, 48 000 Opus).
    pub fn new(rate: u32) -> Timeline {
        Timeline { rate, streams: HashMap::new() }
    }

    /// First pass: a packet of `ssrc` with timestamp `ts` arrived at `arrival_us`.
    pub fn observe(&mut self, ssrc: u32, ts: u32, arrival_us: u64) {
        let rate = self.rate;
        let s = self.streams.entry(ssrc).or_insert(Stream {
            offset_us: i64::MAX,
            first_us: arrival_us,
            last_us: arrival_us,
            unwrap: Unwrap::default(),
        });
        let ext = s.unwrap.next(ts, 32);
        let offset = arrival_us as i64 - ext * 1_000_000 / i64::from(rate);
        s.offset_us = s.offset_us.min(offset);
        s.first_us = s.first_us.min(arrival_us);
        s.last_us = s.last_us.max(arrival_us);
    }

    /// Ready for the second pass: timestamps are unwrapped again from the start, in the same order.
    pub fn rewind(&mut self) {
        for s in self.streams.values_mut() {
            s.unwrap = Unwrap::default();
        }
    }

    /// Second pass: the capture time (Unix µs) of the next packet of `ssrc`, timestamp `ts`.
    pub fn capture_us(&mut self, ssrc: u32, ts: u32) -> Option<u64> {
        let rate = self.rate;
        let s = self.streams.get_mut(&ssrc)?;
        let ext = s.unwrap.next(ts, 32);
        u64::try_from(ext * 1_000_000 / i64::from(rate) + s.offset_us).ok()
    }

    /// The earliest and latest arrival on the track.
    pub fn span_us(&self) -> Option<(u64, u64)> {
        let first = self.streams.values().map(|s| s.first_us).min()?;
        let last = self.streams.values().map(|s| s.last_us).max()?;
        Some((first, last))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unwrapping_crosses_the_wrap_and_steps_back() {
        let mut u = Unwrap::default();
        assert_eq!(u.next(u32::MAX - 10, 32), i64::from(u32::MAX - 10));
        assert_eq!(u.next(5, 32), i64::from(u32::MAX) + 6);
        assert_eq!(u.next(u32::MAX - 1, 32), i64::from(u32::MAX) - 1, "a late packet from before the wrap");
        let mut s = Unwrap::default();
        assert_eq!(s.next(65_535, 16), 65_535);
        assert_eq!(s.next(1, 16), 65_537);
    }

    #[test]
    fn capture_time_uses_the_least_delayed_packet_and_ignores_jitter() {
        let mut t = Timeline::new(90_000);
        let base = 1_700_000_000_000_000u64;
        // 30 fps from ts 1000; arrivals delayed 20 ms + jitter up to 35 ms, the 4th packet only 20 ms.
        for i in 0..60u32 {
            let jitter = if i == 3 { 0 } else { u64::from(i * 7919 % 35) * 1000 + 500 };
            let media_us = u64::from(i) * 33_333;
            t.observe(9, 1000 + i * 3000, base + media_us + 20_000 + jitter);
        }
        t.rewind();
        let first = t.capture_us(9, 1000).unwrap();
        let tenth = (1..10).map(|i| t.capture_us(9, 1000 + i * 3000).unwrap()).last().unwrap();
        assert!(first.abs_diff(base + 20_000) <= 1, "{first}");
        assert!((tenth - first).abs_diff(9 * 33_333) <= 5);
        assert_eq!(t.span_us().unwrap().0, base + 20_500);
        assert!(t.capture_us(10, 0).is_none(), "an unknown stream");
    }
}
