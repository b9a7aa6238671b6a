//! OCR exact-match rates on synthetic resident ID cards ([`vbank_kyc_ocr::synthetic`]: generated names and valid
//! numbers drawn with a CJK font from Debian by ffmpeg), each read clean and degraded (blur, noise, a small rotation,
//! JPEG at low quality, three quarters the size). Prints the rates; fails under 90 % clean or 80 % degraded. Nothing read is
//! printed: the log scan of `tests/run.sh` must find no ID number or name.
//!
//! Needs the models (`tests/setup.sh` installs them in `~/.cache/vbank/models`; `VBANK_MODELS` overrides).

use std::path::PathBuf;
use std::time::Instant;

use vbank_kyc::id::Date;
use vbank_kyc_ocr::synthetic::{Draw, draw_card, person};
use vbank_kyc_ocr::{Ocr, card};

const CARDS: usize = 20;

fn models() -> PathBuf {
    std::env::var_os("VBANK_MODELS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache/vbank/models"))
}

#[test]
fn id_number_and_name_are_read_exactly_from_clean_and_degraded_cards() {
    let ocr = Ocr::load(&models()).expect("models (run tests/setup.sh)");
    let dir = std::env::temp_dir().join(format!("vbank-cards-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let today = Date { year: 2026, month: 11, day: 27 };
    let mut draw = Draw(0x005e_ed1d_ca4d);
    let (mut id_ok, mut name_ok, mut millis) = ([0usize; 2], [0usize; 2], Vec::new());
    for n in 0..CARDS {
        let p = person(&mut draw);
        let (clean, degraded) = draw_card(&dir, n, &p).unwrap();
        for (k, path) in [clean, degraded].iter().enumerate() {
            let image = image::open(path).unwrap().to_rgb8();
            let started = Instant::now();
            let lines = ocr.read(&image).unwrap();
            millis.push(started.elapsed().as_millis());
            let f = card::front(&lines, today);
            id_ok[k] += usize::from(f.id_number.as_deref() == Some(p.id.as_str()));
            name_ok[k] += usize::from(f.name.as_deref() == Some(p.name.as_str()));
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    millis.sort_unstable();
    println!(
        "OCR exact match on {CARDS} synthetic ID cards: ID number clean {}/{CARDS}, degraded {}/{CARDS}; name clean \
         {}/{CARDS}, degraded {}/{CARDS}; median {} ms per card (this build's profile)",
        id_ok[0],
        id_ok[1],
        name_ok[0],
        name_ok[1],
        millis[millis.len() / 2]
    );
    assert!(id_ok[0] * 10 >= CARDS * 9 && name_ok[0] * 10 >= CARDS * 9, "clean cards under 90 %");
    assert!(id_ok[1] * 10 >= CARDS * 8 && name_ok[1] * 10 >= CARDS * 8, "degraded cards under 80 %");
}

#[test]
fn a_model_that_is_not_the_pinned_one_is_refused() {
    let dir = std::env::temp_dir().join(format!("vbank-badmodel-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(vbank_kyc_ocr::DET_MODEL.0), b"not a model").unwrap();
    let e = Ocr::load(&dir).err().expect("refused");
    let _ = std::fs::remove_dir_all(&dir);
    assert!(e.to_string().contains("is not the pinned") && e.to_string().contains("fetch-ocr.sh"), "{e}");
}
