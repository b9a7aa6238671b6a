//! Synthetic resident ID cards for tests and benchmarks: generated names and valid numbers drawn in the card's layout
//! with a CJK font from Debian (WenQuanYi Zen Hei) by ffmpeg, clean and degraded (blur, noise, a small rotation, JPEG
//! at low quality, three quarters the size). No real person's data.

use std::path::{Path, PathBuf};
use std::process::Command;

const FONT: &str = "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc";
const DIGITS_FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSansMono-Bold.ttf";
const SURNAMES: [&str; 14] = ["王", "李", "张", "刘", "陈", "杨", "黄", "赵", "吴", "周", "徐", "孙", "欧阳", "司马"];
const GIVEN: [&str; 24] = [
    "伟", "芳", "娜", "敏", "静", "丽", "强", "磊", "军", "洋", "勇", "艳", "杰", "涛", "明", "超", "秀", "霞", "平",
    "刚", "英", "华", "兰", "辉",
];
const REGIONS: [&str; 5] = ["110101", "310104", "440305", "510107", "330106"];

/// A deterministic generator (xorshift), so every run draws the same cards.
pub struct Draw(pub u64);

impl Draw {
    /// A number in `0..n`.
    pub fn next(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

/// A made-up card holder.
pub struct Person {
    /// 姓名.
    pub name: String,
    /// Sex, as the number encodes it.
    pub male: bool,
    /// Year, month, day.
    pub birth: (u32, u32, u32),
    /// A valid 18-character number.
    pub id: String,
}

/// The next made-up person.
pub fn person(d: &mut Draw) -> Person {
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

fn ffmpeg(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y"])
        .args(args)
        .output()
        .map_err(|e| format!("ffmpeg: {e} (install ffmpeg)"))?;
    if out.status.success() { Ok(()) } else { Err(format!("ffmpeg: {}", String::from_utf8_lossy(&out.stderr))) }
}

/// Draw `p`'s photo side into `dir` as `<n>-clean.png` and `<n>-degraded.jpg`.
pub fn draw_card(dir: &Path, n: usize, p: &Person) -> Result<(PathBuf, PathBuf), String> {
    let text = |name: &str, value: &str| {
        let path = dir.join(format!("{n}-{name}.txt"));
        std::fs::write(&path, value).map(|_| path.display().to_string()).map_err(|e| e.to_string())
    };
    let field = |file: String, font: &str, size: u32, x: u32, y: u32, color: &str| {
        format!("drawtext=fontfile={font}:textfile={file}:fontsize={size}:fontcolor={color}:x={x}:y={y}")
    };
    let label = |name: &str, value: &str, x: u32, y: u32| {
        Ok::<_, String>(field(text(name, value)?, FONT, 24, x, y, "0x4a5a6a"))
    };
    let value = |name: &str, v: &str, x: u32, y: u32| Ok::<_, String>(field(text(name, v)?, FONT, 28, x, y, "black"));
    let (y, m, d) = p.birth;
    let filters = [
        "drawbox=x=560:y=70:w=230:h=290:color=0xc8d0d8:t=fill".to_string(),
        label("l-name", "姓名", 50, 70)?,
        field(text("name", &p.name)?, FONT, 32, 140, 66, "black"),
        label("l-sex", "性别", 50, 130)?,
        value("sex", if p.male { "男" } else { "女" }, 140, 128)?,
        label("l-eth", "民族", 250, 130)?,
        value("eth", "汉", 340, 128)?,
        label("l-birth", "出生", 50, 190)?,
        value("birth", &format!("{y} 年 {m} 月 {d} 日"), 140, 188)?,
        label("l-addr", "住址", 50, 250)?,
        value("addr1", "北京市东城区景山前街", 140, 248)?,
        value("addr2", "4号院2号楼301室", 140, 290)?,
        label("l-id", "公民身份号码", 50, 440)?,
        field(text("id", &p.id)?, DIGITS_FONT, 34, 250, 434, "black"),
    ];
    let clean = dir.join(format!("{n}-clean.png"));
    let degraded = dir.join(format!("{n}-degraded.jpg"));
    let (c, dg) = (clean.display().to_string(), degraded.display().to_string());
    ffmpeg(&["-f", "lavfi", "-i", "color=c=0xe6ecef:s=856x540", "-vf", &filters.join(","), "-frames:v", "1", &c])?;
    let angle = format!("rotate={:.4}:fillcolor=white", (n as f64 % 5.0 - 2.0) * 0.6_f64.to_radians());
    let degrade = format!("gblur=sigma=1.1,noise=alls=14:allf=t,{angle},scale=642:405");
    ffmpeg(&["-i", &c, "-vf", &degrade, "-q:v", "12", "-frames:v", "1", &dg])?;
    Ok((clean, degraded))
}
