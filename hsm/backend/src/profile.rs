//! Vendor profiles: which mechanism number a given HSM uses for each operation, how it behaves, and which software
//! fallback is allowed where it lacks an algorithm.
//!
//! Chinese HSMs expose SM2/SM3/SM4 through vendor-defined mechanism numbers that differ per vendor (and sometimes
//! per firmware build), so keyd never hard-codes them: it asks the profile for `sm2-sign-raw`, `sm3`, … Profiles ship
//! for SoftHSM, Sansec, TASS and Thales Luna (`hsm/profiles/*.toml`); a bank can point `[hsm] profile` at its own.

use std::collections::BTreeMap;

use toml_edit::{Document, Item, Value};

use crate::HsmError;

/// How the HSM returns SM2 signatures, if it signs SM2 at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Sm2Signing {
    /// No SM2 in the HSM.
    None,
    /// Raw-sign mechanism over e = SM3(Z ‖ M); signature is `r ‖ s`.
    Raw,
    /// Raw-sign mechanism; signature is DER.
    RawDer,
}

/// A vendor profile.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Profile {
    /// Profile name.
    pub name: String,
    /// Vendor.
    pub vendor: String,
    /// Generic operation name → PKCS#11 mechanism type.
    pub mechanisms: BTreeMap<String, u64>,
    /// SM2 signing behaviour.
    pub sm2: Sm2Signing,
    /// Allowed software fallbacks, by capability (`sm2-sign`, `sm4-data`).
    pub fallbacks: BTreeMap<String, String>,
}

const BUILTIN: &[(&str, &str)] = &[
    ("softhsm", include_str!("../../profiles/softhsm.toml")),
    ("sansec", include_str!("../../profiles/sansec.toml")),
    ("tass", include_str!("../../profiles/tass.toml")),
    ("luna", include_str!("../../profiles/luna.toml")),
];

/// Standard mechanism names a profile may use instead of numbers.
const STANDARD: &[(&str, u64)] = &[
    ("CKM_AES_KEY_GEN", 0x1080),
    ("CKM_AES_KEY_WRAP", 0x2109),
    ("CKM_AES_KEY_WRAP_PAD", 0x210A),
    ("CKM_EC_KEY_PAIR_GEN", 0x1040),
    ("CKM_ECDSA", 0x1041),
    ("CKM_AES_GCM", 0x1087),
];

impl Profile {
    /// A profile shipped with vbank, by name.
    pub fn builtin(name: &str) -> Result<Profile, HsmError> {
        let (_, text) = BUILTIN.iter().find(|(n, _)| *n == name).ok_or_else(|| HsmError::Profile {
            profile: name.to_string(),
            problem: format!(
                "no such built-in profile (built in: {})",
                BUILTIN.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
            ),
        })?;
        Profile::parse(name, text)
    }

    /// Parse profile text; `origin` names it in errors.
    pub fn parse(origin: &str, text: &str) -> Result<Profile, HsmError> {
        let err = |problem: String| HsmError::Profile { profile: origin.to_string(), problem };
        let doc = Document::parse(text).map_err(|e| err(e.to_string()))?;
        let root = doc.as_table();
        let string = |item: Option<&Item>, key: &str| {
            item.and_then(Item::as_str).map(str::to_string).ok_or_else(|| err(format!("`{key}` must be a string")))
        };
        for (k, _) in root.iter() {
            if !["name", "vendor", "mechanisms", "behaviour", "fallback"].contains(&k) {
                return Err(err(format!("unknown key `{k}`")));
            }
        }
        let mut mechanisms = BTreeMap::new();
        if let Some(t) = root.get("mechanisms").and_then(Item::as_table) {
            for (k, v) in t.iter() {
                let num = match v.as_value() {
                    Some(Value::Integer(i)) => {
                        u64::try_from(*i.value()).map_err(|_| err(format!("`{k}` is negative")))?
                    }
                    Some(Value::String(s)) => STANDARD
                        .iter()
                        .find(|(n, _)| *n == s.value())
                        .map(|(_, m)| *m)
                        .ok_or_else(|| err(format!("`{k}`: unknown standard mechanism {}", s.value())))?,
                    _ => return Err(err(format!("`{k}` must be a mechanism number or a CKM_ name"))),
                };
                mechanisms.insert(k.to_string(), num);
            }
        }
        let behaviour = root.get("behaviour").and_then(Item::as_table);
        let sm2 = match behaviour.and_then(|b| b.get("sm2-signature")).and_then(Item::as_str).unwrap_or("none") {
            "none" => Sm2Signing::None,
            "raw" => Sm2Signing::Raw,
            "raw-der" => Sm2Signing::RawDer,
            other => return Err(err(format!("sm2-signature = {other:?}: use none, raw or raw-der"))),
        };
        if sm2 != Sm2Signing::None && !mechanisms.contains_key("sm2-sign-raw") {
            return Err(err("sm2-signature is set but there is no sm2-sign-raw mechanism".into()));
        }
        let mut fallbacks = BTreeMap::new();
        if let Some(t) = root.get("fallback").and_then(Item::as_table) {
            for (k, v) in t.iter() {
                fallbacks.insert(k.to_string(), string(Some(v), k)?);
            }
        }
        Ok(Profile {
            name: string(root.get("name"), "name")?,
            vendor: string(root.get("vendor"), "vendor")?,
            mechanisms,
            sm2,
            fallbacks,
        })
    }

    /// The mechanism for a generic operation, if the HSM has it.
    pub fn mechanism(&self, op: &str) -> Option<u64> {
        self.mechanisms.get(op).copied()
    }

    /// Whether a software fallback is allowed for `capability`.
    pub fn fallback(&self, capability: &str) -> Option<&str> {
        self.fallbacks.get(capability).map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_profiles_parse() {
        let soft = Profile::builtin("softhsm").unwrap();
        assert_eq!(soft.sm2, Sm2Signing::None);
        assert_eq!(soft.mechanism("aes-wrap-pad"), Some(0x210A));
        assert_eq!(soft.fallback("sm2-sign"), Some("software-wrapped"));
        let sansec = Profile::builtin("sansec").unwrap();
        assert_eq!(sansec.mechanism("sm2-sign-raw"), Some(0x8000_8104));
        assert_eq!(Profile::builtin("tass").unwrap().sm2, Sm2Signing::RawDer);
        assert_eq!(Profile::builtin("luna").unwrap().mechanism("sm3"), Some(0x8000_0B01));
        assert!(Profile::builtin("nope").unwrap_err().to_string().contains("softhsm, sansec, tass, luna"));
    }

    #[test]
    fn bad_profiles_are_refused() {
        assert!(Profile::parse("x", "name = \"x\"\nvendor = \"y\"\nbogus = 1\n").is_err());
        assert!(Profile::parse("x", "name = \"x\"\nvendor = \"y\"\n[mechanisms]\nfoo = \"CKM_NOPE\"\n").is_err());
        let e =
            Profile::parse("x", "name = \"x\"\nvendor = \"y\"\n[behaviour]\nsm2-signature = \"raw\"\n").unwrap_err();
        assert!(e.to_string().contains("sm2-sign-raw"), "{e}");
    }
}
