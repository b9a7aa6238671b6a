//! OCR exact-match rates on synthetic resident ID cards: generated names and valid numbers drawn with a CJK font from
//! Debian (WenQuanYi Zen Hei) by ffmpeg, each read clean and degraded (blur, noise, a small rotation, JPEG at low
//! quality, three quarters the size). Prints the rates; fails under 90 % clean or 80 % degraded. Nothing read is
//! printed: the log scan of `tests/run.sh` must find no ID number or name.
//!
//! Needs the models (`tests/setup.sh` installs them in `~/.cache/vbank/models`; `VBANK_MODELS` overrides).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use vbank_kyc::id::Date;
use vbank_kyc_ocr::{Ocr, card};

const CARDS: usize = 20;
const FONT: &str = "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc";
const DIGITS_FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSansMono-Bold.ttf";
const SURNAMES: [&str; 14] = ["王", "李", "张", "刘", "陈", "杨", "黄", "赵", "吴", "周", "徐", "孙", "欧阳", "司马"];
const GIVEN: [&str; 24] = [
    "伟", "芳", "娜", "敏", "静", "丽", "强", "磊", "军", "洋", "勇", "艳", "杰", "涛", "明", "超", "秀", "霞", "平",
    "刚", "英", "华", "兰", "辉",
];
const REGIONS: [&str; 5] = ["110101", "310104", "440305", "510107", "330106"];

/// A deterministic generator (xorshift), so every run draws the same cards.
struct Draw(u64);

impl Draw {
    fn next(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

struct Person {
    name: String,
    male: bool,
    birth: (u32, u32, u32),
    id: String,
}

fn person(d: &mut Draw) -> Person {
    let mut name = SURNAMES[d.next(SURNAMES.len())].to_string();
    for _ in 0..1 + d.next(2) {
        name.push_str(GIVEN[d.next(GIVEN.len())]);
    }
    let birth = (1950 + d.next(55) as u32, 1 + d.next(12) as u32, 1 + d.next(28) as u32);
    let seq = d.next(999);
    let male = seq % 2 == 1;
    let first17 = format!("{}{:04}{:02}{:02}{:03}", REGIONS[d.next(REGIONS.len())], birth.0, birth.1, birth.2, seq);
    let id = format!("{first17}{}", vbank_kyc::id::check_char(first17.as_bytes()));
    Person { name, male, birth, id }
}

/// The card's photo side as a PNG in `dir`, and the same card degraded.
fn draw_card(dir: &Path, n: usize, p: &Person) -> (PathBuf, PathBuf) {
    let text = |name: &str, value: &str| {
        let path = dir.join(format!("{n}-{name}.txt"));
        std::fs::write(&path, value).unwrap();
        path.display().to_string()
    };
    let field = |file: String, font: &str, size: u32, x: u32, y: u32, color: &str| {
        format!("drawtext=fontfile={font}:textfile={file}:fontsize={size}:fontcolor={color}:x={x}:y={y}")
    };
    let label = |name: &str, value: &str, x: u32, y: u32| field(text(name, value), FONT, 24, x, y, "0x4a5a6a");
    let (y, m, d) = p.birth;
    let filters = [
        "drawbox=x=560:y=70:w=230:h=290:color=0xc8d0d8:t=fill".to_string(),
        label("l-name", "姓名", 50, 70),
        field(text("name", &p.name), FONT, 32, 140, 66, "black"),
        label("l-sex", "性别", 50, 130),
        field(text("sex", if p.male { "男" } else { "女" }), FONT, 28, 140, 128, "black"),
        label("l-eth", "民族", 250, 130),
        field(text("eth", "汉"), FONT, 28, 340, 128, "black"),
        label("l-birth", "出生", 50, 190),
        field(text("birth", &format!("{y} 年 {m} 月 {d} 日")), FONT, 28, 140, 188, "black"),
        label("l-addr", "住址", 50, 250),
        field(text("addr1", "北京市东城区景山前街"), FONT, 28, 140, 248, "black"),
        field(text("addr2", "4号院2号楼301室"), FONT, 28, 140, 290, "black"),
        label("l-id", "公民身份号码", 50, 440),
        field(text("id", &p.id), DIGITS_FONT, 34, 250, 434, "black"),
    ];
    let clean = dir.join(format!("{n}-clean.png"));
    let degraded = dir.join(format!("{n}-degraded.jpg"));
    let run = |args: &[&str]| {
        let out =
            Command::new("ffmpeg").args(["-hide_banner", "-loglevel", "error", "-y"]).args(args).output().unwrap();
        assert!(out.status.success(), "ffmpeg: {}", String::from_utf8_lossy(&out.stderr));
    };
    let graph = filters.join(",");
    run(&["-f", "lavfi", "-i", "color=c=0xe6ecef:s=856x540", "-vf", &graph, "-frames:v", "1", clean.to_str().unwrap()]);
    let angle = format!("rotate={:.4}:fillcolor=white", (n as f64 % 5.0 - 2.0) * 0.6_f64.to_radians());
    let degrade = format!("gblur=sigma=1.1,noise=alls=14:allf=t,{angle},scale=642:405");
    run(&["-i", clean.to_str().unwrap(), "-vf", &degrade, "-q:v", "12", "-frames:v", "1", degraded.to_str().unwrap()]);
    (clean, degraded)
}

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
        let (clean, degraded) = draw_card(&dir, n, &p);
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
