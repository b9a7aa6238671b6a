//! The key service proper: which key versions exist and in what state, data keys issued and opened, seals made.
//!
//! Lifecycle per purpose: versions 1, 2, … The newest *active* version wraps new data keys and makes new seals;
//! older active versions still open what they wrapped; a *retired* version opens nothing (the minimum decrypt
//! version moved past it); a *destroyed* version is gone from the HSM. Every data key keyd issues is indexed by id
//! with its current envelope, so [`KeyService::rewrap`] can move all of a purpose's data keys to the newest version
//! inside the HSM, after which the old version can be retired and destroyed without losing any recording.

mod decommission;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use vbank_crypto::aead::AeadAlg;
use vbank_crypto::hash::{sha256, sm3};
use vbank_crypto::p256sig::P256PublicKey;
use vbank_crypto::sm2sig::{Sm2PrivateKey, Sm2PublicKey};
use vbank_crypto::{SecretBytes, to_hex};
use vbank_hsm::{BINDING_LEN, Envelope, HsmError, KeyAlg, KeyBackend, KeyLabel, Purpose, binding};
use vbank_store::{Expect, Store, Table};

use crate::KeydError;
use crate::audit_log::AuditLog;

/// SM2 user ID for evidence seals (manifests, attestations): OpenSSL verifies with `-pkeyopt distid:vbank-evidence`.
pub const EVIDENCE_ID: &str = "vbank-evidence";

/// Lifecycle state of one key version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyState {
    /// Usable.
    Active,
    /// Opens nothing any more; may be destroyed.
    Retired,
    /// Gone from the HSM.
    Destroyed,
}

/// keyd's record of one key version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRecord {
    /// Label in the HSM.
    pub label: KeyLabel,
    /// Algorithm.
    pub alg: KeyAlg,
    /// State.
    pub state: KeyState,
    /// Where the private key lives: `hsm`, or `software-wrapped` (under the signing KEK).
    pub location: String,
    /// Created (RFC 3339).
    pub created: String,
    /// Last state change (RFC 3339).
    pub changed: String,
    /// Key check value, where the HSM gives one.
    pub kcv: Option<String>,
}

/// A data key's index entry.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct DekRecord {
    purpose: Purpose,
    envelope: String,
    created: String,
}

/// A data key handed to a caller.
#[derive(Debug)]
pub struct IssuedKey {
    /// Id to open it by later.
    pub id: String,
    /// The key itself.
    pub key: SecretBytes,
    /// The wrapped form, to keep next to the data (e.g. in a recording header).
    pub envelope: Vec<u8>,
}

/// A seal.
#[derive(Debug, Clone, Serialize)]
pub struct SealOut {
    /// Signing key label.
    pub key: String,
    /// `sm2` or `p256`.
    pub alg: String,
    /// SM2 user ID used (SM2 only).
    pub id: Option<String>,
    /// DER signature (SM2) or raw r‖s (P-256), hex.
    pub signature: String,
}

/// The key service core, shared by the API handlers.
pub struct KeyService {
    pub(crate) backend: Arc<dyn KeyBackend>,
    pub(crate) store: Arc<dyn Store>,
    pub(crate) audit: AuditLog,
    sm2_cache: Mutex<HashMap<KeyLabel, Arc<Sm2PrivateKey>>>,
}

impl std::fmt::Debug for KeyService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KeyService({:?})", self.backend)
    }
}

pub(crate) fn now() -> String {
    vbank_log::rfc3339_now()
}

/// Run a blocking backend call off the async runtime.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, HsmError> + Send + 'static,
) -> Result<T, KeydError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| KeydError::Internal(e.to_string()))?.map_err(KeydError::Hsm)
}

impl KeyService {
    /// A service over `backend` keeping its registry and audit log in `store`.
    pub async fn new(backend: Arc<dyn KeyBackend>, store: Arc<dyn Store>) -> Result<KeyService, KeydError> {
        let audit = AuditLog::open(store.clone()).await?;
        Ok(KeyService { backend, store, audit, sm2_cache: Mutex::new(HashMap::new()) })
    }

    /// Every key version keyd knows, in label order.
    pub async fn records(&self) -> Result<Vec<KeyRecord>, KeydError> {
        let rows = self.store.list(Table::Keys, "vbank/", 10_000).await?;
        let mut out: Vec<KeyRecord> = rows.iter().filter_map(|(_, v)| serde_json::from_slice(&v.value).ok()).collect();
        out.sort_by_key(|r| r.label);
        Ok(out)
    }

    async fn record(&self, label: KeyLabel) -> Result<Option<(KeyRecord, u64)>, KeydError> {
        Ok(match self.store.get(Table::Keys, &label.to_string()).await? {
            Some(v) => {
                Some((serde_json::from_slice(&v.value).map_err(|e| KeydError::Internal(e.to_string()))?, v.version))
            }
            None => None,
        })
    }

    async fn save(&self, rec: &KeyRecord, expect: Expect) -> Result<(), KeydError> {
        let bytes = serde_json::to_vec(rec).expect("records serialize");
        self.store.put(Table::Keys, &rec.label.to_string(), &bytes, expect).await?;
        Ok(())
    }

    /// The newest active version of `purpose`.
    pub async fn current(&self, purpose: Purpose) -> Result<KeyRecord, KeydError> {
        self.records()
            .await?
            .into_iter()
            .filter(|r| r.label.purpose == purpose && r.state == KeyState::Active)
            .max_by_key(|r| r.label.version)
            .ok_or(KeydError::NoKey(purpose))
    }

    /// Create the next version of `purpose` (version 1 if none). Used by the ceremony, `keys create` and `rotate`.
    pub async fn new_version(&self, purpose: Purpose, alg: KeyAlg, actor: &str) -> Result<KeyRecord, KeydError> {
        let version = self
            .records()
            .await?
            .iter()
            .filter(|r| r.label.purpose == purpose)
            .map(|r| r.label.version)
            .max()
            .unwrap_or(0)
            + 1;
        let label = KeyLabel::new(purpose, version);
        let result = self.create_in_hsm(label, alg).await;
        let outcome = if result.is_ok() { "ok" } else { "error" };
        self.audit
            .append(self, actor, "key.create", &label.to_string(), outcome, &format!("alg={}", alg.name()))
            .await?;
        let (location, kcv) = result?;
        let t = now();
        let rec = KeyRecord { label, alg, state: KeyState::Active, location, created: t.clone(), changed: t, kcv };
        self.save(&rec, Expect::Absent).await?;
        Ok(rec)
    }

    async fn create_in_hsm(&self, label: KeyLabel, alg: KeyAlg) -> Result<(String, Option<String>), KeydError> {
        let b = self.backend.clone();
        match (label.purpose.is_kek(), alg) {
            (true, KeyAlg::Aes256 | KeyAlg::Sm4) => {
                let info = blocking(move || b.create_kek(label, alg)).await?;
                Ok(("hsm".into(), info.kcv))
            }
            (false, KeyAlg::P256) => {
                blocking(move || b.create_p256(label)).await?;
                Ok(("hsm".into(), None))
            }
            (false, KeyAlg::Sm2) => {
                // The profile decides. Only its explicit sm2-sign = "software-wrapped" fallback allows a software SM2
                // key, kept on the token wrapped under the signing KEK (SoftHSM has no SM2 at all).
                let profile = self.backend.profile();
                if profile.fallback("sm2-sign") != Some("software-wrapped") {
                    return Err(KeydError::Hsm(HsmError::Unsupported {
                        op: "an SM2 signing key".into(),
                        profile: profile.name.clone(),
                        hint:
                            "keyd does not yet drive vendor SM2 mechanisms; to allow a software SM2 key wrapped under \
                               the signing KEK, add sm2-sign = \"software-wrapped\" under [fallback] in the profile, \
                               or use --alg p256"
                                .into(),
                    }));
                }
                let signing = self.current(Purpose::Signing).await.map_err(|_| {
                    KeydError::Refused("an SM2 key needs the signing KEK first: create it with `vbank hsm keys create --purpose signing --alg aes256`".into())
                })?;
                let key = Sm2PrivateKey::generate().map_err(|e| KeydError::Internal(e.to_string()))?;
                let wrapped = self
                    .wrap_secret(
                        Purpose::Signing,
                        signing.label,
                        AeadAlg::Aes256Gcm,
                        key.scalar().expose(),
                        label.to_string().as_bytes(),
                    )
                    .await?;
                let public = key.public_key().to_sec1();
                let b2 = self.backend.clone();
                blocking(move || {
                    b.put_data(label, "sm2-wrapped", &wrapped)?;
                    b2.put_data(label, "sm2-public", &public)
                })
                .await?;
                Ok(("software-wrapped".into(), None))
            }
            (true, _) => {
                Err(KeydError::Refused(format!("{} keys wrap other keys: use --alg aes256", label.purpose.name())))
            }
            (false, _) => {
                Err(KeydError::Refused(format!("{} keys sign: use --alg sm2 or --alg p256", label.purpose.name())))
            }
        }
    }

    /// Wrap `secret ‖ binding(context)` under `kek`, returning the encoded envelope.
    async fn wrap_secret(
        &self,
        purpose: Purpose,
        kek: KeyLabel,
        alg: AeadAlg,
        secret: &[u8],
        context: &[u8],
    ) -> Result<Vec<u8>, KeydError> {
        let mut payload = secret.to_vec();
        payload.extend_from_slice(&binding(purpose, alg, context));
        let payload = SecretBytes::new(payload);
        let b = self.backend.clone();
        let wrapped = blocking(move || b.wrap(kek, payload.expose())).await?;
        Ok(Envelope { kek, alg, wrapped }.encode()?)
    }

    /// Open an envelope for `purpose` with `context`, refusing retired or destroyed versions and context mismatches.
    async fn unwrap_envelope(
        &self,
        purpose: Purpose,
        envelope: &[u8],
        context: &[u8],
    ) -> Result<SecretBytes, KeydError> {
        let env = Envelope::decode(envelope)?;
        if env.kek.purpose != purpose {
            return Err(KeydError::Hsm(HsmError::ContextMismatch));
        }
        match self.record(env.kek).await? {
            Some((r, _)) if r.state == KeyState::Active => {}
            Some((r, _)) => {
                return Err(KeydError::Refused(
                    format!("{} is {:?}: it opens nothing any more", r.label, r.state).to_lowercase(),
                ));
            }
            None => return Err(KeydError::Hsm(HsmError::NotFound(env.kek.to_string()))),
        }
        let b = self.backend.clone();
        let (kek, wrapped) = (env.kek, env.wrapped.clone());
        let plain = blocking(move || b.unwrap(kek, &wrapped)).await?;
        let n = plain.len().checked_sub(BINDING_LEN).ok_or(KeydError::Hsm(HsmError::Tampered))?;
        let expected = binding(purpose, env.alg, context);
        let got = &plain.expose()[n..];
        if got.iter().zip(expected.iter()).fold(0u8, |a, (x, y)| a | (x ^ y)) != 0 {
            return Err(KeydError::Hsm(HsmError::ContextMismatch));
        }
        Ok(SecretBytes::new(plain.expose()[..n].to_vec()))
    }

    /// Issue a data key for `purpose` bound to `context`.
    pub async fn create_dek(
        &self,
        purpose: Purpose,
        alg: AeadAlg,
        context: &[u8],
        actor: &str,
    ) -> Result<IssuedKey, KeydError> {
        let kek = self.current(purpose).await?;
        let b = self.backend.clone();
        let key = blocking(move || b.random(alg.key_len())).await?;
        let envelope = self.wrap_secret(purpose, kek.label, alg, key.expose(), context).await?;
        let b = self.backend.clone();
        let id = to_hex(blocking(move || b.random(16)).await?.expose());
        let rec = DekRecord { purpose, envelope: to_hex(&envelope), created: now() };
        self.store
            .put(Table::Keys, &format!("dek/{id}"), &serde_json::to_vec(&rec).expect("serializes"), Expect::Absent)
            .await?;
        let detail = format!("id={id} alg={} context=sm3:{}", alg.name(), &to_hex(&sm3(context))[..16]);
        self.audit.append(self, actor, "dek.create", &kek.label.to_string(), "ok", &detail).await?;
        Ok(IssuedKey { id, key, envelope })
    }

    /// Open a data key by id (its current envelope) or by envelope, for `purpose` and `context`; `note` (e.g. the
    /// viewer's stated reason) goes into the audit entry.
    pub async fn open_dek(
        &self,
        purpose: Purpose,
        id: Option<&str>,
        envelope: Option<&[u8]>,
        context: &[u8],
        actor: &str,
        note: &str,
    ) -> Result<SecretBytes, KeydError> {
        let env = match (id, envelope) {
            (Some(id), _) => {
                let v = self
                    .store
                    .get(Table::Keys, &format!("dek/{id}"))
                    .await?
                    .ok_or_else(|| KeydError::Refused(format!("no data key with id {id}")))?;
                let rec: DekRecord =
                    serde_json::from_slice(&v.value).map_err(|e| KeydError::Internal(e.to_string()))?;
                vbank_crypto::from_hex(&rec.envelope).map_err(|e| KeydError::Internal(e.to_string()))?
            }
            (None, Some(e)) => e.to_vec(),
            (None, None) => return Err(KeydError::Refused("give the data key's id or its envelope".into())),
        };
        let label = Envelope::decode(&env).map(|e| e.kek.to_string()).unwrap_or_default();
        let r = self.unwrap_envelope(purpose, &env, context).await;
        let outcome = if r.is_ok() { "ok" } else { "denied" };
        let detail =
            format!("id={} {note} {}", id.unwrap_or("-"), r.as_ref().err().map(|e| e.to_string()).unwrap_or_default());
        self.audit.append(self, actor, "dek.open", &label, outcome, detail.trim()).await?;
        r
    }

    /// Move every indexed data key of `purpose` to its newest version, inside the HSM. Returns how many moved.
    pub async fn rewrap(&self, purpose: Purpose, actor: &str) -> Result<usize, KeydError> {
        let target = self.current(purpose).await?;
        let mut moved = 0;
        for (key, v) in self.store.list(Table::Keys, "dek/", usize::MAX).await? {
            let mut rec: DekRecord =
                serde_json::from_slice(&v.value).map_err(|e| KeydError::Internal(e.to_string()))?;
            let env = Envelope::decode(
                &vbank_crypto::from_hex(&rec.envelope).map_err(|e| KeydError::Internal(e.to_string()))?,
            )?;
            if rec.purpose != purpose || env.kek == target.label {
                continue;
            }
            let b = self.backend.clone();
            let (from, to, wrapped) = (env.kek, target.label, env.wrapped.clone());
            let rewrapped = blocking(move || b.rewrap(from, to, &wrapped)).await?;
            rec.envelope = to_hex(&Envelope { kek: target.label, alg: env.alg, wrapped: rewrapped }.encode()?);
            self.store
                .put(Table::Keys, &key, &serde_json::to_vec(&rec).expect("serializes"), Expect::Version(v.version))
                .await?;
            moved += 1;
        }
        self.audit
            .append(self, actor, "key.rewrap", &target.label.to_string(), "ok", &format!("moved={moved}"))
            .await?;
        Ok(moved)
    }

    /// Change a version's state (retire or destroy); destroying removes it from the HSM.
    pub async fn set_state(&self, label: KeyLabel, state: KeyState, actor: &str) -> Result<KeyRecord, KeydError> {
        let (mut rec, version) =
            self.record(label).await?.ok_or_else(|| KeydError::Hsm(HsmError::NotFound(label.to_string())))?;
        if rec.state == KeyState::Destroyed {
            return Err(KeydError::Refused(format!("{label} is already destroyed")));
        }
        let newest = self.current(label.purpose).await.ok().map(|r| r.label.version).unwrap_or(0);
        if rec.state == KeyState::Active && label.version >= newest {
            return Err(KeydError::Refused(format!(
                "{label} is the current version: rotate first so something replaces it"
            )));
        }
        if state == KeyState::Destroyed {
            let b = self.backend.clone();
            blocking(move || b.destroy(label)).await?;
            self.sm2_cache.lock().unwrap_or_else(|p| p.into_inner()).remove(&label);
        }
        rec.state = state;
        rec.changed = now();
        self.save(&rec, Expect::Version(version)).await?;
        let action = if state == KeyState::Destroyed { "key.destroy" } else { "key.retire" };
        self.audit.append(self, actor, action, &label.to_string(), "ok", "").await?;
        Ok(rec)
    }

    async fn sm2_key(&self, label: KeyLabel) -> Result<Arc<Sm2PrivateKey>, KeydError> {
        if let Some(k) = self.sm2_cache.lock().unwrap_or_else(|p| p.into_inner()).get(&label) {
            return Ok(k.clone());
        }
        let b = self.backend.clone();
        let wrapped = blocking(move || b.get_data(label, "sm2-wrapped")).await?;
        let scalar = self.unwrap_envelope(Purpose::Signing, &wrapped, label.to_string().as_bytes()).await?;
        let key = Arc::new(Sm2PrivateKey::from_scalar(scalar).map_err(|e| KeydError::Internal(e.to_string()))?);
        self.sm2_cache.lock().unwrap_or_else(|p| p.into_inner()).insert(label, key.clone());
        Ok(key)
    }

    /// Sign `data` with the current key of `purpose` (a seal purpose) and audit it. SM2 uses `sm2_id`.
    pub async fn sign(&self, purpose: Purpose, data: &[u8], sm2_id: &str, actor: &str) -> Result<SealOut, KeydError> {
        let out = self.sign_raw(purpose, data, sm2_id).await?;
        let detail = format!("data=sm3:{}", &to_hex(&sm3(data))[..16]);
        self.audit.append(self, actor, "key.sign", &out.key, "ok", &detail).await?;
        Ok(out)
    }

    /// Sign without an audit entry: for the audit log's own seals.
    pub(crate) async fn sign_raw(&self, purpose: Purpose, data: &[u8], sm2_id: &str) -> Result<SealOut, KeydError> {
        let rec = self.current(purpose).await?;
        let out = match rec.alg {
            KeyAlg::Sm2 => {
                let key = self.sm2_key(rec.label).await?;
                let sig = key.sign_der(sm2_id, data).map_err(|e| KeydError::Internal(e.to_string()))?;
                SealOut {
                    key: rec.label.to_string(),
                    alg: "sm2".into(),
                    id: Some(sm2_id.to_string()),
                    signature: to_hex(&sig),
                }
            }
            KeyAlg::P256 => {
                let (b, label, digest) = (self.backend.clone(), rec.label, sha256(data));
                let sig = blocking(move || b.sign_p256(label, &digest)).await?;
                SealOut { key: rec.label.to_string(), alg: "p256".into(), id: None, signature: to_hex(&sig) }
            }
            other => {
                return Err(KeydError::Refused(format!(
                    "{} is an {} key, which does not sign",
                    rec.label,
                    other.name()
                )));
            }
        };
        Ok(out)
    }

    /// Sign a call token for `room` and `role`, valid `ttl_s` seconds (at most an hour), with the HSM's call-token key.
    pub async fn sign_token(
        &self,
        room: &str,
        role: &str,
        ttl_s: u64,
        e2ee: bool,
        actor: &str,
    ) -> Result<(String, vbank_token::Claims), KeydError> {
        if room.is_empty()
            || room.len() > 64
            || !room.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(KeydError::BadRequest("room: 1-64 letters, digits, - or _".into()));
        }
        if !["customer", "teller", "specialist", "recorder", "observer"].contains(&role) {
            return Err(KeydError::BadRequest("role: customer, teller, specialist, recorder or observer".into()));
        }
        if ttl_s == 0 || ttl_s > vbank_token::MAX_TTL_S {
            return Err(KeydError::BadRequest(format!("ttl: 1 to {} seconds", vbank_token::MAX_TTL_S)));
        }
        let rec = self.current(Purpose::CallToken).await?;
        if rec.alg != KeyAlg::P256 {
            return Err(KeydError::Refused(format!("{} must be a p256 key", rec.label)));
        }
        let b = self.backend.clone();
        let jti = to_hex(blocking(move || b.random(12)).await?.expose());
        let iat = crate::approvals::unix_now();
        let claims = vbank_token::Claims {
            v: 1,
            room: room.into(),
            role: role.into(),
            iat,
            exp: iat + ttl_s,
            jti,
            kid: rec.label.to_string(),
            e2ee,
        };
        let input = vbank_token::signing_input(&claims);
        let (b, label, digest) = (self.backend.clone(), rec.label, vbank_token::digest(&input));
        let sig = blocking(move || b.sign_p256(label, &digest)).await?;
        let detail = format!("room={room} role={role} ttl={ttl_s}s e2ee={e2ee} jti={}", claims.jti);
        self.audit.append(self, actor, "token.sign", &rec.label.to_string(), "ok", &detail).await?;
        Ok((vbank_token::assemble(&input, &sig), claims))
    }

    /// The public keys that verify call tokens (every active version), as PEM by label.
    pub async fn token_keys(&self) -> Result<Vec<(String, String)>, KeydError> {
        let mut out = Vec::new();
        for r in self
            .records()
            .await?
            .into_iter()
            .filter(|r| r.label.purpose == Purpose::CallToken && r.state == KeyState::Active)
        {
            out.push((r.label.to_string(), self.public_pem(r.label).await?));
        }
        Ok(out)
    }

    /// The public key of a signing key version, as PEM.
    pub async fn public_pem(&self, label: KeyLabel) -> Result<String, KeydError> {
        let (rec, _) =
            self.record(label).await?.ok_or_else(|| KeydError::Hsm(HsmError::NotFound(label.to_string())))?;
        let b = self.backend.clone();
        match rec.alg {
            KeyAlg::Sm2 => {
                let point = blocking(move || b.get_data(label, "sm2-public")).await?;
                Ok(Sm2PublicKey::from_sec1(&point).map_err(|e| KeydError::Internal(e.to_string()))?.to_pem())
            }
            KeyAlg::P256 => {
                let point = blocking(move || b.public_point(label)).await?;
                Ok(P256PublicKey::from_sec1(&point).map_err(|e| KeydError::Internal(e.to_string()))?.to_pem())
            }
            other => Err(KeydError::Refused(format!("{label} is an {} key: it has no public half", other.name()))),
        }
    }

    /// Refuse to serve with a KEK or HSM signing key that is extractable or not sensitive, or missing.
    pub async fn check_attributes(&self) -> Result<(), KeydError> {
        let b = self.backend.clone();
        let objects = blocking(move || b.list()).await?;
        for rec in self.records().await?.into_iter().filter(|r| r.state != KeyState::Destroyed && r.location == "hsm") {
            let class = if rec.label.purpose.is_kek() { "secret-key" } else { "private-key" };
            let Some(obj) = objects.iter().find(|o| o.label == rec.label && o.class == class) else {
                return Err(KeydError::Refused(format!("{} is registered but missing from the HSM", rec.label)));
            };
            if obj.extractable || !obj.sensitive {
                return Err(KeydError::Refused(format!(
                    "{} is {} in the HSM: refusing to use it; rotate to a new version made by keyd and destroy this one",
                    rec.label,
                    if obj.extractable {
                        "extractable (CKA_EXTRACTABLE=true)"
                    } else {
                        "not sensitive (CKA_SENSITIVE=false)"
                    }
                )));
            }
        }
        Ok(())
    }
}
