//! Stills: one decoded picture of a live track, for the KYC service (OCR of an ID card held to the camera, the face
//! in frame). The picture is the next keyframe the sender makes after the recorder asks for one (PLI), so it shows
//! what the camera sees now and decodes on its own; ffmpeg turns it into a PNG. Nothing of it is kept: the recording
//! already holds the same frames, encrypted.

use std::collections::HashMap;
use std::io::Write;
use std::time::{Duration, Instant};

use str0m::media::Mid;
use tokio::sync::oneshot;
use vbank_fusion::container::IvfWriter;
use vbank_fusion::depacketize::{Depacketizer, Frame, VideoCodec};

/// How long a still may take: the sender's next keyframe normally comes within a round trip.
pub const WAIT: Duration = Duration::from_secs(4);

/// A request for the next keyframe of the track labelled `label` (e.g. `customer/camera`).
pub struct StillRequest {
    /// The track's label.
    pub label: String,
    /// Where the keyframe goes.
    pub reply: oneshot::Sender<Result<Keyframe, String>>,
}

/// One coded keyframe.
pub struct Keyframe {
    /// Its codec.
    pub codec: VideoCodec,
    /// The frame.
    pub frame: Frame,
}

struct Waiting {
    mid: Mid,
    depacketizer: Option<Depacketizer>,
    deadline: Instant,
    replies: Vec<oneshot::Sender<Result<Keyframe, String>>>,
}

/// The stills a capture is waiting for, by track label.
#[derive(Default)]
pub struct Stills {
    waiting: HashMap<String, Waiting>,
}

impl Stills {
    /// Take a request for the track on `mid` (None: no such track in the call yet). Returns true when the sender
    /// must be asked for a keyframe.
    pub fn request(&mut self, r: StillRequest, mid: Option<Mid>, now: Instant) -> bool {
        let Some(mid) = mid else {
            let _ = r.reply.send(Err(format!("the call has no track {} (is the camera on?)", r.label)));
            return false;
        };
        let w = self.waiting.entry(r.label).or_insert_with(|| Waiting {
            mid,
            depacketizer: None,
            deadline: now + WAIT,
            replies: Vec::new(),
        });
        w.replies.push(r.reply);
        w.replies.len() == 1
    }

    /// Whether some request waits for packets of `mid`.
    pub fn wants(&self, mid: Mid) -> bool {
        self.waiting.values().any(|w| w.mid == mid)
    }

    /// A packet of `mid` in `codec` (None: a codec stills cannot decode).
    pub fn packet(&mut self, mid: Mid, codec: Option<VideoCodec>, rtp: &[u8]) {
        let Some(view) = vbank_fusion::rtp::parse(rtp) else { return };
        let mut done = None;
        for (label, w) in self.waiting.iter_mut().filter(|(_, w)| w.mid == mid) {
            let Some(codec) = codec else {
                let why = "the camera's codec cannot be decoded (VP8 or H.264 needed)".to_string();
                done = Some((label.clone(), Err(why)));
                break;
            };
            let d = w.depacketizer.get_or_insert_with(|| Depacketizer::new(codec));
            if let Some(frame) = d.push(&view)
                && frame.keyframe
            {
                done = Some((label.clone(), Ok((codec, frame))));
                break;
            }
        }
        if let Some((label, result)) = done
            && let Some(w) = self.waiting.remove(&label)
        {
            for reply in w.replies {
                let r = match &result {
                    Ok((codec, frame)) => Ok(Keyframe { codec: *codec, frame: frame.clone() }),
                    Err(e) => Err(e.clone()),
                };
                let _ = reply.send(r);
            }
        }
    }

    /// Answer requests whose time is up.
    pub fn expire(&mut self, now: Instant) {
        self.waiting.retain(|label, w| {
            if now < w.deadline {
                return true;
            }
            for reply in w.replies.drain(..) {
                let _ = reply.send(Err(format!(
                    "no keyframe of {label} within {} s: the customer's video may be frozen or lost",
                    WAIT.as_secs()
                )));
            }
            false
        });
    }
}

/// Decode a keyframe to PNG with ffmpeg.
pub fn to_png(k: &Keyframe) -> Result<Vec<u8>, String> {
    let (w, h) = k.frame.size.unwrap_or((0, 0));
    let mut ivf = IvfWriter::new(Vec::new(), k.codec.fourcc(), w, h).map_err(|e| e.to_string())?;
    ivf.frame(0, &k.frame.data).map_err(|e| e.to_string())?;
    let ivf = ivf.finish().map_err(|e| e.to_string())?;
    let mut child = std::process::Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-f", "ivf", "-i", "pipe:0", "-frames:v", "1"])
        .args(["-f", "image2pipe", "-c:v", "png", "pipe:1"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| format!("ffmpeg: {e} (install the ffmpeg package)"))?;
    let mut stdin = child.stdin.take().ok_or("ffmpeg: no stdin")?;
    let writer = std::thread::spawn(move || stdin.write_all(&ivf));
    let out = child.wait_with_output().map_err(|e| format!("ffmpeg: {e}"))?;
    let _ = writer.join();
    if !out.status.success() || out.stdout.is_empty() {
        return Err(format!("ffmpeg could not decode the keyframe: {}", String::from_utf8_lossy(&out.stderr).trim()));
    }
    Ok(out.stdout)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vp8_keyframe_packets() -> Vec<Vec<u8>> {
        let dir = std::env::temp_dir().join(format!("vbank-still-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ivf = dir.join("k.ivf");
        vbank_fusion::synthetic::ffmpeg(&[
            "-f",
            "lavfi",
            "-i",
            "testsrc=size=320x240:rate=5",
            "-frames:v",
            "3",
            "-c:v",
            "libvpx",
            "-y",
            ivf.to_str().unwrap(),
        ])
        .unwrap();
        let frames = vbank_fusion::synthetic::ivf_frames(&std::fs::read(&ivf).unwrap());
        let _ = std::fs::remove_dir_all(&dir);
        let route = vbank_fusion::synthetic::Route {
            track: 0,
            pt: 96,
            ssrc: 7,
            ts_base: 0,
            seq_base: 0,
            from_us: 0,
            delay_us: 0,
            jitter_us: 0,
        };
        vbank_fusion::synthetic::vp8_packets(&frames, route, 0).into_iter().map(|s| s.packet).collect()
    }

    #[test]
    fn a_keyframe_becomes_a_png_and_answers_every_waiting_request() {
        let mut stills = Stills::default();
        let mid = Mid::from("1");
        let now = Instant::now();
        let (tx1, mut rx1) = oneshot::channel();
        let (tx2, mut rx2) = oneshot::channel();
        assert!(stills.request(StillRequest { label: "customer/camera".into(), reply: tx1 }, Some(mid), now));
        assert!(!stills.request(StillRequest { label: "customer/camera".into(), reply: tx2 }, Some(mid), now));
        assert!(stills.wants(mid));
        for p in vp8_keyframe_packets() {
            stills.packet(mid, Some(VideoCodec::Vp8), &p);
        }
        assert!(!stills.wants(mid));
        let k = rx1.try_recv().unwrap().unwrap();
        assert!(k.frame.keyframe);
        assert_eq!(k.frame.size, Some((320, 240)));
        assert!(rx2.try_recv().unwrap().is_ok());
        let png = to_png(&k).unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    }

    #[test]
    fn a_missing_track_or_a_silent_sender_gets_an_answer_that_says_why() {
        let mut stills = Stills::default();
        let now = Instant::now();
        let (tx, mut rx) = oneshot::channel();
        assert!(!stills.request(StillRequest { label: "customer/camera".into(), reply: tx }, None, now));
        assert!(rx.try_recv().unwrap().err().unwrap().contains("camera on"));
        let (tx, mut rx) = oneshot::channel();
        stills.request(StillRequest { label: "customer/camera".into(), reply: tx }, Some(Mid::from("1")), now);
        stills.expire(now + WAIT);
        assert!(rx.try_recv().unwrap().err().unwrap().contains("no keyframe"));
    }
}
