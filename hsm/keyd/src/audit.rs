//! The audit log: append-only, hash-chained with SM3, sealed with an SM2 signature every N entries and on shutdown.
//!
//! Each entry is one JSON object (one line when exported). `hash = SM3(prev ‖ canonical(entry without hash/seal))`,
//! where `prev` is the previous entry's hash (32 zero bytes for the first) and the canonical form is the entry
//! serialized with its fields in declaration order. A seal is an entry with action `audit.seal` whose `seal` field
//! is an SM2 signature (user ID [`SEAL_ID`]) over `"vbank-audit-seal-v1" ‖ hash`: it vouches for every entry before
//! it through the chain. [`verify`] needs only the exported lines and the seal public key, so an auditor can check
//! a log offline, and names the first entry that does not hold.

use serde::{Deserialize, Serialize};
use vbank_crypto::hash::sm3;
use vbank_crypto::sm2sig::Sm2PublicKey;
use vbank_crypto::{from_hex, to_hex};

/// SM2 user ID used for audit seals.
pub const SEAL_ID: &str = "vbank-audit";
const SEAL_DOMAIN: &[u8] = b"vbank-audit-seal-v1";

/// One audit entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Position in the log, from 1.
    pub seq: u64,
    /// UTC time, RFC 3339.
    pub time: String,
    /// Who: a service name, an officer, or `keyd`.
    pub actor: String,
    /// What: `dek.create`, `key.destroy`, `approval.approve`, `audit.seal`, …
    pub action: String,
    /// On what: a key label, a request id.
    pub target: String,
    /// `ok`, `denied` or `error`.
    pub outcome: String,
    /// Free text; never key material, PINs or personal data.
    pub detail: String,
    /// Hash of the previous entry (hex).
    pub prev: String,
    /// This entry's hash (hex).
    pub hash: String,
    /// For seals: the signature and the key that made it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seal: Option<Seal>,
}

/// A signature over a seal entry's hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Seal {
    /// Signing key label.
    pub key: String,
    /// DER SM2 signature (hex).
    pub sig: String,
}

/// What an entry's hash covers.
#[derive(Serialize)]
struct Canonical<'a> {
    seq: u64,
    time: &'a str,
    actor: &'a str,
    action: &'a str,
    target: &'a str,
    outcome: &'a str,
    detail: &'a str,
    prev: &'a str,
}

/// Hash of an entry given its predecessor's hash.
pub fn entry_hash(e: &Entry) -> String {
    let c = Canonical {
        seq: e.seq,
        time: &e.time,
        actor: &e.actor,
        action: &e.action,
        target: &e.target,
        outcome: &e.outcome,
        detail: &e.detail,
        prev: &e.prev,
    };
    let mut m = from_hex(&e.prev).unwrap_or_default();
    m.extend_from_slice(&serde_json::to_vec(&c).expect("plain strings serialize"));
    to_hex(&sm3(&m))
}

/// The bytes a seal signs.
pub fn seal_message(hash_hex: &str) -> Vec<u8> {
    let mut m = SEAL_DOMAIN.to_vec();
    m.extend_from_slice(hash_hex.as_bytes());
    m
}

/// The chain's starting point.
pub fn genesis() -> String {
    to_hex(&[0u8; 32])
}

/// What happened, for a new entry.
#[derive(Debug, Clone, Copy)]
pub struct Event<'a> {
    /// Who.
    pub actor: &'a str,
    /// What.
    pub action: &'a str,
    /// On what.
    pub target: &'a str,
    /// `ok`, `denied` or `error`.
    pub outcome: &'a str,
    /// Free text (never secrets or personal data).
    pub detail: &'a str,
}

/// A new entry after `prev` (the previous entry's hash), with its hash filled in.
pub fn next_entry(seq: u64, prev: &str, time: String, ev: Event<'_>) -> Entry {
    let mut e = Entry {
        seq,
        time,
        actor: ev.actor.to_string(),
        action: ev.action.to_string(),
        target: ev.target.to_string(),
        outcome: ev.outcome.to_string(),
        detail: ev.detail.to_string(),
        prev: prev.to_string(),
        hash: String::new(),
        seal: None,
    };
    e.hash = entry_hash(&e);
    e
}

/// The result of checking a log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    /// Entries read.
    pub entries: u64,
    /// Seals whose signature verified.
    pub seals: u64,
    /// Entries after the last good seal (not yet vouched for by a signature).
    pub unsealed_tail: u64,
    /// The first problem, if any: `(seq or line, what)`.
    pub first_bad: Option<(u64, String)>,
}

impl Report {
    /// Whether the log is intact and fully sealed up to its last seal.
    pub fn ok(&self) -> bool {
        self.first_bad.is_none()
    }
}

/// Check exported JSON lines against the seal public key(s). Stops at the first problem and names it.
pub fn verify(lines: &str, seal_keys: &[(String, Sm2PublicKey)]) -> Report {
    let mut r = Report { entries: 0, seals: 0, unsealed_tail: 0, first_bad: None };
    let mut prev = genesis();
    let numbered = lines.lines().enumerate().filter(|(_, l)| !l.trim().is_empty());
    for (expect_seq, (i, line)) in (1u64..).zip(numbered) {
        let e: Entry = match serde_json::from_str(line) {
            Ok(e) => e,
            Err(err) => {
                r.first_bad = Some((expect_seq, format!("line {} is not an audit entry: {err}", i + 1)));
                return r;
            }
        };
        let bad = |why: String| Some((e.seq, why));
        if e.seq != expect_seq {
            r.first_bad = bad(format!("expected entry {expect_seq}, found {} (entries removed or reordered)", e.seq));
            return r;
        }
        if e.prev != prev {
            r.first_bad = bad("does not link to the entry before it".into());
            return r;
        }
        if entry_hash(&e) != e.hash {
            r.first_bad = bad("content changed after it was written (hash mismatch)".into());
            return r;
        }
        r.entries += 1;
        r.unsealed_tail += 1;
        if e.action == "audit.seal" {
            let Some(seal) = &e.seal else {
                r.first_bad = bad("seal entry without a signature".into());
                return r;
            };
            let Some((_, key)) = seal_keys.iter().find(|(label, _)| *label == seal.key) else {
                r.first_bad = bad(format!("sealed by {}, for which no public key was given", seal.key));
                return r;
            };
            let sig = from_hex(&seal.sig).unwrap_or_default();
            if key.verify(SEAL_ID, &seal_message(&e.hash), &sig).is_err() {
                r.first_bad = bad("seal signature does not verify".into());
                return r;
            }
            r.seals += 1;
            r.unsealed_tail = 0;
        }
        prev = e.hash.clone();
    }
    r
}

#[cfg(test)]
mod tests {
    use vbank_crypto::sm2sig::Sm2PrivateKey;

    use super::*;

    fn log(key: &Sm2PrivateKey, n: u64, seal_every: u64) -> Vec<Entry> {
        let mut out = Vec::new();
        let mut prev = genesis();
        for seq in 1..=n {
            let mut e = if seq % seal_every == 0 {
                next_entry(
                    seq,
                    &prev,
                    format!("t{seq}"),
                    Event { actor: "keyd", action: "audit.seal", target: "audit", outcome: "ok", detail: "" },
                )
            } else {
                let ev = Event {
                    actor: "recorder",
                    action: "dek.create",
                    target: "vbank/recording/v1",
                    outcome: "ok",
                    detail: "",
                };
                next_entry(seq, &prev, format!("t{seq}"), ev)
            };
            if e.action == "audit.seal" {
                let sig = key.sign_der(SEAL_ID, &seal_message(&e.hash)).unwrap();
                e.seal = Some(Seal { key: "vbank/audit-seal/v1".into(), sig: to_hex(&sig) });
            }
            prev = e.hash.clone();
            out.push(e);
        }
        out
    }

    fn lines(entries: &[Entry]) -> String {
        entries.iter().map(|e| serde_json::to_string(e).unwrap() + "\n").collect()
    }

    #[test]
    fn an_intact_log_verifies() {
        let k = Sm2PrivateKey::generate().unwrap();
        let keys = vec![("vbank/audit-seal/v1".to_string(), k.public_key())];
        let r = verify(&lines(&log(&k, 25, 10)), &keys);
        assert!(r.ok(), "{r:?}");
        assert_eq!((r.entries, r.seals, r.unsealed_tail), (25, 2, 5));
    }

    #[test]
    fn every_kind_of_tampering_names_the_entry() {
        let k = Sm2PrivateKey::generate().unwrap();
        let keys = vec![("vbank/audit-seal/v1".to_string(), k.public_key())];
        let good = log(&k, 30, 10);

        let mut changed = good.clone();
        changed[16].detail = "nothing to see".into();
        assert_eq!(verify(&lines(&changed), &keys).first_bad.unwrap().0, 17);

        let mut removed = good.clone();
        removed.remove(11);
        let bad = verify(&lines(&removed), &keys).first_bad.unwrap();
        assert_eq!(bad.0, 13, "{bad:?}");

        let mut rehashed = good.clone();
        rehashed[4].actor = "someone".into();
        rehashed[4].hash = entry_hash(&rehashed[4]);
        assert_eq!(verify(&lines(&rehashed), &keys).first_bad.unwrap().0, 6, "the next entry no longer links");

        let other = Sm2PrivateKey::generate().unwrap();
        let forged_keys = vec![("vbank/audit-seal/v1".to_string(), other.public_key())];
        let bad = verify(&lines(&good), &forged_keys).first_bad.unwrap();
        assert_eq!(bad.0, 10);
        assert!(bad.1.contains("signature"));

        let text = lines(&good).replacen("\"seq\":3,", "\"seq\":3,\"x\":", 1);
        assert_eq!(verify(&text, &keys).first_bad.unwrap().0, 3);
    }
}
