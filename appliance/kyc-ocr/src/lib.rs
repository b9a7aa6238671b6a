//! ID card OCR on the appliance, with nothing sent anywhere: PP-OCRv4 text detection (DBNet) and recognition (SVTR,
//! CTC) as shipped in PyPI `rapidocr-onnxruntime` 1.4.4 (Apache-2.0), run in pure Rust by `tract`; [`card`] then
//! reads the fields of a resident ID card from the lines found.
//!
//! The models are installed by `appliance/kyc-service/models/fetch-ocr.sh`, which checks them by SHA-256; [`Ocr::load`]
//! checks them again and refuses a file that differs. Pictures are BGR-normalised as the models were trained
//! (PaddleOCR reads images with OpenCV).

pub mod card;
mod det;
mod rec;
pub mod synthetic;

use std::path::{Path, PathBuf};

use image::RgbImage;

pub use det::TextBox;

/// The detection model's file name and SHA-256.
pub const DET_MODEL: (&str, &str) =
    ("ch_PP-OCRv4_det_infer.onnx", "d2a7720d45a54257208b1e13e36a8479894cb74155a5efe29462512d42f49da9");
/// The recognition model's file name and SHA-256.
pub const REC_MODEL: (&str, &str) =
    ("ch_PP-OCRv4_rec_infer.onnx", "48fc40f24f6d2a207a2b1091d3437eb3cc3eb6b676dc3ef9c37384005483683b");

/// Why OCR failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OcrError {
    /// A model file is missing or is not the pinned one.
    #[error("{path}: {problem} (install the models with appliance/kyc-service/models/fetch-ocr.sh DIR)")]
    Model {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        problem: String,
    },
    /// The inference engine failed.
    #[error("OCR engine: {0}")]
    Engine(String),
}

fn engine(e: impl std::fmt::Display) -> OcrError {
    OcrError::Engine(e.to_string())
}

/// One line of text found in a picture.
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    /// What it says.
    pub text: String,
    /// The recogniser's mean confidence, 0–1.
    pub score: f32,
    /// Where it is.
    pub area: TextBox,
}

/// The two models, ready to run. Loading optimises them (a few seconds); share one `Ocr`.
pub struct Ocr {
    det: det::Detector,
    rec: rec::Recognizer,
}

fn verified(dir: &Path, (name, sha256): (&str, &str)) -> Result<PathBuf, OcrError> {
    let path = dir.join(name);
    let bytes = std::fs::read(&path).map_err(|e| OcrError::Model { path: path.clone(), problem: e.to_string() })?;
    let digest = vbank_crypto::to_hex(&vbank_crypto::hash::sha256(&bytes));
    if digest != sha256 {
        return Err(OcrError::Model { path, problem: format!("SHA-256 {digest} is not the pinned {sha256}") });
    }
    Ok(path)
}

impl Ocr {
    /// Load and check both models from `dir`.
    pub fn load(dir: &Path) -> Result<Ocr, OcrError> {
        let det = det::Detector::load(&verified(dir, DET_MODEL)?)?;
        let rec = rec::Recognizer::load(&verified(dir, REC_MODEL)?)?;
        Ok(Ocr { det, rec })
    }

    /// Every line of text in `image`, top to bottom, left to right.
    pub fn read(&self, image: &RgbImage) -> Result<Vec<Line>, OcrError> {
        let mut lines = Vec::new();
        for area in self.det.detect(image)? {
            let crop = image::imageops::crop_imm(image, area.x, area.y, area.width, area.height).to_image();
            let (text, score) = self.rec.recognize(&crop)?;
            if !text.trim().is_empty() {
                lines.push(Line { text, score, area });
            }
        }
        Ok(lines)
    }
}
