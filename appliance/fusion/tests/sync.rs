//! Fusion keeps audio and video in sync from capture time: a clip with a white flash and a 1 kHz beep at the same
//! instants is packetized as a browser would send it (VP8 and Opus, their own RTP clocks and random bases, audio
//! starting later, both delayed with jitter), recorded by the recorder's core, fused, and measured with ffmpeg.

use std::path::Path;
use std::process::Command;

use vbank_crypto::SecretBytes;
use vbank_crypto::aead::AeadAlg;
use vbank_fusion::synthetic::{self, Route, Sent};
use vbank_fusion::{Options, fuse};
use vbank_recorder::format::DataKey;
use vbank_recorder::recording::{Recording, RecordingHeader};
use vbank_recorder::segmenter::Policy;
use vbank_sframe::{Codec, EpochKeys, Sender, Suite, epochs};

/// Flash and beep instants in the clip, seconds.
const EVENTS: [f64; 3] = [2.0, 4.6, 7.2];

fn ffmpeg(args: &[&str]) -> String {
    let out = Command::new("ffmpeg").args(args).output().expect("ffmpeg (Debian's ffmpeg; tests/setup.sh installs it)");
    assert!(out.status.success(), "ffmpeg {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The clip, sent as a browser would: the camera from the start with 45–85 ms delay, the microphone from 0.7 s with
/// 20–40 ms; each on its own clock (the audio one wraps during the clip).
/// Seals the `n`th frame or packet of a codec as a page's worker would (or leaves it as it is).
type Seal<'a> = &'a mut dyn FnMut(Codec, usize, &[u8]) -> Vec<u8>;

fn sent(dir: &Path, wall0: u64, seal: Seal<'_>) -> Vec<Sent> {
    let on: Vec<String> = EVENTS.iter().map(|t| format!("between(t,{t},{:.2})", t + 0.04)).collect();
    let beep: Vec<String> = EVENTS.iter().map(|t| format!("between(t,{t},{:.2})", t + 0.12)).collect();
    let video = format!(
        "color=c=black:s=320x240:r=25:d=9[b];color=c=white:s=320x240:r=25:d=9[w];[b][w]overlay=enable='{}',format=yuv420p",
        on.join("+")
    );
    let audio =
        format!("sine=frequency=1000:sample_rate=48000:duration=9,volume=volume=0:enable='not({})'", beep.join("+"));
    synthetic::clip(dir, "clip", &video, &audio).unwrap();
    let mut frames = synthetic::ivf_frames(&std::fs::read(dir.join("clip.ivf")).unwrap());
    let mut packets = synthetic::ogg_packets(&std::fs::read(dir.join("clip.ogg")).unwrap());
    for (n, (_, f)) in frames.iter_mut().enumerate() {
        *f = seal(Codec::Vp8, n, f);
    }
    // The first two are Opus's headers, not sent over RTP.
    for (n, p) in packets.iter_mut().enumerate().skip(2) {
        *p = seal(Codec::Opus, n, p);
    }
    let camera = Route {
        track: 1,
        pt: 96,
        ssrc: 0x1111,
        ts_base: 3_000_000_000,
        seq_base: 40_000,
        from_us: 0,
        delay_us: 45_000,
        jitter_us: 40_000,
    };
    let mic = Route {
        track: 0,
        pt: 111,
        ssrc: 0x2222,
        ts_base: 4_294_000_000,
        seq_base: 7,
        from_us: 700_000,
        delay_us: 20_000,
        jitter_us: 20_000,
    };
    let mut all = synthetic::vp8_packets(&frames, camera, wall0);
    all.extend(synthetic::opus_packets(&packets, mic, wall0));
    all
}

/// Times (s) at which `series` first rises above `threshold` after being below it.
fn onsets(series: &[(f64, f64)], threshold: f64) -> Vec<f64> {
    let mut on = false;
    let mut out = Vec::new();
    for &(t, v) in series {
        if v > threshold && !on {
            out.push(t);
        }
        on = v > threshold;
    }
    out
}

fn metadata(log: &str, key: &str) -> Vec<(f64, f64)> {
    let mut t = None;
    let mut out = Vec::new();
    for line in log.lines() {
        if let Some(i) = line.find("pts_time:") {
            t = line[i + 9..].split_whitespace().next().and_then(|s| s.parse::<f64>().ok());
        } else if let Some(i) = line.find(key) {
            let v = line[i + key.len() + 1..].trim();
            let v = if v == "-inf" { -200.0 } else { v.parse::<f64>().unwrap_or(-200.0) };
            out.push((t.expect("a frame time first"), v));
        }
    }
    out
}

#[test]
fn a_flash_and_a_beep_stay_within_80_ms() {
    flash_and_beep(&mut |_, _, f| f.to_vec(), None);
}

/// An end-to-end encrypted call: every frame and packet was sealed in the pages' workers (the customer in slot 1),
/// and the key rotated at frame 120 (someone joined). Fusion opens them with the two epochs' keys, in sync as above.
#[test]
fn an_end_to_end_encrypted_call_fuses_with_its_epoch_keys() {
    let (k1, k2) = ([0x11u8; 32], [0x22u8; 32]);
    let suite = Suite::Aes256GcmSha512;
    let mut video = (Sender::new(suite, epochs::kid(1, 1), &k1), Sender::new(suite, epochs::kid(2, 1), &k2));
    let mut audio = (Sender::new(suite, epochs::kid(1, 1), &k1), Sender::new(suite, epochs::kid(2, 1), &k2));
    let mut seal = |codec: Codec, n: usize, f: &[u8]| {
        let (first, second) = if codec == Codec::Vp8 { &mut video } else { &mut audio };
        let s = if n < 120 { first } else { second };
        s.encrypt(codec, f).unwrap()
    };
    let mut keys = EpochKeys::new();
    keys.add_epoch(suite, 1, &k1);
    keys.add_epoch(suite, 2, &k2);
    flash_and_beep(&mut seal, Some(keys));
}

fn flash_and_beep(seal: Seal<'_>, e2ee: Option<EpochKeys>) {
    let tmp = tempfile::tempdir().unwrap();
    let wall0 = 1_795_766_400_000_000u64;
    let key = || DataKey { id: "dek-sync".into(), alg: AeadAlg::Sm4Gcm, key: SecretBytes::new(vec![7; 16]) };
    let root = tmp.path().join("rec-sync");
    let header = RecordingHeader::new("rec-sync", "call-sync", &key(), "00", wall0);
    let mut rec = Recording::create(&root, header, key(), Policy::default()).unwrap();
    let mic = rec.add_track("customer/microphone", "audio").unwrap();
    let cam = rec.add_track("customer/camera", "video").unwrap();
    rec.note_payload(mic, 111, "opus/48000/2").unwrap();
    rec.note_payload(cam, 96, "VP8/90000").unwrap();
    synthetic::record(&mut rec, sent(tmp.path(), wall0, seal), wall0).unwrap();
    rec.finish(wall0 + 10_000_000).unwrap();

    let mp4 = tmp.path().join("fused.mp4");
    let mut out = std::fs::File::create(&mp4).unwrap();
    if let Some(all) = &e2ee {
        // With the first epoch's key alone, every frame after the rotation is left out.
        let mut first = EpochKeys::new();
        first.add_epoch(Suite::Aes256GcmSha512, 1, &[0x11; 32]);
        assert_eq!(all.len(), 2);
        let partial = Options { e2ee: Some(first), ..Options::default() };
        let fused = fuse(&root, &key(), &partial, &mut std::io::sink()).unwrap();
        assert_eq!(fused.dropped_frames, 225 - 120, "the clip has 225 frames, 120 before the rotation");
    }
    let opts = Options { location: Some("上海市浦东新区".into()), e2ee, ..Options::default() };
    let fused = fuse(&root, &key(), &opts, &mut out).unwrap();
    assert_eq!((fused.video_tracks, fused.audio_tracks, fused.dropped_frames), (1, 1, 0));

    let f = mp4.to_str().unwrap();
    let video = ffmpeg(&[
        "-i",
        f,
        "-vf",
        "crop=640:480:0:0,signalstats,metadata=print:key=lavfi.signalstats.YAVG",
        "-an",
        "-f",
        "null",
        "-",
    ]);
    let audio = ffmpeg(&[
        "-i",
        f,
        "-vn",
        "-af",
        "asetnsamples=n=240:p=0,astats=metadata=1:reset=1,ametadata=print:key=lavfi.astats.Overall.RMS_level",
        "-f",
        "null",
        "-",
    ]);
    let flashes = onsets(&metadata(&video, "lavfi.signalstats.YAVG"), 100.0);
    let beeps = onsets(&metadata(&audio, "lavfi.astats.Overall.RMS_level"), -30.0);
    assert_eq!(flashes.len(), EVENTS.len(), "flashes at {flashes:?}");
    assert_eq!(beeps.len(), EVENTS.len(), "beeps at {beeps:?}");
    for (f, b) in flashes.iter().zip(&beeps) {
        let offset_ms = (f - b) * 1000.0;
        println!("flash {f:.3} s, beep {b:.3} s: offset {offset_ms:+.0} ms");
        assert!(offset_ms.abs() < 80.0, "A/V offset {offset_ms:.0} ms (flash {f}, beep {b})");
    }
    // The picture starts with the camera; the flash sits 2 s into it.
    assert!((flashes[0] - 2.045).abs() < 0.1, "first flash at {}", flashes[0]);
}
