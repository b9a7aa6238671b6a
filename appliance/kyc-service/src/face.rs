//! Face in frame (人脸在框检测): exactly one whole face in the picture, found by SeetaFace's funnel cascade
//! (`rustface`, BSD-2 model shipped in `models/`). Whole frontal faces score 11–32 with this model and cut-off or
//! turned ones 2–4, so [`WHOLE`] separates them; a face touching the picture's edge is not whole either.

use image::GrayImage;
use serde::Serialize;

/// The detector's model, in the binary: nothing is downloaded or read at run time.
const MODEL: &[u8] = include_bytes!("../models/seeta_fd_frontal_v1.0.bin");

/// The score from which a detection is a whole face.
pub const WHOLE: f64 = 8.0;
/// The score from which a detection counts at all.
const SEEN: f64 = 2.0;
/// Faces smaller than this many pixels across are not looked for.
const MIN_FACE: u32 = 40;

/// One detected face.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Face {
    /// Left edge, pixels.
    pub x: i32,
    /// Top edge, pixels.
    pub y: i32,
    /// Width, pixels.
    pub width: u32,
    /// Height, pixels.
    pub height: u32,
    /// The cascade's score.
    pub score: f64,
}

/// The verdict on one picture.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum InFrame {
    /// Exactly one whole face.
    OneFace,
    /// No face.
    NoFace,
    /// A face, but cut off by the edge, turned away or covered.
    Partial,
    /// More than one whole face.
    SeveralFaces,
}

impl InFrame {
    /// What the teller reads, and what to ask the customer to do.
    pub fn message(self) -> &'static str {
        match self {
            InFrame::OneFace => "一张完整人脸在框内 · one whole face in frame",
            InFrame::NoFace => "未检测到人脸：请客户正对摄像头 · no face: ask the customer to face the camera",
            InFrame::Partial => {
                "人脸不完整：请客户移到画面中央、摘下遮挡物 · face cut off or covered: ask the customer to move to \
                 the centre and uncover their face"
            }
            InFrame::SeveralFaces => {
                "画面中有多张人脸：请其他人离开画面 · more than one face: ask anyone else to leave the picture"
            }
        }
    }
}

/// Faces in `gray`, best first.
pub fn detect(gray: &GrayImage) -> Vec<Face> {
    let model = match rustface::read_model(std::io::Cursor::new(MODEL)) {
        Ok(m) => m,
        Err(e) => {
            // The model is compiled in; a failure here is a broken build, and no face is the safe answer.
            log::error!("the face model does not load: {e}");
            return Vec::new();
        }
    };
    let mut detector = rustface::create_detector_with_model(model);
    detector.set_min_face_size(MIN_FACE);
    detector.set_score_thresh(SEEN);
    detector.set_pyramid_scale_factor(0.8);
    detector.set_slide_window_step(4, 4);
    let (w, h) = gray.dimensions();
    let mut faces: Vec<Face> = detector
        .detect(&rustface::ImageData::new(gray, w, h))
        .iter()
        .map(|f| {
            let b = f.bbox();
            Face { x: b.x(), y: b.y(), width: b.width(), height: b.height(), score: f.score() }
        })
        .collect();
    faces.sort_by(|a, b| b.score.total_cmp(&a.score));
    faces
}

/// The verdict for `faces` found in a `width` × `height` picture.
pub fn judge(faces: &[Face], width: u32, height: u32) -> InFrame {
    let inside = |f: &Face| f.x > 0 && f.y > 0 && f.x as u32 + f.width < width && f.y as u32 + f.height < height;
    let whole = faces.iter().filter(|f| f.score >= WHOLE && inside(f)).count();
    match whole {
        1 => InFrame::OneFace,
        0 if faces.is_empty() => InFrame::NoFace,
        0 => InFrame::Partial,
        _ => InFrame::SeveralFaces,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{GenericImage, Luma};

    fn astronaut() -> GrayImage {
        // At run time: a compiled-in path would name the checkout that built the binary first.
        let dir = std::env::var("CARGO_MANIFEST_DIR").expect("run under cargo test");
        image::open(format!("{dir}/../../tests/fixtures/faces/astronaut.jpg")).expect("fixture").to_luma8()
    }

    fn canvas(w: u32, h: u32) -> GrayImage {
        GrayImage::from_pixel(w, h, Luma([128]))
    }

    #[test]
    fn one_whole_face_is_found_and_a_blank_picture_has_none() {
        let a = astronaut();
        let mut frame = canvas(640, 480);
        frame.copy_from(&a, 128, 48).unwrap();
        let faces = detect(&frame);
        assert!(faces[0].score >= WHOLE, "{faces:?}");
        assert_eq!(judge(&faces, 640, 480), InFrame::OneFace);
        assert_eq!(judge(&detect(&canvas(640, 480)), 640, 480), InFrame::NoFace);
    }

    #[test]
    fn two_faces_are_several_and_a_face_cut_by_the_edge_is_partial() {
        let a = astronaut();
        let mut two = canvas(800, 400);
        two.copy_from(&a, 0, 8).unwrap();
        two.copy_from(&a, 400, 8).unwrap();
        assert_eq!(judge(&detect(&two), 800, 400), InFrame::SeveralFaces);

        // Only the left half of the face shows: the picture's right edge cuts through it.
        let whole = detect(&a)[0];
        let half = (whole.x + whole.width as i32 / 2) as u32;
        let (w, h) = a.dimensions();
        let mut cut = canvas(640, 480);
        for y in 0..h {
            for x in 0..w {
                let tx = 640 - half + x;
                if tx < 640 {
                    cut.put_pixel(tx, 48 + y, *a.get_pixel(x, y));
                }
            }
        }
        let verdict = judge(&detect(&cut), 640, 480);
        assert!(matches!(verdict, InFrame::Partial | InFrame::NoFace), "{verdict:?}");
        assert_ne!(verdict, InFrame::OneFace);
    }

    #[test]
    fn every_verdict_says_what_to_do() {
        for v in [InFrame::NoFace, InFrame::Partial, InFrame::SeveralFaces] {
            assert!(v.message().contains("ask"), "{v:?}");
        }
    }
}
