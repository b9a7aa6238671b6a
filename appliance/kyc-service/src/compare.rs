//! Face comparison (人脸比对), advisory: dlib's ResNet face encoder (PyPI `face_recognition_models` 0.3.0, CC0) turns
//! each face — found by [`crate::face`], aligned by dlib's 5-point landmark model — into 128 numbers; two faces closer
//! than [`SAME`] are likely the same person (dlib's own threshold). It is not validated on ID-chip photos, so the
//! teller decides: the answer says "likely the same person" or "check by eye", never "verified".

use std::path::Path;

use dlib_face_recognition::{
    FaceEncoderNetwork, FaceEncoderTrait, FaceEncoding, ImageMatrix, LandmarkPredictor, LandmarkPredictorTrait,
    Rectangle,
};
use image::RgbImage;

use crate::face::Face;

/// The encoder's file name and SHA-256 (installed by `models/fetch-face.sh`).
pub const ENCODER_MODEL: (&str, &str) =
    ("dlib_face_recognition_resnet_model_v1.dat", "55533b28a95800a551ba546ba62fe69625c7e95a7061c338adffead08719da30");
/// The 5-point landmark model's file name and SHA-256.
pub const LANDMARK_MODEL: (&str, &str) =
    ("shape_predictor_5_face_landmarks.dat", "c4b1e9804792707d3a405c2c16a80a20269e6675021f64a41d30fffafbc41888");
/// Distances under this are likely the same person.
pub const SAME: f64 = 0.6;

/// dlib's models, loaded and checked.
pub struct Comparer {
    encoder: FaceEncoderNetwork,
    landmarks: LandmarkPredictor,
}

// SAFETY: dlib's network and shape predictor are read-only after loading; `get_face_encodings` and `face_landmarks`
// take `&self` and keep no state between calls (dlib documents both as thread-safe for concurrent const use).
#[allow(unsafe_code)]
unsafe impl Send for Comparer {}
#[allow(unsafe_code)]
unsafe impl Sync for Comparer {}

fn verified(dir: &Path, (name, sha256): (&str, &str)) -> Result<std::path::PathBuf, String> {
    let path = dir.join(name);
    let bytes = std::fs::read(&path).map_err(|e| {
        format!("{}: {e} (install the models with appliance/kyc-service/models/fetch-face.sh DIR)", path.display())
    })?;
    let digest = vbank_crypto::to_hex(&vbank_crypto::hash::sha256(&bytes));
    if digest != sha256 {
        return Err(format!("{}: SHA-256 {digest} is not the pinned {sha256}", path.display()));
    }
    Ok(path)
}

/// dlib's copy of `image`.
fn matrix(image: &RgbImage) -> ImageMatrix {
    let (w, h) = image.dimensions();
    // SAFETY: the buffer holds exactly width × height × 3 bytes (an `RgbImage`), which is what `new` reads.
    #[allow(unsafe_code)]
    unsafe {
        ImageMatrix::new(w as usize, h as usize, image.as_raw().as_ptr())
    }
}

impl Comparer {
    /// Load and check both models from `dir`.
    pub fn load(dir: &Path) -> Result<Comparer, String> {
        let encoder = FaceEncoderNetwork::open(verified(dir, ENCODER_MODEL)?)?;
        let landmarks = LandmarkPredictor::open(verified(dir, LANDMARK_MODEL)?)?;
        Ok(Comparer { encoder, landmarks })
    }

    /// The encoding of `face` in `image`.
    pub fn encode(&self, image: &RgbImage, face: &Face) -> Option<FaceEncoding> {
        let m = matrix(image);
        let r = Rectangle {
            left: i64::from(face.x),
            top: i64::from(face.y),
            right: i64::from(face.x) + i64::from(face.width),
            bottom: i64::from(face.y) + i64::from(face.height),
        };
        let shape = self.landmarks.face_landmarks(&m, &r);
        self.encoder.get_face_encodings(&m, &[shape], 0).first().cloned()
    }
}

/// The distance between two encodings.
pub fn distance(a: &FaceEncoding, b: &FaceEncoding) -> f64 {
    a.distance(b)
}

/// The best face of `image` (the largest whole one), as [`crate::face`] finds it.
pub fn best_face(image: &RgbImage) -> Option<Face> {
    let gray = image::DynamicImage::ImageRgb8(image.clone()).to_luma8();
    crate::face::detect(&gray).into_iter().filter(|f| f.score >= crate::face::WHOLE).max_by_key(|f| f.width)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn models() -> std::path::PathBuf {
        std::env::var_os("VBANK_MODELS").map(std::path::PathBuf::from).unwrap_or_else(|| {
            std::path::PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache/vbank/models")
        })
    }

    fn fixture(name: &str) -> RgbImage {
        let dir = std::env::var("CARGO_MANIFEST_DIR").expect("run under cargo test");
        image::open(format!("{dir}/../../tests/fixtures/faces/{name}")).expect("fixture").to_rgb8()
    }

    /// Encodings of every whole face in `image`.
    fn encodings(c: &Comparer, image: &RgbImage) -> Vec<FaceEncoding> {
        let gray = image::DynamicImage::ImageRgb8(image.clone()).to_luma8();
        crate::face::detect(&gray)
            .iter()
            .filter(|f| f.score >= crate::face::WHOLE)
            .filter_map(|f| c.encode(image, f))
            .collect()
    }

    #[test]
    fn the_same_face_small_and_mirrored_is_close_and_other_people_are_far() {
        let c = Comparer::load(&models()).expect("face models (run tests/setup.sh)");
        let astronaut = fixture("astronaut.jpg");
        // An ID-photo-like portrait of the same face: cropped close, mirrored, at 120 × 150 pixels.
        let close = image::imageops::crop_imm(&astronaut, 104, 20, 130, 162).to_image();
        let small = image::imageops::resize(
            &image::imageops::flip_horizontal(&close),
            120,
            150,
            image::imageops::FilterType::Triangle,
        );
        let a = c.encode(&astronaut, &best_face(&astronaut).unwrap()).unwrap();
        let b = c.encode(&small, &best_face(&small).unwrap()).unwrap();
        let same = distance(&a, &b);
        assert!(same < SAME, "the same face, as a small mirrored portrait: {same:.3}");

        // Other people: the faces in dlib's example photos (installed with libdlib-dev).
        let dir = Path::new("/usr/share/doc/libdlib19.1/examples/faces");
        let mut others = 0;
        for name in ["2008_001322.jpg", "2008_002079.jpg", "2009_004587.jpg"] {
            let photo = image::open(dir.join(name))
                .unwrap_or_else(|e| panic!("{name}: {e} (tests/setup.sh installs libdlib-dev with its examples)"))
                .to_rgb8();
            for e in encodings(&c, &photo) {
                let d = distance(&a, &e);
                assert!(d > SAME, "{name}: another person at {d:.3}");
                others += 1;
            }
        }
        assert!(others >= 3, "faces found in dlib's example photos: {others}");
    }

    #[test]
    fn a_model_that_is_not_the_pinned_one_is_refused() {
        let dir = std::env::temp_dir().join(format!("vbank-facemodel-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(ENCODER_MODEL.0), b"not a model").unwrap();
        let e = Comparer::load(&dir).err().unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        assert!(e.contains("is not the pinned"), "{e}");
    }
}
