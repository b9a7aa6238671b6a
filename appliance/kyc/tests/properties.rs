//! Properties of the validators and masks over generated inputs (proptest): what is built valid parses back to what
//! it encodes; every single-character substitution and adjacent transposition is caught; masks keep their shape and
//! hide the middle; tokens are stable and kept apart by kind.

use proptest::prelude::*;
use vbank_kyc::id::{self, Date};
use vbank_kyc::{mask, uscc};

const TODAY: Date = Date { year: 2026, month: 11, day: 27 };
const REGIONS: [&str; 6] = ["110101", "310104", "440305", "510107", "330106", "120101"];

prop_compose! {
    /// A valid 18-character resident ID number and what it encodes.
    fn resident()(region in 0..REGIONS.len(), year in 1900u16..2020, month in 1u8..=12, day in 1u8..=28, seq in 0u16..1000)
        -> (String, Date, bool) {
        let first17 = format!("{}{year:04}{month:02}{day:02}{seq:03}", REGIONS[region]);
        (format!("{first17}{}", id::check_char(first17.as_bytes())), Date { year, month, day }, seq % 2 == 1)
    }
}

/// USCC alphabet (GB 32100: digits and capitals without I, O, S, V, Z).
const USCC: &[u8] = b"0123456789ABCDEFGHJKLMNPQRTUWXY";

prop_compose! {
    /// A valid unified social credit code: authority 9 (industry and commerce), category 1 (enterprise), region
    /// 110101, an organisation code with its GB 11714 check, and the GB 32100 check.
    fn credit_code()(body in proptest::collection::vec(0usize..USCC.len(), 8)) -> String {
        let first8: String = body.iter().map(|&i| USCC[i] as char).collect();
        let org_check = uscc::organisation_check(first8.as_bytes()).unwrap();
        let first17 = format!("91110101{first8}{org_check}");
        format!("{first17}{}", uscc::check_char(first17.as_bytes()).unwrap())
    }
}

proptest! {
    #[test]
    fn a_day_converts_to_a_date_and_back(days in 0u64..80_000) {
        let d = vbank_kyc::id::Date::from_unix(days * 86_400 + 43_210);
        prop_assert_eq!(d.days_since_epoch(), Some(days));
    }

    #[test]
    fn a_number_built_valid_parses_to_what_it_encodes((number, birth, male) in resident()) {
        let parsed = id::parse(&number, TODAY).unwrap();
        prop_assert_eq!(parsed.number, number);
        prop_assert_eq!(parsed.birth, birth);
        prop_assert_eq!(parsed.male, male);
    }

    #[test]
    fn any_single_digit_changed_is_caught((number, _, _) in resident(), at in 0usize..17, to in 0u8..10) {
        let mut b = number.into_bytes();
        prop_assume!(b[at] != b'0' + to);
        b[at] = b'0' + to;
        prop_assert!(id::parse(&String::from_utf8(b).unwrap(), TODAY).is_err());
    }

    #[test]
    fn any_adjacent_transposition_is_caught((number, _, _) in resident(), at in 0usize..16) {
        let mut b = number.into_bytes();
        prop_assume!(b[at] != b[at + 1]);
        b.swap(at, at + 1);
        prop_assert!(id::parse(&String::from_utf8(b).unwrap(), TODAY).is_err());
    }

    #[test]
    fn the_default_mask_keeps_region_and_last_four_and_hides_the_rest((number, _, _) in resident()) {
        let shown = mask::Rules::default().id(&number);
        prop_assert_eq!(shown.chars().count(), 18);
        prop_assert_eq!(&shown[..6], &number[..6]);
        prop_assert_eq!(&shown[14..], &number[14..]);
        prop_assert!(shown[6..14].chars().all(|c| c == '*'));
    }

    #[test]
    fn a_masked_han_name_keeps_its_first_character_shows_at_most_three_and_is_never_the_name(
        name in "[\u{4e00}-\u{9fa5}]{2,6}"
    ) {
        let shown = mask::name(&name);
        prop_assert_eq!(shown.chars().next(), name.chars().next());
        prop_assert!(shown.contains('*'));
        prop_assert!(shown.chars().filter(|c| *c != '*').count() <= 3);
        prop_assert_ne!(shown, name);
    }

    #[test]
    fn tokens_are_stable_and_kept_apart_by_value_and_kind(a in "[0-9]{17}[0-9X]", b in "[0-9]{17}[0-9X]") {
        let key = b"a token key of at least thirty-two bytes";
        prop_assert_eq!(mask::token(key, "id", &a), mask::token(key, "id", &a));
        prop_assert_ne!(mask::token(key, "id", &a), mask::token(key, "name", &a));
        if a != b {
            prop_assert_ne!(mask::token(key, "id", &a), mask::token(key, "id", &b));
        }
        prop_assert!(!mask::token(key, "id", &a).contains(&a));
    }

    #[test]
    fn a_credit_code_built_valid_parses_and_any_single_change_is_caught(
        code in credit_code(), at in 0usize..18, to in 0usize..31
    ) {
        prop_assert_eq!(uscc::parse(&code).unwrap(), code.clone());
        let mut b = code.into_bytes();
        prop_assume!(b[at] != USCC[to]);
        b[at] = USCC[to];
        prop_assert!(uscc::parse(&String::from_utf8(b).unwrap()).is_err());
    }
}
