//! Carrying out a fusion: the two passes over the tracks, the FIFOs, and the ffmpeg process.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::sys::stat::Mode;
use vbank_recorder::format::DataKey;
use vbank_recorder::manifest::{Manifest, Track};

use crate::FusionError;
use crate::container::{IvfWriter, OggOpusWriter};
use crate::depacketize::{Depacketizer, VideoCodec, opus_samples, vp8_size};
use crate::plan::Plan;
use crate::rtp;
use crate::source::{for_each_packet, in_order};
use crate::timeline::Timeline;

/// How to fuse.
#[derive(Debug, Clone)]
pub struct Options {
    /// The customer's declared location, shown in the band.
    pub location: Option<String>,
    /// A watermark across the picture (exports: viewer and time).
    pub watermark: Option<String>,
    /// The offset of the time zone the capture time is shown in, minutes east of UTC (China: +480).
    pub utc_offset_minutes: i32,
    /// The ffmpeg program.
    pub ffmpeg: PathBuf,
    /// A font with CJK glyphs; found among Debian's fonts when not given.
    pub font: Option<PathBuf>,
    /// The x264 preset.
    pub preset: String,
    /// An end-to-end encrypted call's epoch keys: its frames are opened with them before decoding.
    pub e2ee: Option<vbank_sframe::EpochKeys>,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            location: None,
            watermark: None,
            utc_offset_minutes: 480,
            ffmpeg: "ffmpeg".into(),
            font: None,
            preset: "veryfast".into(),
            e2ee: None,
        }
    }
}

/// What a fusion produced.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Fused {
    /// Length, seconds.
    pub duration_s: f64,
    /// Capture time of the first frame, Unix µs.
    pub start_us: u64,
    /// Video tracks laid out.
    pub video_tracks: usize,
    /// Audio tracks mixed.
    pub audio_tracks: usize,
    /// Video frames left out (lost packets, or waiting for a keyframe).
    pub dropped_frames: u64,
    /// Bytes of MP4 written.
    pub bytes: u64,
}

const FONTS: &[&str] = &[
    "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
];

/// A font with CJK glyphs among Debian's, for the overlay.
pub fn default_font() -> Option<PathBuf> {
    FONTS.iter().map(PathBuf::from).find(|p| p.exists())
}

enum Kind {
    Video(VideoCodec, (u16, u16)),
    Audio,
}

struct Input {
    track: u32,
    label: String,
    pt: u8,
    kind: Kind,
    timeline: Timeline,
}

/// The payload type of `track` that fusion reads, and what it is.
fn chosen(track: &Track) -> Option<(u8, Kind, u32)> {
    let of = |want: &dyn Fn(&str) -> bool| track.payloads.iter().find(|(_, c)| want(c)).map(|(pt, c)| (*pt, c));
    if track.media == "video" {
        let (pt, c) = of(&|c| VideoCodec::from_noted(c).is_some())?;
        Some((pt, Kind::Video(VideoCodec::from_noted(c)?, (640, 480)), 90_000))
    } else if track.media == "audio" {
        let (pt, _) = of(&|c| c.to_ascii_lowercase().starts_with("opus/"))?;
        Some((pt, Kind::Audio, 48_000))
    } else {
        None
    }
}

/// First pass: each readable track's clock and extent.
fn survey(
    root: &Path,
    m: &Manifest,
    key: &DataKey,
    e2ee: Option<&vbank_sframe::EpochKeys>,
) -> Result<Vec<Input>, FusionError> {
    let mut inputs = Vec::new();
    for t in &m.tracks {
        let Some((pt, mut kind, rate)) = chosen(t) else {
            if t.media == "events" {
                continue;
            }
            log::warn!(
                "fusion of {}: track {} ({}) has no codec fusion reads; left out",
                m.recording,
                t.track,
                t.label
            );
            continue;
        };
        let mut timeline = Timeline::new(rate);
        let mut dep = match kind {
            Kind::Video(c, _) => Some(Depacketizer::new(c)),
            Kind::Audio => None,
        };
        let mut size = None;
        let mut keys = e2ee.cloned();
        for_each_packet(root, m, t.track, key, |arrival, packet| {
            if let Some(p) = rtp::parse(packet).filter(|p| p.pt == pt) {
                timeline.observe(p.ssrc, p.ts, arrival);
                if size.is_none()
                    && let Some(f) = dep.as_mut().and_then(|d| d.push(&p))
                {
                    // An end-to-end encrypted keyframe gives its size once opened.
                    size = match keys.as_mut() {
                        Some(k) if f.keyframe => {
                            k.open(vbank_sframe::Codec::Vp8, &f.data).ok().and_then(|(plain, _)| vp8_size(&plain))
                        }
                        _ => f.size,
                    };
                }
            }
            Ok(())
        })?;
        if timeline.span_us().is_none() {
            continue;
        }
        if let (Kind::Video(_, s), Some(found)) = (&mut kind, size) {
            *s = found;
        }
        timeline.rewind();
        inputs.push(Input { track: t.track, label: t.label.clone(), pt, kind, timeline });
    }
    // The customer's cell first (left), then the teller's, then everyone else's.
    let rank =
        |label: &str| ["customer/", "teller/", "specialist/"].iter().position(|p| label.starts_with(p)).unwrap_or(3);
    inputs.sort_by_key(|i| (rank(&i.label), i.track));
    Ok(inputs)
}

/// Open a FIFO for writing once ffmpeg opens it for reading; `None` if ffmpeg ended first.
fn open_fifo(path: &Path, ended: &AtomicBool) -> Result<Option<std::fs::File>, FusionError> {
    loop {
        match OpenOptions::new().write(true).custom_flags(OFlag::O_NONBLOCK.bits()).open(path) {
            Ok(f) => {
                fcntl(&f, FcntlArg::F_SETFL(OFlag::empty())).map_err(|e| FusionError::Io(e.to_string()))?;
                return Ok(Some(f));
            }
            Err(e) if e.raw_os_error() == Some(nix::libc::ENXIO) => {
                if ended.load(Ordering::Relaxed) {
                    return Ok(None);
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => return Err(FusionError::Io(format!("{}: {e}", path.display()))),
        }
    }
}

fn pipe_err(e: std::io::Error) -> FusionError {
    FusionError::Io(format!("writing to ffmpeg: {e}"))
}

/// Second pass for one track: its frames or packets, stamped from `t0_us`, opened with the call's epoch keys when it
/// was end-to-end encrypted, into `fifo`; the frames dropped.
fn feed(
    root: &Path,
    m: &Manifest,
    key: &DataKey,
    mut input: Input,
    t0_us: u64,
    fifo: std::fs::File,
    e2ee: Option<vbank_sframe::EpochKeys>,
) -> Result<u64, FusionError> {
    let (pt, track, timeline) = (input.pt, input.track, &mut input.timeline);
    let mut frames = Opener { keys: e2ee, unopened: 0, recording: &m.recording, track };
    match input.kind {
        Kind::Video(codec, (w, h)) => {
            if frames.keys.is_some() && codec != VideoCodec::Vp8 {
                return Err(FusionError::Recording(format!(
                    "track {track} is {codec:?}: end-to-end encrypted calls carry VP8 video only"
                )));
            }
            let mut out = IvfWriter::new(std::io::BufWriter::new(fifo), codec.fourcc(), w, h).map_err(pipe_err)?;
            let mut dep = Depacketizer::new(codec);
            let mut last_ms = None;
            in_order(root, m, track, key, |packet| {
                let Some(p) = rtp::parse(packet).filter(|p| p.pt == pt) else { return Ok(()) };
                let cap = timeline.capture_us(p.ssrc, p.ts);
                if let (Some(f), Some(cap)) = (dep.push(&p), cap) {
                    let ms = cap.saturating_sub(t0_us) / 1000;
                    if last_ms.is_none_or(|l| ms > l)
                        && let Some(data) = frames.open(vbank_sframe::Codec::Vp8, &f.data)
                    {
                        last_ms = Some(ms);
                        out.frame(ms, &data).map_err(pipe_err)?;
                    }
                }
                Ok(())
            })?;
            out.finish().map_err(pipe_err)?;
            Ok(dep.dropped + frames.unopened)
        }
        Kind::Audio => {
            let mut out = OggOpusWriter::new(std::io::BufWriter::new(fifo), track + 1, 2).map_err(pipe_err)?;
            in_order(root, m, track, key, |packet| {
                let Some(p) = rtp::parse(packet).filter(|p| p.pt == pt) else { return Ok(()) };
                if let (Some(cap), Some(samples)) = (timeline.capture_us(p.ssrc, p.ts), opus_samples(p.payload))
                    && let Some(data) = frames.open(vbank_sframe::Codec::Opus, p.payload)
                {
                    let start = cap.saturating_sub(t0_us) * 48 / 1000;
                    out.packet(&data, start + u64::from(samples)).map_err(pipe_err)?;
                }
                Ok(())
            })?;
            out.finish().map_err(pipe_err)?;
            Ok(0)
        }
    }
}

/// Opens an end-to-end encrypted track's frames (or passes a plain track's through); a frame the keys do not open
/// is left out like a lost one.
struct Opener<'a> {
    keys: Option<vbank_sframe::EpochKeys>,
    unopened: u64,
    recording: &'a str,
    track: u32,
}

impl Opener<'_> {
    fn open<'d>(&mut self, codec: vbank_sframe::Codec, data: &'d [u8]) -> Option<std::borrow::Cow<'d, [u8]>> {
        let Some(keys) = self.keys.as_mut() else { return Some(data.into()) };
        match keys.open(codec, data) {
            Ok((plain, _)) => Some(plain.into()),
            Err(e) => {
                if self.unopened == 0 {
                    log::warn!(
                        "fusion of {}: track {}: an encrypted frame was left out: {e}",
                        self.recording,
                        self.track
                    );
                }
                self.unopened += 1;
                None
            }
        }
    }
}

/// `YYYY-MM-DD HH:MM:SS` of Unix second `s`.
fn civil(s: i64) -> String {
    let (days, rem) = (s.div_euclid(86_400), s.rem_euclid(86_400));
    let (y, mo, d) = vbank_log::civil_from_days(days);
    format!("{y:04}-{mo:02}-{d:02} {:02}:{:02}:{:02}", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// Unix µs as `YYYY-MM-DD HH:MM:SS UTC+hh:mm` in the zone `offset_minutes` east of UTC.
pub fn display_time(unix_us: u64, offset_minutes: i32) -> String {
    let s = (unix_us / 1_000_000) as i64 + i64::from(offset_minutes) * 60;
    format!("{} {}", civil(s), zone(offset_minutes))
}

fn zone(minutes: i32) -> String {
    let sign = if minutes < 0 { '-' } else { '+' };
    format!("UTC{sign}{:02}:{:02}", minutes.abs() / 60, minutes.abs() % 60)
}

/// Text for drawtext's expansion: no `%`, `\` or braces from outside.
fn plain(s: &str) -> String {
    s.chars().filter(|c| !matches!(c, '%' | '\\' | '{' | '}') && !c.is_control()).collect()
}

fn srt(start_us: u64, duration_s: f64, offset_min: i32) -> String {
    let mut s = String::new();
    let n = duration_s.ceil() as u64;
    let base = start_us as i64 / 1_000_000 + i64::from(offset_min) * 60;
    let ts = |t: u64| format!("{:02}:{:02}:{:02},000", t / 3600, t % 3600 / 60, t % 60);
    for i in 0..n {
        s.push_str(&format!("{}\n{} --> {}\n", i + 1, ts(i), ts(i + 1)));
        s.push_str(&format!("{} {}\n\n", civil(base + i as i64), zone(offset_min)));
    }
    s
}

/// The manifest of the closed recording at `root`, if it verifies: fusion composes nothing else into evidence.
pub fn verified_manifest(root: &Path) -> Result<Manifest, FusionError> {
    let path = root.join("manifest.json");
    let bytes = std::fs::read(&path).map_err(|e| {
        FusionError::Recording(format!("{}: {e} (an unfinished recording: finish or recover it first)", path.display()))
    })?;
    let m: Manifest = serde_json::from_slice(&bytes)
        .map_err(|e| FusionError::Recording(format!("{}: not a manifest: {e}", path.display())))?;
    let problems = m.verify(root).map_err(|e| FusionError::Recording(e.to_string()))?;
    if !problems.is_empty() {
        return Err(FusionError::Recording(format!(
            "{} does not verify, so it is not composed: {}",
            m.recording,
            problems.join("; ")
        )));
    }
    Ok(m)
}

/// Compose the closed recording at `root` (its data key: `key`) into an MP4 written to `out`.
pub fn fuse(root: &Path, key: &DataKey, opts: &Options, out: &mut dyn Write) -> Result<Fused, FusionError> {
    fuse_verified(root, &verified_manifest(root)?, key, opts, out)
}

/// [`fuse`] with the manifest already checked by [`verified_manifest`] (a caller that must refuse before it starts
/// streaming checks first, and the segments are hashed once).
pub fn fuse_verified(
    root: &Path,
    m: &Manifest,
    key: &DataKey,
    opts: &Options,
    out: &mut dyn Write,
) -> Result<Fused, FusionError> {
    if key.id != m.key_id {
        return Err(FusionError::Recording(format!("the key given is {}, the recording's is {}", key.id, m.key_id)));
    }
    let font = match &opts.font {
        Some(f) => f.clone(),
        None => default_font().ok_or_else(|| {
            FusionError::Ffmpeg("no font for the overlay: install fonts-wqy-zenhei (or set a font)".into())
        })?,
    };
    let inputs = survey(root, m, key, opts.e2ee.as_ref())?;
    let spans: Vec<(u64, u64)> = inputs.iter().filter_map(|i| i.timeline.span_us()).collect();
    let start_us = spans.iter().map(|s| s.0).min().unwrap_or(0);
    let end_us = spans.iter().map(|s| s.1).max().unwrap_or(start_us);
    let duration_s = ((end_us - start_us) as f64 / 1e6).max(1.0);

    let tmp = tempfile::Builder::new().prefix("vbank-fusion-").tempdir().map_err(|e| FusionError::Io(e.to_string()))?;
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o700))
        .map_err(|e| FusionError::Io(e.to_string()))?;
    let mut videos = Vec::new();
    let mut audios = Vec::new();
    let mut fifos = BTreeMap::new();
    for (n, i) in inputs.iter().enumerate() {
        let p = tmp.path().join(match i.kind {
            Kind::Video(..) => format!("{n}.ivf"),
            Kind::Audio => format!("{n}.ogg"),
        });
        nix::unistd::mkfifo(&p, Mode::S_IRUSR | Mode::S_IWUSR).map_err(|e| FusionError::Io(format!("mkfifo: {e}")))?;
        match i.kind {
            Kind::Video(..) => videos.push(p.clone()),
            Kind::Audio => audios.push(p.clone()),
        }
        fifos.insert(n, p);
    }
    let write = |name: &str, text: &str| -> Result<PathBuf, FusionError> {
        let p = tmp.path().join(name);
        std::fs::write(&p, text).map_err(|e| FusionError::Io(format!("{}: {e}", p.display())))?;
        Ok(p)
    };
    let delta = (start_us as f64 / 1e6) + f64::from(opts.utc_offset_minutes) * 60.0;
    let location = opts.location.as_deref().map(plain).unwrap_or_else(|| "未申报 not declared".into());
    let band = format!(
        "%{{pts:gmtime:{delta:.3}}} {}   +%{{pts:hms}}   位置 {location}   {}",
        zone(opts.utc_offset_minutes),
        plain(&m.recording)
    );
    let plan = Plan {
        videos,
        audios,
        subtitles: write("time.srt", &srt(start_us, duration_s, opts.utc_offset_minutes))?,
        band_text: write("band.txt", &band)?,
        watermark_text: opts.watermark.as_deref().map(|w| write("watermark.txt", &plain(w))).transpose()?,
        font,
        duration_s,
        preset: opts.preset.clone(),
        title: format!("vbank recording {}", m.recording),
    };
    let mut child = Command::new(&opts.ffmpeg)
        .args(plan.args())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            FusionError::Ffmpeg(format!("cannot run {}: {e} (install Debian's ffmpeg)", opts.ffmpeg.display()))
        })?;
    let mut stdout = child.stdout.take().expect("piped");
    let mut stderr = child.stderr.take().expect("piped");
    let ended = AtomicBool::new(false);
    let counts = (
        inputs.iter().filter(|i| matches!(i.kind, Kind::Video(..))).count(),
        inputs.len() - inputs.iter().filter(|i| matches!(i.kind, Kind::Video(..))).count(),
    );
    let (written, fed, errors) = std::thread::scope(|s| {
        let log_reader = s.spawn(move || {
            let mut e = String::new();
            let _ = stderr.read_to_string(&mut e);
            e
        });
        let feeders: Vec<_> = inputs
            .into_iter()
            .enumerate()
            .map(|(n, input)| {
                let (fifo, ended) = (&fifos[&n], &ended);
                s.spawn(move || match open_fifo(fifo, ended)? {
                    Some(f) => feed(root, m, key, input, start_us, f, opts.e2ee.clone()),
                    None => Ok(0),
                })
            })
            .collect();
        let written = std::io::copy(&mut stdout, out);
        ended.store(true, Ordering::Relaxed);
        let fed: Vec<Result<u64, FusionError>> = feeders
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Err(FusionError::Io("a feeder panicked".into()))))
            .collect();
        (written, fed, log_reader.join().unwrap_or_default())
    });
    let status = child.wait().map_err(|e| FusionError::Ffmpeg(e.to_string()))?;
    if !status.success() {
        return Err(FusionError::Ffmpeg(format!("{status}: {}", errors.trim())));
    }
    let bytes = written.map_err(|e| FusionError::Io(format!("writing the MP4: {e}")))?;
    let mut dropped = 0;
    for f in fed {
        dropped += f?;
    }
    Ok(Fused { duration_s, start_us, video_tracks: counts.0, audio_tracks: counts.1, dropped_frames: dropped, bytes })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_time_zones_and_subtitles() {
        assert_eq!(civil(0), "1970-01-01 00:00:00");
        assert_eq!(civil(1_795_766_400), "2026-11-27 08:00:00");
        assert_eq!(civil(951_782_400), "2000-02-29 00:00:00");
        assert_eq!(zone(480), "UTC+08:00");
        assert_eq!(zone(-330), "UTC-05:30");
        let s = srt(1_795_737_600_000_000, 1.5, 480);
        assert!(s.starts_with("1\n00:00:00,000 --> 00:00:01,000\n2026-11-27 08:00:00 UTC+08:00\n\n2\n"));
        assert_eq!(plain("上海%{x}\\\n"), "上海x");
    }
}
