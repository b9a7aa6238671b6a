//! Unified social credit codes (统一社会信用代码, GB 32100-2015), the identifier of a company opening an account.
//!
//! 18 characters from a 31-character alphabet (digits and capitals without I, O, S, V, Z): the registering
//! authority, the organisation type, a 6-digit region code, the 9-character organisation code of GB 11714 (with its
//! own MOD 11 check) and a MOD 31 check character.

/// The alphabet, in value order.
const ALPHABET: &[u8; 31] = b"0123456789ABCDEFGHJKLMNPQRTUWXY";
const WEIGHTS: [u32; 17] = [1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28];
const ORG_WEIGHTS: [u32; 8] = [3, 7, 9, 10, 5, 8, 4, 2];

/// Why a code is not a valid USCC. Each message says what to check.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UsccError {
    /// Not 18 characters.
    #[error("a unified social credit code has 18 characters; this one has {0}")]
    Length(usize),
    /// A character outside the alphabet (I, O, S, V and Z are never used).
    #[error("{0:?} is not used in unified social credit codes (digits and capitals except I, O, S, V, Z)")]
    Character(char),
    /// The region code (characters 3–8) is not digits or was never assigned.
    #[error("the region code {0} was never assigned (GB/T 2260)")]
    Region(String),
    /// The embedded organisation code's check (character 17) does not match.
    #[error("the organisation code inside (characters 9-17) fails its check (expected {expected})")]
    OrganisationCheck {
        /// What characters 9–16 call for.
        expected: char,
    },
    /// The last character does not match.
    #[error("the check character does not match (expected {expected}): a character was probably misread")]
    Check {
        /// What the first 17 call for.
        expected: char,
    },
}

fn value(c: u8) -> Option<u32> {
    ALPHABET.iter().position(|&a| a == c).map(|v| v as u32)
}

/// GB 11714's check character for an organisation code's first 8 characters (digits or capitals).
pub fn organisation_check(first8: &[u8]) -> Option<char> {
    let mut sum = 0;
    for (c, w) in first8.iter().zip(ORG_WEIGHTS) {
        let v = match c {
            b'0'..=b'9' => u32::from(c - b'0'),
            b'A'..=b'Z' => u32::from(c - b'A') + 10,
            _ => return None,
        };
        sum += v * w;
    }
    Some(match 11 - sum % 11 {
        10 => 'X',
        11 => '0',
        n => char::from(b'0' + n as u8),
    })
}

/// The check character for a code's first 17 characters (all in the alphabet).
pub fn check_char(first17: &[u8]) -> Option<char> {
    let mut sum = 0;
    for (c, w) in first17.iter().zip(WEIGHTS) {
        sum += value(*c)? * w;
    }
    Some(ALPHABET[((31 - sum % 31) % 31) as usize] as char)
}

/// Check a code as written (spaces around it and lower case are forgiven); the code in canonical form.
pub fn parse(input: &str) -> Result<String, UsccError> {
    let s = input.trim().to_ascii_uppercase();
    if s.chars().count() != 18 {
        return Err(UsccError::Length(s.chars().count()));
    }
    if let Some(c) = s.chars().find(|c| !c.is_ascii() || value(*c as u8).is_none()) {
        return Err(UsccError::Character(c));
    }
    let b = s.as_bytes();
    let region = &s[2..8];
    if !region.bytes().all(|c| c.is_ascii_digit()) || !cn_id_card::region::validate_code(region) {
        return Err(UsccError::Region(region.to_string()));
    }
    let org = organisation_check(&b[8..16]).ok_or(UsccError::Character(b[8] as char))?;
    if org != b[16] as char {
        return Err(UsccError::OrganisationCheck { expected: org });
    }
    let expected = check_char(&b[..17]).ok_or(UsccError::Character(b[0] as char))?;
    if expected != b[17] as char {
        return Err(UsccError::Check { expected });
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn published_codes_are_valid() {
        for c in ["91440300708461136T", "91330100716105852F", "91110108551385082Q", " 91110108551385082q"] {
            assert!(parse(c).is_ok(), "{c}: {:?}", parse(c));
        }
    }

    #[test]
    fn each_part_is_checked_and_named() {
        assert_eq!(parse("91440300708461136"), Err(UsccError::Length(17)));
        assert_eq!(parse("91440300708461136I"), Err(UsccError::Character('I')));
        assert!(matches!(parse("91440300708461137T"), Err(UsccError::OrganisationCheck { expected: '6' })));
        assert!(matches!(parse("91440300708461136A"), Err(UsccError::Check { expected: 'T' })));
        assert!(matches!(parse("91449900708461136T"), Err(UsccError::Region(_))));
    }

    #[test]
    fn every_single_character_substitution_is_caught() {
        let good = b"91440300708461136T";
        for i in 0..18 {
            for &c in ALPHABET {
                if good[i] == c {
                    continue;
                }
                let mut b = good.to_vec();
                b[i] = c;
                let s = String::from_utf8(b).unwrap();
                assert!(parse(&s).is_err(), "{s} must not pass");
            }
        }
    }
}
