//! Synthetic calls for tests and benchmarks: clips made by ffmpeg (VP8 in IVF, Opus in Ogg) read back and
//! packetized into RTP as a browser sends them, each stream on its own clock with its own random base, then written
//! through the recorder's core like captured packets.

use std::path::Path;
use std::time::{Duration, Instant};

use vbank_recorder::RecorderError;
use vbank_recorder::format::RecordKind;
use vbank_recorder::recording::Recording;

use crate::depacketize::opus_samples;
use crate::rtp;

/// Frames of an IVF file: (presentation time in µs, frame).
pub fn ivf_frames(b: &[u8]) -> Vec<(u64, Vec<u8>)> {
    let Some(head) = b.get(..32) else { return Vec::new() };
    let den = u64::from(u32::from_le_bytes(head[16..20].try_into().expect("4 bytes"))).max(1);
    let num = u64::from(u32::from_le_bytes(head[20..24].try_into().expect("4 bytes")));
    let mut at = 32;
    let mut out = Vec::new();
    while let Some(h) = b.get(at..at + 12) {
        let n = u32::from_le_bytes(h[..4].try_into().expect("4 bytes")) as usize;
        let pts = u64::from_le_bytes(h[4..12].try_into().expect("8 bytes"));
        let Some(frame) = b.get(at + 12..at + 12 + n) else { break };
        out.push((pts * num * 1_000_000 / den, frame.to_vec()));
        at += 12 + n;
    }
    out
}

/// Packets of an Ogg file (the Opus header packets included).
pub fn ogg_packets(b: &[u8]) -> Vec<Vec<u8>> {
    let (mut at, mut out, mut cur) = (0, Vec::new(), Vec::new());
    while let Some(h) = b.get(at..at + 27) {
        let n = usize::from(h[26]);
        let Some(lacing) = b.get(at + 27..at + 27 + n) else { break };
        let mut body = at + 27 + n;
        for &l in lacing {
            let Some(seg) = b.get(body..body + usize::from(l)) else { return out };
            cur.extend_from_slice(seg);
            body += usize::from(l);
            if l < 255 {
                out.push(std::mem::take(&mut cur));
            }
        }
        at = body;
    }
    out
}

/// One packet as it reached the recorder.
#[derive(Debug, Clone)]
pub struct Sent {
    /// Arrival, Unix µs.
    pub arrival_us: u64,
    /// The recording's track.
    pub track: u32,
    /// The RTP packet.
    pub packet: Vec<u8>,
}

/// How a stream travels: when it starts, its RTP identity and its delay.
#[derive(Debug, Clone, Copy)]
pub struct Route {
    /// The recording's track.
    pub track: u32,
    /// Payload type.
    pub pt: u8,
    /// SSRC.
    pub ssrc: u32,
    /// The first RTP timestamp.
    pub ts_base: u32,
    /// The first sequence number.
    pub seq_base: u16,
    /// Media before this time (µs into the clip) is not sent (the device opened later).
    pub from_us: u64,
    /// Fixed network delay, µs.
    pub delay_us: u64,
    /// Jitter added on top, up to this many µs.
    pub jitter_us: u64,
}

/// A deterministic spread in 0..max.
fn spread(i: u64, max: u64) -> u64 {
    if max == 0 { 0 } else { (i.wrapping_mul(2_654_435_761) >> 7) % max }
}

/// VP8 frames (from [`ivf_frames`]) as RTP packets of at most 1 000 bytes, arriving from `wall0_us` on.
pub fn vp8_packets(frames: &[(u64, Vec<u8>)], p: Route, wall0_us: u64) -> Vec<Sent> {
    let mut out = Vec::new();
    let mut seq = p.seq_base;
    for (i, (media_us, frame)) in frames.iter().enumerate().filter(|(_, (t, _))| *t >= p.from_us) {
        let chunks: Vec<&[u8]> = frame.chunks(1000).collect();
        let ts = p.ts_base.wrapping_add((media_us * 90 / 1000) as u32);
        let arrival = wall0_us + media_us + p.delay_us + spread(i as u64, p.jitter_us);
        for (k, c) in chunks.iter().enumerate() {
            let mut payload = Vec::with_capacity(c.len() + 1);
            payload.push(if k == 0 { 0x10 } else { 0x00 });
            payload.extend_from_slice(c);
            let packet = rtp::build(p.pt, seq, ts, p.ssrc, k + 1 == chunks.len(), &payload);
            out.push(Sent { arrival_us: arrival + k as u64 * 200, track: p.track, packet });
            seq = seq.wrapping_add(1);
        }
    }
    out
}

/// Opus packets (from [`ogg_packets`], headers skipped) as RTP, arriving from `wall0_us` on.
pub fn opus_packets(packets: &[Vec<u8>], p: Route, wall0_us: u64) -> Vec<Sent> {
    let mut out = Vec::new();
    let (mut samples, mut seq) = (0u64, p.seq_base);
    for (i, pkt) in packets.iter().skip(2).enumerate() {
        let n = opus_samples(pkt).unwrap_or(960);
        let media_us = samples * 1000 / 48;
        samples += u64::from(n);
        if media_us < p.from_us {
            continue;
        }
        let ts = p.ts_base.wrapping_add((media_us * 48 / 1000) as u32);
        let arrival_us = wall0_us + media_us + p.delay_us + spread(i as u64 + 99, p.jitter_us);
        out.push(Sent { arrival_us, track: p.track, packet: rtp::build(p.pt, seq, ts, p.ssrc, false, pkt) });
        seq = seq.wrapping_add(1);
    }
    out
}

/// Write `sent` (in arrival order) into `rec` as the recorder would have; the CPU time this took is the caller's.
pub fn record(rec: &mut Recording, mut sent: Vec<Sent>, wall0_us: u64) -> Result<(), RecorderError> {
    sent.sort_by_key(|s| s.arrival_us);
    let t0 = Instant::now();
    for s in sent {
        let now = t0 + Duration::from_micros(s.arrival_us.saturating_sub(wall0_us));
        rec.packet(s.track, now, s.arrival_us, RecordKind::Rtp, &s.packet)?;
        rec.tick(now)?;
    }
    Ok(())
}

/// Run ffmpeg with `args` (input generation for clips); its error output on failure.
pub fn ffmpeg(args: &[&str]) -> Result<(), String> {
    let out = std::process::Command::new("ffmpeg")
        .args(args)
        .output()
        .map_err(|e| format!("ffmpeg: {e} (install Debian's ffmpeg)"))?;
    if out.status.success() { Ok(()) } else { Err(String::from_utf8_lossy(&out.stderr).into_owned()) }
}

/// Make `dir/name.ivf` (VP8, `w`×`h`, 25 fps, a keyframe a second) from an ffmpeg filter graph `video`, and
/// `dir/name.ogg` (Opus, 20 ms frames) from `audio`.
pub fn clip(dir: &Path, name: &str, video: &str, audio: &str) -> Result<(), String> {
    let ivf = dir.join(format!("{name}.ivf"));
    let ogg = dir.join(format!("{name}.ogg"));
    let v = ivf.to_str().ok_or("path")?;
    let a = ogg.to_str().ok_or("path")?;
    ffmpeg(&[
        "-v",
        "error",
        "-y",
        "-filter_complex",
        video,
        "-c:v",
        "libvpx",
        "-b:v",
        "400k",
        "-g",
        "25",
        "-deadline",
        "realtime",
        "-cpu-used",
        "8",
        v,
    ])?;
    ffmpeg(&[
        "-v",
        "error",
        "-y",
        "-filter_complex",
        audio,
        "-c:a",
        "libopus",
        "-b:a",
        "32k",
        "-frame_duration",
        "20",
        a,
    ])
}
