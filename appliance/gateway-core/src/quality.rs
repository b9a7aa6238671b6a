//! Per-participant call quality, from str0m's statistics (every second): round-trip time, loss both ways, the
//! send-side bandwidth estimate, bytes, and the repair traffic (NACKs, PLIs, FIRs), plus gaps seen in incoming media.

use std::collections::HashMap;

use str0m::media::Mid;
use str0m::stats::{MediaEgressStats, MediaIngressStats, PeerStats};

/// What a participant's media looked like. Counters are totals since joining; the rest are the latest reading.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Quality {
    /// Round-trip time, milliseconds.
    pub rtt_ms: Option<f64>,
    /// Fraction of packets from the participant that were lost (0–1).
    pub ingress_loss: Option<f32>,
    /// Fraction of packets to the participant that were lost (0–1).
    pub egress_loss: Option<f32>,
    /// Send-side bandwidth estimate towards the participant, bits per second.
    pub bwe_bps: Option<u64>,
    /// Bytes received from the participant.
    pub bytes_rx: u64,
    /// Bytes sent to the participant.
    pub bytes_tx: u64,
    /// NACKs the SFU sent the participant (asking for lost packets again).
    pub nacks_sent: u64,
    /// NACKs the participant sent the SFU.
    pub nacks_received: u64,
    /// Keyframe requests (PLI + FIR) the SFU sent the participant.
    pub keyframe_requests_sent: u64,
    /// Keyframe requests the participant sent the SFU.
    pub keyframe_requests_received: u64,
    /// Incoming media frames that followed a gap (lost packets not recovered in time).
    pub gaps: u64,
    /// Interarrival jitter of the participant's worst incoming track, milliseconds (RFC 3550 §6.4.1).
    pub jitter_ms: Option<f64>,
}

/// Accumulates str0m's per-track counters into a [`Quality`].
#[derive(Debug, Default)]
pub(crate) struct QualityTracker {
    peer: Option<PeerStats>,
    ingress: HashMap<Mid, (u64, u64, u64)>,
    egress: HashMap<Mid, (u64, u64, u64)>,
    jitter_ms: HashMap<Mid, f64>,
    pub gaps: u64,
}

/// RTP timestamp units to milliseconds at the track's clock rate.
fn units_to_ms(units: u32, clock_hz: u32) -> f64 {
    f64::from(units) * 1000.0 / f64::from(clock_hz.max(1))
}

impl QualityTracker {
    pub fn peer(&mut self, s: PeerStats) {
        self.peer = Some(s);
    }

    /// `clock_hz`: the track's RTP clock (48 kHz Opus, 90 kHz video), to express jitter in milliseconds.
    pub fn ingress(&mut self, s: &MediaIngressStats, clock_hz: u32) {
        // (nacks, plis, firs) the SFU sent for this incoming track: str0m's counters are totals.
        self.ingress.insert(s.mid, (s.nacks, s.plis, s.firs));
        self.jitter_ms.insert(s.mid, units_to_ms(s.jitter, clock_hz));
    }

    pub fn egress(&mut self, s: &MediaEgressStats) {
        self.egress.insert(s.mid, (s.nacks, s.plis, s.firs));
    }

    pub fn snapshot(&self) -> Quality {
        let sum = |m: &HashMap<Mid, (u64, u64, u64)>| m.values().fold((0, 0), |(n, k), (a, b, c)| (n + a, k + b + c));
        let (nacks_sent, kf_sent) = sum(&self.ingress);
        let (nacks_received, kf_received) = sum(&self.egress);
        let p = self.peer.as_ref();
        Quality {
            rtt_ms: p.and_then(|p| p.rtt).map(|d| d.as_secs_f64() * 1000.0),
            ingress_loss: p.and_then(|p| p.ingress_loss_fraction),
            egress_loss: p.and_then(|p| p.egress_loss_fraction),
            bwe_bps: p.and_then(|p| p.bwe_tx).map(|b| b.as_u64()),
            bytes_rx: p.map_or(0, |p| p.bytes_rx),
            bytes_tx: p.map_or(0, |p| p.bytes_tx),
            nacks_sent,
            nacks_received,
            keyframe_requests_sent: kf_sent,
            keyframe_requests_received: kf_received,
            gaps: self.gaps,
            jitter_ms: self.jitter_ms.values().copied().reduce(f64::max),
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn jitter_is_converted_at_the_track_clock() {
        assert_eq!(super::units_to_ms(480, 48_000), 10.0);
        assert_eq!(super::units_to_ms(900, 90_000), 10.0);
        assert_eq!(super::units_to_ms(5, 0), 5000.0, "a zero clock never divides by zero");
    }
}
