//! The rule for reading a card with two engines (`[kyc] ocr = "both"`), without IO: the appliance's read stands,
//! the vendor's is compared with it, and a disagreement on the name or number is a warning the teller must resolve
//! by eye (the read is then not offered for "verify from the card"). Also the vendor's read in the appliance's terms.

use vbank_kyc::vendor::Card;
use vbank_kyc_ocr::card::{Back, Front};

/// The vendor's front-side read as a [`Front`], with its picture and risk warnings.
pub fn front_from_vendor(card: &Card) -> Front {
    let get = |k: &str| card.get(k).map(str::to_string);
    let mut f = Front {
        name: get("姓名"),
        sex: get("性别"),
        ethnicity: get("民族"),
        address: get("住址"),
        id_number: get("公民身份号码").map(|n| n.to_ascii_uppercase()),
        ..Front::default()
    };
    f.warnings = card.warnings.iter().map(|w| format!("厂商 · vendor: {w}")).collect();
    f
}

/// The vendor's emblem-side read as a [`Back`].
pub fn back_from_vendor(card: &Card) -> Back {
    let validity = match (card.get("有效期限"), card.get("签发日期"), card.get("失效日期")) {
        (Some(v), _, _) => Some(v.to_string()),
        (None, Some(from), Some(to)) => Some(format!("{from}-{to}")),
        _ => None,
    };
    Back { authority: card.get("签发机关").map(str::to_string), validity }
}

/// Both engines' reads made one: the local fields (the vendor's where the local engine read nothing), every warning,
/// and whether the two agree on the name and number.
pub fn merge_front(local: Front, vendor: &Card) -> (Front, bool) {
    let v = front_from_vendor(vendor);
    let agree = local.name == v.name && local.id_number == v.id_number;
    let mut merged = Front {
        name: local.name.or(v.name),
        sex: local.sex.or(v.sex),
        ethnicity: local.ethnicity.or(v.ethnicity),
        address: local.address.or(v.address),
        id_number: local.id_number.or(v.id_number),
        warnings: local.warnings,
    };
    merged.warnings.extend(v.warnings);
    if !agree {
        merged.warnings.push(
            "两个识别引擎对姓名或号码的识别不一致，请目视核对证件 · The two engines disagree on the name or number: check \
             the card by eye"
                .to_string(),
        );
    }
    (merged, agree)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn card(name: &str, number: &str) -> Card {
        Card {
            fields: vec![("姓名".into(), name.into()), ("公民身份号码".into(), number.into())], warnings: vec![]
        }
    }

    fn local(name: &str, number: &str) -> Front {
        Front { name: Some(name.into()), id_number: Some(number.into()), ..Front::default() }
    }

    #[test]
    fn agreement_disagreement_and_the_vendors_warnings() {
        let (f, agree) = merge_front(local("测试甲", "11010519491231002X"), &card("测试甲", "11010519491231002x"));
        assert!(agree && f.warnings.is_empty(), "{f:?}");
        let (f, agree) = merge_front(local("测试甲", "11010519491231002X"), &card("测试乙", "11010519491231002X"));
        assert!(!agree && f.warnings.iter().any(|w| w.contains("disagree")));
        assert_eq!(f.name.as_deref(), Some("测试甲"), "the appliance's read stands");
        let (f, _) = merge_front(Front::default(), &card("测试甲", "11010519491231002X"));
        assert_eq!(f.id_number.as_deref(), Some("11010519491231002X"), "the vendor fills what was not read");
        let mut risky = card("测试甲", "11010519491231002X");
        risky.warnings = vec!["疑似复印件 · Looks like a photocopy".into()];
        assert!(front_from_vendor(&risky).warnings[0].contains("vendor: 疑似复印件"));
        let back = Card {
            fields: vec![
                ("签发机关".into(), "北京市公安局".into()),
                ("签发日期".into(), "20200101".into()),
                ("失效日期".into(), "20400101".into()),
            ],
            ..Card::default()
        };
        assert_eq!(back_from_vendor(&back).validity.as_deref(), Some("20200101-20400101"));
    }
}
