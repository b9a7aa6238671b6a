//! Text detection: the picture scaled into a fixed [`SIDE`]×[`SIDE`] input (one optimised plan), DBNet's probability
//! map thresholded and dilated as PaddleOCR does, each connected region a text box whose mean probability must reach
//! [`BOX_THRESH`], grown by the "unclip" distance (area × 1.6 / perimeter) and mapped back to the picture.

use std::path::Path;

use image::RgbImage;
use tract_onnx::prelude::*;

use crate::{OcrError, engine};

/// The detector's input side, a multiple of 32.
pub const SIDE: usize = 736;
const THRESH: f32 = 0.3;
const BOX_THRESH: f32 = 0.5;
const UNCLIP: f32 = 1.6;
const MIN_SIDE: usize = 3;

/// An axis-aligned text area, in the picture's pixels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TextBox {
    /// Left.
    pub x: u32,
    /// Top.
    pub y: u32,
    /// Width.
    pub width: u32,
    /// Height.
    pub height: u32,
    /// Mean text probability inside.
    pub score: f32,
}

type Plan = std::sync::Arc<TypedRunnableModel>;

pub(crate) struct Detector {
    plan: Plan,
}

/// `image` as the models take it: BGR, (x / 255 − 0.5) / 0.5, planar, into a `side_w`×`side_h` frame (zeros beyond).
pub(crate) fn bgr_planes(image: &RgbImage, side_w: usize, side_h: usize) -> Vec<f32> {
    let mut data = vec![0f32; 3 * side_w * side_h];
    let plane = side_w * side_h;
    for (x, y, p) in image.enumerate_pixels() {
        let (x, y) = (x as usize, y as usize);
        if x >= side_w || y >= side_h {
            continue;
        }
        let at = y * side_w + x;
        for (c, v) in [p[2], p[1], p[0]].into_iter().enumerate() {
            data[c * plane + at] = (f32::from(v) / 255.0 - 0.5) / 0.5;
        }
    }
    data
}

impl Detector {
    pub(crate) fn load(path: &Path) -> Result<Detector, OcrError> {
        let plan = tract_onnx::onnx()
            .model_for_path(path)
            .and_then(|m| m.with_input_fact(0, f32::fact([1, 3, SIDE, SIDE]).into()))
            .and_then(|m| m.into_optimized())
            .and_then(|m| m.into_runnable())
            .map_err(engine)?;
        Ok(Detector { plan })
    }

    /// Text boxes in `image`, top to bottom, left to right.
    pub(crate) fn detect(&self, image: &RgbImage) -> Result<Vec<TextBox>, OcrError> {
        let (w, h) = image.dimensions();
        let scale = SIDE as f32 / w.max(h) as f32;
        let (sw, sh) = (((w as f32 * scale) as u32).max(1), ((h as f32 * scale) as u32).max(1));
        let scaled = image::imageops::resize(image, sw, sh, image::imageops::FilterType::Triangle);
        let input = tract_ndarray::Array4::from_shape_vec((1, 3, SIDE, SIDE), bgr_planes(&scaled, SIDE, SIDE))
            .map_err(engine)?;
        let out = self.plan.run(tvec!(Tensor::from(input).into())).map_err(engine)?;
        let map = out[0].to_plain_array_view::<f32>().map_err(engine)?;
        let prob: Vec<f32> = map.iter().copied().collect();
        let mut boxes = boxes(&prob, SIDE, sw as usize, sh as usize);
        for b in &mut boxes {
            let (x1, y1) = ((b.x + b.width) as f32 / scale, (b.y + b.height) as f32 / scale);
            b.x = (b.x as f32 / scale) as u32;
            b.y = (b.y as f32 / scale) as u32;
            b.width = (x1.min(w as f32) as u32).saturating_sub(b.x).max(1);
            b.height = (y1.min(h as f32) as u32).saturating_sub(b.y).max(1);
        }
        boxes.sort_by_key(|b| (b.y + b.height / 2, b.x));
        Ok(boxes)
    }
}

/// Boxes from a `side`-wide probability map whose first `valid_w`×`valid_h` pixels are the picture.
pub(crate) fn boxes(prob: &[f32], side: usize, valid_w: usize, valid_h: usize) -> Vec<TextBox> {
    let on = |x: usize, y: usize| prob[y * side + x] > THRESH;
    // Dilation with a 2×2 kernel, as PaddleOCR's use_dilation.
    let mut bitmap = vec![false; valid_w * valid_h];
    for y in 0..valid_h {
        for x in 0..valid_w {
            bitmap[y * valid_w + x] =
                on(x, y) || (x > 0 && on(x - 1, y)) || (y > 0 && on(x, y - 1)) || (x > 0 && y > 0 && on(x - 1, y - 1));
        }
    }
    let mut seen = vec![false; bitmap.len()];
    let mut found = Vec::new();
    let mut stack = Vec::new();
    for start in 0..bitmap.len() {
        if !bitmap[start] || seen[start] {
            continue;
        }
        let (mut x0, mut y0, mut x1, mut y1) = (usize::MAX, usize::MAX, 0, 0);
        seen[start] = true;
        stack.push(start);
        while let Some(i) = stack.pop() {
            let (x, y) = (i % valid_w, i / valid_w);
            (x0, y0, x1, y1) = (x0.min(x), y0.min(y), x1.max(x), y1.max(y));
            for (dx, dy) in [(-1i64, -1i64), (0, -1), (1, -1), (-1, 0), (1, 0), (-1, 1), (0, 1), (1, 1)] {
                let (nx, ny) = (x as i64 + dx, y as i64 + dy);
                if nx < 0 || ny < 0 || nx >= valid_w as i64 || ny >= valid_h as i64 {
                    continue;
                }
                let j = ny as usize * valid_w + nx as usize;
                if bitmap[j] && !seen[j] {
                    seen[j] = true;
                    stack.push(j);
                }
            }
        }
        let (bw, bh) = (x1 - x0 + 1, y1 - y0 + 1);
        if bw.min(bh) < MIN_SIDE {
            continue;
        }
        let mut sum = 0f32;
        for y in y0..=y1 {
            sum += prob[y * side + x0..=y * side + x1].iter().sum::<f32>();
        }
        let score = sum / (bw * bh) as f32;
        if score < BOX_THRESH {
            continue;
        }
        let d = (bw * bh) as f32 * UNCLIP / (2 * (bw + bh)) as f32;
        let grow = |v: usize, by: f32| (v as f32 - by).max(0.0) as u32;
        let (gx0, gy0) = (grow(x0, d), grow(y0, d));
        let gx1 = ((x1 as f32 + d) as u32).min(valid_w as u32 - 1);
        let gy1 = ((y1 as f32 + d) as u32).min(valid_h as u32 - 1);
        found.push(TextBox { x: gx0, y: gy0, width: gx1 - gx0 + 1, height: gy1 - gy0 + 1, score });
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_region_becomes_one_box_grown_by_the_unclip_distance_and_faint_ones_are_dropped() {
        let side = 64;
        let mut prob = vec![0f32; side * side];
        for y in 10..20 {
            for x in 10..50 {
                prob[y * side + x] = 0.9;
            }
        }
        for y in 40..44 {
            for x in 5..30 {
                prob[y * side + x] = 0.35; // over THRESH but under BOX_THRESH on average
            }
        }
        let b = boxes(&prob, side, side, side);
        assert_eq!(b.len(), 1, "{b:?}");
        // 41×11 after dilation; unclip distance 41*11*1.6/(2*52) ≈ 6.9.
        assert_eq!((b[0].x, b[0].y), (3, 3));
        assert!(b[0].width >= 52 && b[0].height >= 23, "{b:?}");
    }

    #[test]
    fn the_models_input_is_bgr_normalised_and_padded_with_zeros() {
        let img = RgbImage::from_pixel(2, 1, image::Rgb([255, 0, 128]));
        let d = bgr_planes(&img, 3, 1);
        assert_eq!(d[0], (128.0 / 255.0 - 0.5) / 0.5); // blue plane first
        assert_eq!(d[3 + 1], -1.0); // green
        assert_eq!(d[6], 1.0); // red
        assert_eq!(d[2], 0.0); // padding
    }
}
