//! What a key is for, and the names keys carry in the HSM.

use std::fmt;

/// What a key protects or signs. Each purpose has its own versioned key series.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Purpose {
    /// KEK for recording data keys.
    Recording,
    /// KEK for per-call media keys.
    Media,
    /// KEK for backup encryption keys.
    Backup,
    /// KEK wrapping software signing keys where the HSM cannot hold them itself (SM2 on SoftHSM).
    Signing,
    /// Signs audit-log seals.
    AuditSeal,
    /// Signs evidence manifests and e-signature attestations.
    EvidenceSeal,
    /// Signs short-lived call tokens (room, role, expiry) that the gateway checks.
    CallToken,
}

impl Purpose {
    /// Every purpose.
    pub const ALL: [Purpose; 7] = [
        Purpose::Recording,
        Purpose::Media,
        Purpose::Backup,
        Purpose::Signing,
        Purpose::AuditSeal,
        Purpose::EvidenceSeal,
        Purpose::CallToken,
    ];

    /// The name used in labels, APIs and the console.
    pub fn name(self) -> &'static str {
        match self {
            Purpose::Recording => "recording",
            Purpose::Media => "media",
            Purpose::Backup => "backup",
            Purpose::Signing => "signing",
            Purpose::AuditSeal => "audit-seal",
            Purpose::EvidenceSeal => "evidence-seal",
            Purpose::CallToken => "call-token",
        }
    }

    /// Parse [`Purpose::name`].
    pub fn from_name(s: &str) -> Option<Purpose> {
        Purpose::ALL.into_iter().find(|p| p.name() == s)
    }

    /// Whether keys of this purpose wrap other keys (KEKs) rather than sign.
    pub fn is_kek(self) -> bool {
        matches!(self, Purpose::Recording | Purpose::Media | Purpose::Backup | Purpose::Signing)
    }

    /// Stable one-byte code used in envelopes.
    pub(crate) fn code(self) -> u8 {
        match self {
            Purpose::Recording => 1,
            Purpose::Media => 2,
            Purpose::Backup => 3,
            Purpose::Signing => 4,
            Purpose::AuditSeal => 5,
            Purpose::EvidenceSeal => 6,
            Purpose::CallToken => 7,
        }
    }

    pub(crate) fn from_code(c: u8) -> Option<Purpose> {
        Purpose::ALL.into_iter().find(|p| p.code() == c)
    }
}

/// One version of one purpose's key: `vbank/recording/v3` in CKA_LABEL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub struct KeyLabel {
    /// What it is for.
    pub purpose: Purpose,
    /// Version, from 1.
    pub version: u32,
}

impl KeyLabel {
    /// The label of version `version` of `purpose`.
    pub fn new(purpose: Purpose, version: u32) -> KeyLabel {
        KeyLabel { purpose, version }
    }

    /// Parse `vbank/<purpose>/v<n>`.
    pub fn parse(s: &str) -> Option<KeyLabel> {
        let rest = s.strip_prefix("vbank/")?;
        let (p, v) = rest.split_once("/v")?;
        Some(KeyLabel { purpose: Purpose::from_name(p)?, version: v.parse().ok().filter(|v| *v > 0)? })
    }
}

impl fmt::Display for KeyLabel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "vbank/{}/v{}", self.purpose.name(), self.version)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_round_trip() {
        for p in Purpose::ALL {
            let l = KeyLabel::new(p, 7);
            assert_eq!(KeyLabel::parse(&l.to_string()), Some(l));
            assert_eq!(Purpose::from_code(p.code()), Some(p));
        }
        assert_eq!(KeyLabel::parse("vbank/recording/v0"), None);
        assert_eq!(KeyLabel::parse("other/recording/v1"), None);
        assert_eq!(KeyLabel::parse("vbank/nope/v1"), None);
    }
}
