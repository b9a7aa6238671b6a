//! Text recognition: a line scaled to 48 pixels high into the narrowest of a few fixed widths (each an optimised plan,
//! made when first needed), the recogniser's per-column character probabilities decoded greedily (CTC: drop repeats,
//! then blanks). The alphabet is the model's own, from its metadata (`character`), with blank first and space last
//! as PaddleOCR adds them.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use image::RgbImage;
use tract_onnx::pb::ModelProto;
use tract_onnx::prelude::*;

use crate::det::bgr_planes;
use crate::{OcrError, engine};

const HEIGHT: usize = 48;
/// Input widths: a line goes into the narrowest that holds it (wider lines are squeezed into the last).
const WIDTHS: [usize; 4] = [320, 640, 960, 1280];

pub(crate) struct Recognizer {
    path: PathBuf,
    alphabet: Vec<String>,
    plans: Mutex<HashMap<usize, std::sync::Arc<TypedRunnableModel>>>,
}

/// The alphabet from the model's metadata: blank, the listed characters, space.
fn alphabet(proto: &ModelProto) -> Option<Vec<String>> {
    let listed = proto.metadata_props.iter().find(|p| p.key == "character")?;
    let mut a = vec![String::new()];
    a.extend(listed.value.lines().map(str::to_string));
    a.push(" ".into());
    Some(a)
}

/// Greedy CTC decoding of `steps` × `classes` probabilities: the text and its mean confidence.
pub(crate) fn decode(probs: &[f32], classes: usize, alphabet: &[String]) -> (String, f32) {
    let (mut text, mut confidence, mut kept, mut previous) = (String::new(), 0f32, 0u32, 0usize);
    for step in probs.chunks_exact(classes) {
        let (best, p) = step.iter().enumerate().fold((0, f32::MIN), |m, (i, &p)| if p > m.1 { (i, p) } else { m });
        if best != 0
            && best != previous
            && let Some(c) = alphabet.get(best)
        {
            text.push_str(c);
            confidence += p;
            kept += 1;
        }
        previous = best;
    }
    (text, if kept == 0 { 0.0 } else { confidence / kept as f32 })
}

impl Recognizer {
    pub(crate) fn load(path: &Path) -> Result<Recognizer, OcrError> {
        let proto = tract_onnx::onnx().proto_model_for_path(path).map_err(engine)?;
        let alphabet = alphabet(&proto).ok_or_else(|| OcrError::Model {
            path: path.into(),
            problem: "no character list in the model's metadata".into(),
        })?;
        let r = Recognizer { path: path.into(), alphabet, plans: Mutex::default() };
        r.plan(WIDTHS[0])?;
        Ok(r)
    }

    fn plan(&self, width: usize) -> Result<std::sync::Arc<TypedRunnableModel>, OcrError> {
        if let Some(p) = self.plans.lock().unwrap_or_else(|p| p.into_inner()).get(&width) {
            return Ok(p.clone());
        }
        let plan = tract_onnx::onnx()
            .model_for_path(&self.path)
            .and_then(|m| m.with_input_fact(0, f32::fact([1, 3, HEIGHT, width]).into()))
            .and_then(|m| m.into_optimized())
            .and_then(|m| m.into_runnable())
            .map_err(engine)?;
        self.plans.lock().unwrap_or_else(|p| p.into_inner()).insert(width, plan.clone());
        Ok(plan)
    }

    /// The text of one line and the recogniser's confidence.
    pub(crate) fn recognize(&self, line: &RgbImage) -> Result<(String, f32), OcrError> {
        let (w, h) = line.dimensions();
        let scaled_w = ((HEIGHT as f32 * w as f32 / h.max(1) as f32).ceil() as usize).max(1);
        let width = WIDTHS.iter().copied().find(|&b| b >= scaled_w).unwrap_or(WIDTHS[WIDTHS.len() - 1]);
        let resized = image::imageops::resize(
            line,
            scaled_w.min(width) as u32,
            HEIGHT as u32,
            image::imageops::FilterType::Triangle,
        );
        let input = tract_ndarray::Array4::from_shape_vec((1, 3, HEIGHT, width), bgr_planes(&resized, width, HEIGHT))
            .map_err(engine)?;
        let out = self.plan(width)?.run(tvec!(Tensor::from(input).into())).map_err(engine)?;
        let view = out[0].to_plain_array_view::<f32>().map_err(engine)?;
        let classes = *view.shape().last().unwrap_or(&1);
        let probs: Vec<f32> = view.iter().copied().collect();
        Ok(decode(&probs, classes, &self.alphabet))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ctc_drops_repeats_then_blanks() {
        let alphabet: Vec<String> = ["", "1", "2", " "].iter().map(|s| s.to_string()).collect();
        // Steps: 1 1 blank 1 2 2 blank → "112".
        let steps = [1, 1, 0, 1, 2, 2, 0];
        let mut probs = vec![0f32; steps.len() * 4];
        for (t, &c) in steps.iter().enumerate() {
            probs[t * 4 + c] = 0.8;
        }
        let (text, conf) = decode(&probs, 4, &alphabet);
        assert_eq!(text, "112");
        assert!((conf - 0.8).abs() < 1e-6);
    }
}
