//! The fields of a resident ID card (居民身份证, GB 19781 layout) from OCR lines. Labels and values may come as one line
//! (`姓名张三`) or as two boxes on one row (`姓名` · `张三`); both are read. The number is taken only when it passes
//! GB 11643, and what the card prints is checked against what the number encodes (birth date, sex): a mismatch is a
//! warning for the teller, as a forged or altered card would show.

use crate::Line;

/// The photo side (人像面).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Front {
    /// 姓名.
    pub name: Option<String>,
    /// 性别: 男 or 女.
    pub sex: Option<String>,
    /// 民族.
    pub ethnicity: Option<String>,
    /// 住址, lines joined.
    pub address: Option<String>,
    /// 公民身份号码, valid per GB 11643.
    pub id_number: Option<String>,
    /// What does not add up, for the teller.
    pub warnings: Vec<String>,
}

/// The emblem side (国徽面).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Back {
    /// 签发机关.
    pub authority: Option<String>,
    /// 有效期限, as printed (`2015.03.07-2035.03.07`, `…-长期`).
    pub validity: Option<String>,
}

fn squeeze(s: &str) -> String {
    s.chars().filter(|c| !c.is_whitespace()).collect()
}

fn row_of(a: &Line, b: &Line) -> bool {
    let (ca, cb) = (a.area.y + a.area.height / 2, b.area.y + b.area.height / 2);
    ca.abs_diff(cb) < a.area.height.max(b.area.height) / 2 + 1
}

/// The value after `label`: the rest of its line, or else the next box to the right on the same row.
fn value_after(lines: &[Line], label: &str) -> Option<String> {
    let (i, line) = lines.iter().enumerate().find(|(_, l)| squeeze(&l.text).contains(label))?;
    let text = squeeze(&line.text);
    let rest = &text[text.find(label)? + label.len()..];
    if !rest.is_empty() {
        return Some(rest.to_string());
    }
    lines
        .iter()
        .enumerate()
        .filter(|(j, l)| *j != i && row_of(line, l) && l.area.x > line.area.x)
        .min_by_key(|(_, l)| l.area.x)
        .map(|(_, l)| squeeze(&l.text))
}

fn han_name(s: &str) -> Option<String> {
    let name: String = s.chars().filter(|c| ('\u{4e00}'..='\u{9fff}').contains(c) || *c == '·').collect();
    (name.chars().count() >= 2).then_some(name)
}

/// Every 18-character run that looks like an ID number, in reading order.
fn id_candidates(lines: &[Line]) -> Vec<String> {
    let mut out = Vec::new();
    for l in lines {
        let t: Vec<char> = squeeze(&l.text).chars().map(|c| if c == 'x' { 'X' } else { c }).collect();
        for w in t.windows(18) {
            if w[..17].iter().all(char::is_ascii_digit) && (w[17].is_ascii_digit() || w[17] == 'X') {
                out.push(w.iter().collect());
            }
        }
    }
    out
}

/// Read the photo side; `today` bounds the birth date.
pub fn front(lines: &[Line], today: vbank_kyc::id::Date) -> Front {
    let mut f = Front { name: value_after(lines, "姓名").and_then(|v| han_name(&v)), ..Front::default() };
    let sex_row = value_after(lines, "性别").unwrap_or_default();
    f.sex = sex_row.chars().find(|c| *c == '男' || *c == '女').map(String::from);
    f.ethnicity = value_after(lines, "民族").and_then(|v| {
        let e: String = v.chars().filter(|c| ('\u{4e00}'..='\u{9fff}').contains(c)).collect();
        (!e.is_empty()).then_some(e)
    });
    if let Some(start) = lines.iter().position(|l| squeeze(&l.text).contains("住址")) {
        let mut address = squeeze(&lines[start].text).replacen("住址", "", 1);
        for l in &lines[start + 1..] {
            let t = squeeze(&l.text);
            if t.contains("公民身份") || !id_candidates(std::slice::from_ref(l)).is_empty() {
                break;
            }
            address.push_str(&t);
        }
        f.address = (!address.is_empty()).then_some(address);
    }
    let candidates = id_candidates(lines);
    match candidates.iter().find_map(|c| vbank_kyc::id::parse(c, today).ok().map(|n| (c.clone(), n))) {
        Some((number, parsed)) => {
            let coded_sex = if parsed.male { "男" } else { "女" };
            if f.sex.as_deref().is_some_and(|s| s != coded_sex) {
                f.warnings
                    .push(format!("性别与号码不符 · the printed sex is not the one the number encodes ({coded_sex})"));
            }
            f.id_number = Some(number);
        }
        None if !candidates.is_empty() => {
            f.warnings.push("号码校验未通过，请核对证件 · the number read fails its check: look at the card".into())
        }
        None => {}
    }
    f
}

/// Read the emblem side.
pub fn back(lines: &[Line]) -> Back {
    Back { authority: value_after(lines, "签发机关"), validity: value_after(lines, "有效期限") }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TextBox;

    fn line(text: &str, x: u32, y: u32) -> Line {
        Line { text: text.into(), score: 0.99, area: TextBox { x, y, width: 100, height: 20, score: 0.9 } }
    }

    fn today() -> vbank_kyc::id::Date {
        vbank_kyc::id::Date { year: 2026, month: 11, day: 27 }
    }

    /// A valid synthetic number (region 110101) with its check character.
    fn number(first17: &str) -> String {
        format!("{first17}{}", vbank_kyc::id::check_char(first17.as_bytes()))
    }

    #[test]
    fn fields_are_read_from_one_line_or_from_the_box_beside_the_label() {
        let id = number("11010119900307002");
        let lines = vec![
            line("姓名", 10, 10),
            line("欧阳娜娜", 80, 12),
            line("性别 女 民族 汉", 10, 40),
            line("出生 1990 年 3 月 7 日", 10, 70),
            line("住址 北京市东城区", 10, 100),
            line("景山前街4号", 60, 125),
            line(&format!("公民身份号码 {id}"), 10, 180),
        ];
        let f = front(&lines, today());
        assert_eq!(f.name.as_deref(), Some("欧阳娜娜"));
        assert_eq!((f.sex.as_deref(), f.ethnicity.as_deref()), (Some("女"), Some("汉")));
        assert_eq!(f.address.as_deref(), Some("北京市东城区景山前街4号"));
        assert_eq!(f.id_number.as_deref(), Some(id.as_str()));
        // The 17th digit (2) is even: the number encodes a woman, as printed.
        assert!(f.warnings.is_empty(), "{:?}", f.warnings);
    }

    #[test]
    fn a_number_failing_its_check_or_a_sex_that_disagrees_is_a_warning() {
        let id = number("11010119900307001");
        let wrong = format!("{}{}", &id[..17], if id.ends_with('0') { '1' } else { '0' });
        let f = front(&[line("姓名张三", 10, 10), line(&format!("公民身份号码{wrong}"), 10, 100)], today());
        assert_eq!(f.id_number, None);
        assert!(f.warnings[0].contains("check"));
        let f = front(&[line("性别 女", 10, 10), line(&id, 10, 100)], today());
        assert!(f.warnings[0].contains("sex"), "{:?}", f.warnings);
    }

    #[test]
    fn the_back_gives_authority_and_validity() {
        let b = back(&[line("签发机关 北京市公安局东城分局", 10, 10), line("有效期限 2015.03.07-2035.03.07", 10, 40)]);
        assert_eq!(b.authority.as_deref(), Some("北京市公安局东城分局"));
        assert_eq!(b.validity.as_deref(), Some("2015.03.07-2035.03.07"));
    }
}
