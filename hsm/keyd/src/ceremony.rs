//! First set-up of the key hierarchy, witnessed: the officers present sign the ceremony record, keyd registers every
//! officer, creates the KEKs and seal keys, prints key check values and public keys, and seals the audit log.

use serde::{Deserialize, Serialize};
use vbank_crypto::from_hex;
use vbank_crypto::sm2sig::Sm2PublicKey;
use vbank_hsm::{KeyAlg, Purpose};

use crate::KeydError;
use crate::approvals::ceremony_message;
use crate::keys::{KeyRecord, KeyService};

/// An officer named at the ceremony.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OfficerIn {
    /// Name.
    pub name: String,
    /// SM2 public key, PEM.
    pub public_pem: String,
}

/// A present officer's signature over the ceremony record.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Witness {
    /// Officer name.
    pub officer: String,
    /// SM2 DER signature (hex) over [`ceremony_message`].
    pub signature: String,
}

/// What the ceremony produced.
#[derive(Debug, Clone, Serialize)]
pub struct CeremonyReport {
    /// Keys created.
    pub keys: Vec<KeyRecord>,
    /// Public keys of the seal keys, PEM, by label.
    pub public_keys: Vec<(String, String)>,
    /// Officers registered.
    pub officers: Vec<String>,
    /// Officers who witnessed it.
    pub witnesses: Vec<String>,
}

/// The key set a ceremony creates.
const PLAN: &[(Purpose, KeyAlg)] = &[
    (Purpose::Signing, KeyAlg::Aes256),
    (Purpose::Recording, KeyAlg::Aes256),
    (Purpose::Media, KeyAlg::Aes256),
    (Purpose::Backup, KeyAlg::Aes256),
    (Purpose::AuditSeal, KeyAlg::Sm2),
    (Purpose::EvidenceSeal, KeyAlg::Sm2),
    (Purpose::CallToken, KeyAlg::P256),
];

impl KeyService {
    /// Run the ceremony on an empty key registry.
    pub async fn ceremony(
        &self,
        token: &str,
        officers: &[OfficerIn],
        witnesses: &[Witness],
        required: usize,
    ) -> Result<CeremonyReport, KeydError> {
        if !self.records().await?.is_empty() {
            return Err(KeydError::Refused(
                "the ceremony has been held already: manage keys with `vbank hsm keys …`".into(),
            ));
        }
        if officers.len() < required {
            return Err(KeydError::Refused(format!(
                "name at least {required} officers: dual control needs {required} distinct approvers"
            )));
        }
        let names: Vec<String> = officers.iter().map(|o| o.name.clone()).collect();
        let msg = ceremony_message(token, &names);
        let mut seen = Vec::new();
        for w in witnesses {
            let o = officers
                .iter()
                .find(|o| o.name == w.officer)
                .ok_or_else(|| KeydError::Forbidden(format!("witness {} is not among the officers", w.officer)))?;
            let pk = Sm2PublicKey::from_pem(&o.public_pem)
                .map_err(|e| KeydError::Refused(format!("officer {}: {e}", o.name)))?;
            let sig = from_hex(&w.signature).map_err(|_| KeydError::Forbidden("signature is not hex".into()))?;
            pk.verify(&o.name, &msg, &sig)
                .map_err(|_| KeydError::Forbidden(format!("the ceremony signature of {} does not verify", o.name)))?;
            if !seen.contains(&o.name) {
                seen.push(o.name.clone());
            }
        }
        if seen.len() < required {
            return Err(KeydError::Forbidden(format!(
                "{} officer(s) witnessed; the ceremony needs {required}",
                seen.len()
            )));
        }
        for o in officers {
            self.register_officer(&o.name, &o.public_pem).await?;
        }
        let actor = seen.join("+");
        let mut keys = Vec::new();
        for (purpose, alg) in PLAN {
            keys.push(self.new_version(*purpose, *alg, &actor).await?);
        }
        let mut public_keys = Vec::new();
        for k in keys.iter().filter(|k| !k.label.purpose.is_kek()) {
            public_keys.push((k.label.to_string(), self.public_pem(k.label).await?));
        }
        self.audit
            .append(self, &actor, "ceremony", token, "ok", &format!("officers={} witnesses={actor}", names.join(",")))
            .await?;
        self.audit.seal(self).await?;
        Ok(CeremonyReport { keys, public_keys, officers: names, witnesses: seen })
    }
}
