//! `vbank bench fusion`: the cost of 双录 outside the network. A synthetic two-party call (two 640×480 VP8 cameras,
//! two Opus microphones, made by ffmpeg) is written through the recorder's core, measuring the CPU per recorded
//! track; then, in rounds, the recording is fused into the evidence MP4 (decrypting, depacketizing, FIFOs, ffmpeg)
//! and, as the peer, ffmpeg alone composes the same layout straight from the clip files. The ratio is what vbank's
//! pipeline adds to ffmpeg's own encoding; the multiple of real time is how fast a call's evidence is ready.

use std::path::Path;
use std::time::Instant;

use anyhow::{Context as _, Result, anyhow};
use nix::sys::resource::{UsageWho, getrusage};
use serde_json::json;
use vbank_crypto::SecretBytes;
use vbank_crypto::aead::AeadAlg;
use vbank_fusion::plan::Plan;
use vbank_fusion::synthetic::{self, Route};
use vbank_recorder::format::DataKey;
use vbank_recorder::recording::{Recording, RecordingHeader};
use vbank_recorder::segmenter::Policy;

use super::median;

/// CPU seconds used so far by this process (`who` = self) or its waited-for children.
fn cpu(who: UsageWho) -> f64 {
    getrusage(who).map_or(0.0, |u| {
        let t = |tv: nix::sys::time::TimeVal| tv.tv_sec() as f64 + tv.tv_usec() as f64 / 1e6;
        t(u.user_time()) + t(u.system_time())
    })
}

fn cpu_all() -> f64 {
    cpu(UsageWho::RUSAGE_SELF) + cpu(UsageWho::RUSAGE_CHILDREN)
}

/// Two parties' clips: `a` and `b`, each a camera and a microphone, `seconds` long.
fn clips(dir: &Path, seconds: u32) -> Result<()> {
    for (name, src, tone) in [("a", "testsrc", 440), ("b", "testsrc2", 660)] {
        let video = format!("{src}=s=640x480:r=25:d={seconds},format=yuv420p");
        let audio = format!("sine=frequency={tone}:sample_rate=48000:duration={seconds}");
        synthetic::clip(dir, name, &video, &audio).map_err(|e| anyhow!("making the clip: {e}"))?;
    }
    Ok(())
}

fn key() -> Result<DataKey> {
    Ok(DataKey { id: "dek-bench".into(), alg: AeadAlg::Aes256Gcm, key: SecretBytes::random(32)? })
}

/// Write the call into a recording; CPU seconds spent and bytes stored.
fn record(dir: &Path, root: &Path, key: DataKey, wall0: u64) -> Result<(f64, u64)> {
    let header = RecordingHeader::new("rec-bench", "bench", &key, "00", wall0);
    let mut rec = Recording::create(root, header, key, Policy::default())?;
    let mut sent = Vec::new();
    for (i, name) in ["a", "b"].iter().enumerate() {
        let mic = rec.add_track(&format!("{name}/microphone"), "audio")?;
        let cam = rec.add_track(&format!("{name}/camera"), "video")?;
        rec.note_payload(mic, 111, "opus/48000/2")?;
        rec.note_payload(cam, 96, "VP8/90000")?;
        let i = i as u32;
        let route = |track, pt, delay_us| Route {
            track,
            pt,
            ssrc: 0x1000 + track,
            ts_base: 12_345 * (i + 1),
            seq_base: 100,
            from_us: 0,
            delay_us,
            jitter_us: 10_000,
        };
        let frames = synthetic::ivf_frames(&std::fs::read(dir.join(format!("{name}.ivf")))?);
        let packets = synthetic::ogg_packets(&std::fs::read(dir.join(format!("{name}.ogg")))?);
        sent.extend(synthetic::vp8_packets(&frames, route(cam, 96, 30_000), wall0));
        sent.extend(synthetic::opus_packets(&packets, route(mic, 111, 20_000), wall0));
    }
    let before = cpu(UsageWho::RUSAGE_SELF);
    synthetic::record(&mut rec, sent, wall0)?;
    let m = rec.finish(wall0 + 3_600_000_000)?;
    let spent = cpu(UsageWho::RUSAGE_SELF) - before;
    Ok((spent, m.segments.iter().map(|s| s.bytes).sum()))
}

/// ffmpeg alone: the same layout straight from the clip files.
fn ffmpeg_direct(dir: &Path, seconds: u32, font: &Path) -> Result<()> {
    std::fs::write(dir.join("band.txt"), "%{pts:gmtime:1795766400} UTC+08:00   +%{pts:hms}   位置 上海   rec-bench")?;
    std::fs::write(dir.join("wm.txt"), "bench · 2026-11-27 08:00:00 UTC+08:00 · 仅限行内 in-bank only")?;
    let srt: String = (0..seconds)
        .map(|i| {
            format!(
                "{}\n00:{:02}:{:02},000 --> 00:{:02}:{:02},000\nt\n\n",
                i + 1,
                i / 60,
                i % 60,
                (i + 1) / 60,
                (i + 1) % 60
            )
        })
        .collect();
    std::fs::write(dir.join("time.srt"), srt)?;
    let plan = Plan {
        videos: vec![dir.join("a.ivf"), dir.join("b.ivf")],
        audios: vec![dir.join("a.ogg"), dir.join("b.ogg")],
        subtitles: dir.join("time.srt"),
        band_text: dir.join("band.txt"),
        watermark_text: Some(dir.join("wm.txt")),
        font: font.to_path_buf(),
        duration_s: f64::from(seconds),
        preset: "veryfast".into(),
        title: "bench".into(),
    };
    let out = std::process::Command::new("ffmpeg")
        .args(plan.args())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .output()
        .context("running ffmpeg")?;
    if !out.status.success() {
        return Err(anyhow!("ffmpeg: {}", String::from_utf8_lossy(&out.stderr)));
    }
    Ok(())
}

/// Run the benchmark and print the figures.
pub fn run(seconds: u32, rounds: usize, json: bool) -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path();
    clips(dir, seconds)?;
    let wall0 = 1_795_766_400_000_000;
    let key_bytes = key()?;
    let key_copy = DataKey {
        id: key_bytes.id.clone(),
        alg: key_bytes.alg,
        key: SecretBytes::new(key_bytes.key.expose().to_vec()),
    };
    let root = dir.join("rec-bench");
    let (record_cpu, stored) = record(dir, &root, key_bytes, wall0)?;
    let per_track = record_cpu / (4.0 * f64::from(seconds)) * 100.0;
    let font = vbank_fusion::default_font().ok_or_else(|| anyhow!("no font: install fonts-wqy-zenhei"))?;

    let (mut ours, mut peer, mut ours_rt, mut peer_rt) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        let (c0, t0) = (cpu_all(), Instant::now());
        let opts = vbank_fusion::Options { watermark: Some("bench · 仅限行内".into()), ..Default::default() };
        let fused = vbank_fusion::fuse(&root, &key_copy, &opts, &mut std::io::sink())?;
        ours.push((cpu_all() - c0) / fused.duration_s);
        ours_rt.push(fused.duration_s / t0.elapsed().as_secs_f64());
        let (c0, t0) = (cpu_all(), Instant::now());
        ffmpeg_direct(dir, seconds, &font)?;
        peer.push((cpu_all() - c0) / f64::from(seconds));
        peer_rt.push(f64::from(seconds) / t0.elapsed().as_secs_f64());
    }
    let (ours, peer, ours_rt, peer_rt) = (median(ours), median(peer), median(ours_rt), median(peer_rt));
    if json {
        println!(
            "{}",
            json!({"seconds": seconds, "rounds": rounds, "record_cpu_percent_per_track": per_track,
                   "stored_bytes": stored, "fusion_cpu_s_per_video_s": ours, "ffmpeg_cpu_s_per_video_s": peer,
                   "ratio": ours / peer, "fusion_x_realtime": ours_rt, "ffmpeg_x_realtime": peer_rt})
        );
    } else {
        println!(
            "synthetic call: 2 cameras 640x480 VP8 25 fps + 2 Opus microphones, {seconds} s; medians of {rounds} rounds"
        );
        println!(
            "recording (encrypt + segment + sync): {per_track:.3} % of a core per track, {:.1} MB stored",
            stored as f64 / 1e6
        );
        println!(
            "fusion to MP4 (1280x528 H.264 veryfast + AAC + overlay + watermark): vbank {ours:.3} CPU-s per video-s \
             ({ours_rt:.1}x real time), ffmpeg alone from the clip files {peer:.3} ({peer_rt:.1}x): ratio {:.2}",
            ours / peer
        );
    }
    Ok(())
}
