//! Resident identity card numbers (公民身份号码, GB 11643-1999).
//!
//! 18 characters: a 6-digit region code (GB/T 2260), the birth date `YYYYMMDD`, a 3-digit sequence (odd for men), and
//! a check character (ISO 7064 MOD 11-2, `X` for 10). The same layout serves the residence permits of Hong Kong,
//! Macau and Taiwan residents (region 810000, 820000, 830000) and, since 2023, the foreigners' permanent-residence
//! card (a leading 9, then a province code). Cards issued before 1999 carry 15 digits: no century, no check; they
//! convert to 18 by inserting `19` and computing the check.

/// A date, for birth dates and "today".
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Date {
    /// Year.
    pub year: u16,
    /// Month, 1–12.
    pub month: u8,
    /// Day, 1–31.
    pub day: u8,
}

impl Date {
    /// The date in UTC at `unix_s` seconds.
    pub fn from_unix(unix_s: u64) -> Date {
        let (y, m, d) = vbank_log::civil_from_days((unix_s / 86_400) as i64);
        Date { year: y as u16, month: m as u8, day: d as u8 }
    }

    /// Days since 1970-01-01 (the inverse of [`Date::from_unix`]); `None` for an impossible date or one before 1970.
    pub fn days_since_epoch(self) -> Option<u64> {
        if !self.valid() {
            return None;
        }
        let y = i64::from(self.year) - i64::from(self.month <= 2);
        let era = y.div_euclid(400);
        let yoe = y - era * 400;
        let doy = (153 * ((i64::from(self.month) + 9) % 12) + 2) / 5 + i64::from(self.day) - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        u64::try_from(era * 146_097 + doe - 719_468).ok()
    }

    fn valid(self) -> bool {
        let y = self.year;
        let leap = (y.is_multiple_of(4) && !y.is_multiple_of(100)) || y.is_multiple_of(400);
        let days = match self.month {
            1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
            4 | 6 | 9 | 11 => 30,
            2 if leap => 29,
            2 => 28,
            _ => return false,
        };
        (1..=days).contains(&self.day)
    }
}

/// Whose card it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Holder {
    /// A citizen of the mainland (居民身份证).
    Resident,
    /// A Hong Kong, Macau or Taiwan resident's residence permit (港澳台居民居住证).
    HkMacauTaiwan,
    /// A foreigner's permanent-residence card, 2023 format (外国人永久居留身份证).
    PermanentResident,
}

/// A checked ID number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdNumber {
    /// The 18-character form (a 15-digit number converted), `X` upper case.
    pub number: String,
    /// Whose card.
    pub holder: Holder,
    /// Birth date.
    pub birth: Date,
    /// From the sequence's parity.
    pub male: bool,
    /// The number was given in the legacy 15-digit form.
    pub legacy: bool,
}

/// Why a number is not a valid ID number. Each message says what to check.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// Neither 15 nor 18 characters.
    #[error("an ID number has 18 characters (or 15 on cards issued before 1999); this one has {0}")]
    Length(usize),
    /// A character other than a digit (or `X` last).
    #[error("an ID number is digits, with X allowed only as the last character")]
    Characters,
    /// The check character does not match.
    #[error("the check character does not match (expected {expected}): a digit was probably misread or mistyped")]
    Check {
        /// What the first 17 digits call for.
        expected: char,
    },
    /// No such date, or a date in the future or before 1850.
    #[error("the birth date {0} is not a real date of birth")]
    BirthDate(String),
    /// The region code is not one GB/T 2260 ever assigned.
    #[error("the region code {0} was never assigned (GB/T 2260)")]
    Region(String),
}

const WEIGHTS: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
const CHECK: &[u8; 11] = b"10X98765432";
/// Province-level codes (the first two digits of a region code), for the permanent-residence card.
const PROVINCES: [&str; 31] = [
    "11", "12", "13", "14", "15", "21", "22", "23", "31", "32", "33", "34", "35", "36", "37", "41", "42", "43", "44",
    "45", "46", "50", "51", "52", "53", "54", "61", "62", "63", "64", "65",
];

/// The MOD 11-2 check character of the first 17 digits.
pub fn check_char(first17: &[u8]) -> char {
    let sum: u32 = first17.iter().zip(WEIGHTS).map(|(d, w)| u32::from(d - b'0') * w).sum();
    CHECK[(sum % 11) as usize] as char
}

/// Check an ID number as written on a card or typed by a teller (spaces around it and a lower-case `x` are
/// forgiven); `today` bounds the birth date.
pub fn parse(input: &str, today: Date) -> Result<IdNumber, IdError> {
    let s = input.trim().to_ascii_uppercase();
    let b = s.as_bytes();
    let (full, legacy) = match b.len() {
        18 => {
            if !b[..17].iter().all(u8::is_ascii_digit) || !(b[17].is_ascii_digit() || b[17] == b'X') {
                return Err(IdError::Characters);
            }
            let expected = check_char(&b[..17]);
            if expected != b[17] as char {
                return Err(IdError::Check { expected });
            }
            (s.clone(), false)
        }
        15 => {
            if !b.iter().all(u8::is_ascii_digit) {
                return Err(IdError::Characters);
            }
            let mut first17 = format!("{}19{}", &s[..6], &s[6..]);
            first17.push(check_char(first17.as_bytes()));
            (first17, true)
        }
        _ => return Err(IdError::Length(s.chars().count())),
    };
    let digits = |r: std::ops::Range<usize>| full[r].parse::<u16>().unwrap_or(0);
    let birth = Date { year: digits(6..10), month: digits(10..12) as u8, day: digits(12..14) as u8 };
    if !birth.valid() || birth > today || birth.year < 1850 {
        return Err(IdError::BirthDate(full[6..14].to_string()));
    }
    let region = &full[..6];
    let holder = match &full[..2] {
        "81" | "82" | "83" if &full[2..6] == "0000" => Holder::HkMacauTaiwan,
        p if p.starts_with('9') && !legacy => {
            if !PROVINCES.contains(&&full[1..3]) {
                return Err(IdError::Region(region.to_string()));
            }
            Holder::PermanentResident
        }
        _ => {
            if !cn_id_card::region::validate_code(region) {
                return Err(IdError::Region(region.to_string()));
            }
            Holder::Resident
        }
    };
    let male = (full.as_bytes()[16] - b'0') % 2 == 1;
    Ok(IdNumber { number: full, holder, birth, male, legacy })
}

#[cfg(test)]
mod tests {
    use super::*;

    const TODAY: Date = Date { year: 2026, month: 11, day: 27 };

    #[test]
    fn the_standards_examples_are_valid() {
        let a = parse("11010519491231002X", TODAY).unwrap();
        assert_eq!((a.birth, a.male, a.holder), (Date { year: 1949, month: 12, day: 31 }, false, Holder::Resident));
        let b = parse(" 440524188001010014 ", TODAY).unwrap();
        assert_eq!((b.birth.year, b.male), (1880, true));
        assert!(parse("11010519491231002x", TODAY).is_ok(), "a lower-case x is the same number");
    }

    #[test]
    fn tencents_documentation_sample_fails_its_check() {
        assert!(matches!(parse("11204416541220243X", TODAY), Err(IdError::Check { .. })));
    }

    #[test]
    fn a_retired_region_code_is_still_valid() {
        // 110103 崇文区, abolished in 2010, is on cards still in use.
        let mut n = String::from("11010319800101001");
        n.push(check_char(n.as_bytes()));
        assert_eq!(parse(&n, TODAY).unwrap().holder, Holder::Resident);
        let mut bad = String::from("11019919800101001");
        bad.push(check_char(bad.as_bytes()));
        assert_eq!(parse(&bad, TODAY), Err(IdError::Region("110199".into())));
    }

    #[test]
    fn legacy_numbers_convert_to_18_digits() {
        let id = parse("110105491231002", TODAY).unwrap();
        assert_eq!(id.number, "11010519491231002X");
        assert!(id.legacy);
    }

    #[test]
    fn permits_and_permanent_residence_cards() {
        let with_check = |first17: &str| format!("{first17}{}", check_char(first17.as_bytes()));
        assert_eq!(parse(&with_check("81000019900101001"), TODAY).unwrap().holder, Holder::HkMacauTaiwan);
        assert_eq!(parse(&with_check("93115619900101001"), TODAY).unwrap().holder, Holder::PermanentResident);
        assert!(matches!(parse(&with_check("99915619900101001"), TODAY), Err(IdError::Region(_))));
    }

    #[test]
    fn bad_dates_lengths_and_characters_say_so() {
        let with_check = |first17: &str| format!("{first17}{}", check_char(first17.as_bytes()));
        assert!(matches!(parse(&with_check("11010519490230002"), TODAY), Err(IdError::BirthDate(_))));
        assert!(matches!(parse(&with_check("11010520300101002"), TODAY), Err(IdError::BirthDate(_))));
        assert_eq!(parse("1101051949", TODAY), Err(IdError::Length(10)));
        assert_eq!(parse("1101051949123100XX", TODAY), Err(IdError::Characters));
        assert!(parse("11010519491231002", TODAY).unwrap_err().to_string().contains("18 characters"));
    }

    #[test]
    fn every_single_digit_error_is_caught() {
        // MOD 11-2 catches every single substituted digit: flip each position of a valid number.
        let good = "11010519491231002X";
        for i in 0..17 {
            for d in b'0'..=b'9' {
                let mut b = good.as_bytes().to_vec();
                if b[i] == d {
                    continue;
                }
                b[i] = d;
                let s = String::from_utf8(b).unwrap();
                assert!(parse(&s, TODAY).is_err(), "{s} must not pass");
            }
        }
    }
}
