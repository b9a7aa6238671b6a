//! The ffmpeg command line of a fusion, as a pure function of what the tracks hold: one cell per camera or screen
//! track side by side (black until the track starts and after it ends), a band below with the capture time, the
//! time since the start and the customer's declared location, an optional diagonal watermark, every microphone
//! mixed, and a subtitle stream repeating the capture time each second so tools see it without decoding video.

use std::path::{Path, PathBuf};

/// Width and height of one camera cell.
pub const CELL: (u32, u32) = (640, 480);
/// Height of the text band under the cells.
pub const BAND: u32 = 48;
/// Output frame rate.
pub const FPS: u32 = 25;

/// What the command is built from.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The FIFOs or files of the video tracks (IVF), in layout order.
    pub videos: Vec<PathBuf>,
    /// The audio tracks (Ogg Opus).
    pub audios: Vec<PathBuf>,
    /// The capture-time subtitles (SRT).
    pub subtitles: PathBuf,
    /// Band text file (drawtext expands `%{…}` in it).
    pub band_text: PathBuf,
    /// Watermark text file, if any.
    pub watermark_text: Option<PathBuf>,
    /// A font with CJK glyphs.
    pub font: PathBuf,
    /// Length of the output, seconds.
    pub duration_s: f64,
    /// x264 preset.
    pub preset: String,
    /// Title metadata.
    pub title: String,
}

fn input(args: &mut Vec<String>, path: &Path) {
    args.push("-i".into());
    args.push(path.display().to_string());
}

impl Plan {
    /// The arguments after `ffmpeg`; the MP4 goes to standard output.
    pub fn args(&self) -> Vec<String> {
        let mut a: Vec<String> =
            ["-hide_banner", "-nostdin", "-loglevel", "error", "-copyts"].iter().map(|s| s.to_string()).collect();
        for v in &self.videos {
            input(&mut a, v);
        }
        for s in &self.audios {
            input(&mut a, s);
        }
        input(&mut a, &self.subtitles);
        let (cw, ch) = CELL;
        let cells = self.videos.len().max(1) as u32;
        let (w, h) = (cw * cells, ch + BAND);
        let font = self.font.display();
        let mut g = vec![format!("color=c=black:s={w}x{h}:r={FPS}:d={:.3}[bg0]", self.duration_s)];
        for i in 0..self.videos.len() {
            g.push(format!(
                "[{i}:v]scale={cw}:{ch}:force_original_aspect_ratio=decrease,pad={cw}:{ch}:(ow-iw)/2:(oh-ih)/2,setsar=1[cell{i}]"
            ));
            g.push(format!(
                "[bg{i}][cell{i}]overlay=x={}:y=0:eof_action=pass:repeatlast=0[bg{}]",
                cw * i as u32,
                i + 1
            ));
        }
        let last = self.videos.len();
        g.push(format!(
            "[bg{last}]drawtext=fontfile={font}:textfile={}:x=12:y={}:fontsize=22:fontcolor=white[band]",
            self.band_text.display(),
            ch + (BAND - 22) / 2
        ));
        match &self.watermark_text {
            Some(t) => g.push(format!(
                "[band]drawtext=fontfile={font}:textfile={}:x=(w-text_w)/2:y=(h-text_h)/2:fontsize=36:fontcolor=white@0.35:box=1:boxcolor=black@0.15[vout]",
                t.display()
            )),
            None => g.push("[band]null[vout]".into()),
        }
        let first_audio = self.videos.len();
        match self.audios.len() {
            0 => g.push(format!("anullsrc=r=48000:cl=mono:d={:.3}[aout]", self.duration_s)),
            n => {
                for j in 0..n {
                    g.push(format!(
                        "[{}:a]aresample=async=1:first_pts=0,aformat=channel_layouts=mono[a{j}]",
                        first_audio + j
                    ));
                }
                let ins: String = (0..n).map(|j| format!("[a{j}]")).collect();
                g.push(format!("{ins}amix=inputs={n}:duration=longest:normalize=0[aout]"));
            }
        }
        let subs = self.videos.len() + self.audios.len();
        let rest = [
            "-filter_complex".to_string(),
            g.join(";"),
            "-map".into(),
            "[vout]".into(),
            "-map".into(),
            "[aout]".into(),
            "-map".into(),
            format!("{subs}:s"),
            "-c:v".into(),
            "libx264".into(),
            "-preset".into(),
            self.preset.clone(),
            "-crf".into(),
            "23".into(),
            "-pix_fmt".into(),
            "yuv420p".into(),
            "-g".into(),
            (FPS * 2).to_string(),
            "-c:a".into(),
            "aac".into(),
            "-b:a".into(),
            "96k".into(),
            "-c:s".into(),
            "mov_text".into(),
            "-metadata:s:s:0".into(),
            "title=capture time".into(),
            "-metadata".into(),
            format!("title={}", self.title),
            "-t".into(),
            format!("{:.3}", self.duration_s),
            "-movflags".into(),
            "+frag_keyframe+empty_moov+default_base_moof".into(),
            "-f".into(),
            "mp4".into(),
            "pipe:1".into(),
        ];
        a.extend(rest);
        a
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_cameras_two_microphones_and_a_watermark() {
        let p = Plan {
            videos: vec!["/t/v0".into(), "/t/v1".into()],
            audios: vec!["/t/a0".into(), "/t/a1".into()],
            subtitles: "/t/s.srt".into(),
            band_text: "/t/band".into(),
            watermark_text: Some("/t/wm".into()),
            font: "/f.ttc".into(),
            duration_s: 12.5,
            preset: "veryfast".into(),
            title: "rec-1".into(),
        };
        let a = p.args();
        let graph = &a[a.iter().position(|x| x == "-filter_complex").unwrap() + 1];
        assert!(graph.starts_with("color=c=black:s=1280x528:r=25:d=12.500[bg0]"));
        assert!(graph.contains("[bg1][cell1]overlay=x=640:y=0"));
        assert!(graph.contains("[2:a]aresample") && graph.contains("[3:a]aresample"));
        assert!(graph.contains("amix=inputs=2"));
        assert!(graph.contains("textfile=/t/wm"));
        assert!(a.windows(2).any(|w| w == ["-map", "4:s"]));
        assert_eq!(a.last().unwrap(), "pipe:1");
    }

    #[test]
    fn no_tracks_still_gives_a_timed_picture_and_silence() {
        let p = Plan {
            videos: vec![],
            audios: vec![],
            subtitles: "/t/s.srt".into(),
            band_text: "/t/band".into(),
            watermark_text: None,
            font: "/f.ttc".into(),
            duration_s: 1.0,
            preset: "veryfast".into(),
            title: "x".into(),
        };
        let a = p.args();
        let graph = &a[a.iter().position(|x| x == "-filter_complex").unwrap() + 1];
        assert!(graph.contains("s=640x528") && graph.contains("anullsrc") && graph.contains("[band]null[vout]"));
        assert!(a.windows(2).any(|w| w == ["-map", "0:s"]));
    }
}
