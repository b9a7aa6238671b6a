//! Dual control: rotate, retire and destroy run only after M distinct security officers approved the same request,
//! each with a signature from their own key. Requests expire. Every step is audited.
//!
//! What an officer signs (SM2, user ID = the officer's name) is [`message`]: the request id, action, target and
//! expiry, so an approval cannot be replayed onto another request. The requester's own signature is the first
//! approval. Officers and their public keys are registered at the key ceremony.

use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use vbank_crypto::sm2sig::Sm2PublicKey;
use vbank_crypto::{from_hex, to_hex};
use vbank_hsm::{KeyLabel, Purpose};
use vbank_store::{Expect, Table};

use crate::KeydError;
use crate::keys::{KeyService, KeyState, now};

/// Longest a request may stay open.
pub const MAX_TTL_S: u64 = 7 * 24 * 3600;

/// A registered security officer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Officer {
    /// Name (also the SM2 user ID of their signatures).
    pub name: String,
    /// SM2 public key, PEM.
    pub public_pem: String,
    /// When registered.
    pub registered: String,
}

/// The state of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RequestState {
    /// Waiting for approvals.
    Pending,
    /// Approved and carried out.
    Executed,
    /// Rejected by an officer.
    Rejected,
    /// Approved, but carrying it out failed (see `result`).
    Failed,
}

/// One officer's approval.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Approval {
    /// Officer name.
    pub officer: String,
    /// SM2 DER signature over [`message`], hex.
    pub signature: String,
    /// When.
    pub time: String,
}

/// A dual-control request.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Request {
    /// Id chosen by the requester (hex).
    pub id: String,
    /// `rotate`, `retire` or `destroy`.
    pub action: String,
    /// A purpose (rotate) or a key label (retire, destroy).
    pub target: String,
    /// Unix time after which it can no longer be approved.
    pub expires_unix: u64,
    /// Who asked.
    pub requested_by: String,
    /// Approvals so far (the requester's first).
    pub approvals: Vec<Approval>,
    /// State.
    pub state: RequestState,
    /// What happened when it ran.
    pub result: Option<String>,
}

/// A request as an officer submits it, signed over [`message`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NewRequest {
    /// Id chosen by the requester (8–64 hex digits).
    pub id: String,
    /// `rotate`, `retire` or `destroy`.
    pub action: String,
    /// A purpose (rotate) or a key label.
    pub target: String,
    /// Unix time after which it lapses.
    pub expires_unix: u64,
    /// The requesting officer.
    pub officer: String,
    /// Their SM2 DER signature over [`message`], hex.
    pub signature: String,
}

/// The bytes an officer signs to approve (or, prefixed with `reject\n`, to reject).
pub fn message(id: &str, action: &str, target: &str, expires_unix: u64) -> Vec<u8> {
    format!("vbank-approval-v1\n{id}\n{action}\n{target}\n{expires_unix}").into_bytes()
}

/// The bytes present officers sign to open a key ceremony.
pub fn ceremony_message(token: &str, officers: &[String]) -> Vec<u8> {
    let mut names = officers.to_vec();
    names.sort();
    format!("vbank-ceremony-v1\n{token}\n{}", names.join(",")).into_bytes()
}

/// Seconds since the Unix epoch (request expiry is in these).
pub fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

fn internal(e: impl std::fmt::Display) -> KeydError {
    KeydError::Internal(e.to_string())
}

impl KeyService {
    /// Register an officer (ceremony only).
    pub async fn register_officer(&self, name: &str, public_pem: &str) -> Result<(), KeydError> {
        if name.is_empty() || name.len() > 64 || !name.chars().all(|c| c.is_alphanumeric() || "-_.".contains(c)) {
            return Err(KeydError::Refused(format!("officer name {name:?}: use letters, digits, - _ . (at most 64)")));
        }
        Sm2PublicKey::from_pem(public_pem)
            .map_err(|e| KeydError::Refused(format!("officer {name}: not an SM2 public key: {e}")))?;
        let o = Officer { name: name.into(), public_pem: public_pem.into(), registered: now() };
        self.store
            .put(
                Table::Accounts,
                &format!("officer/{name}"),
                &serde_json::to_vec(&o).expect("serializes"),
                Expect::Absent,
            )
            .await
            .map_err(|e| match e {
                vbank_store::StoreError::Conflict { .. } => {
                    KeydError::Refused(format!("officer {name} is already registered"))
                }
                other => other.into(),
            })?;
        Ok(())
    }

    /// Registered officers.
    pub async fn officers(&self) -> Result<Vec<Officer>, KeydError> {
        let rows = self.store.list(Table::Accounts, "officer/", 1000).await?;
        rows.iter().map(|(_, v)| serde_json::from_slice(&v.value).map_err(internal)).collect()
    }

    /// Check `signature` by officer `name` over `msg`.
    pub async fn verify_officer(&self, name: &str, msg: &[u8], signature_hex: &str) -> Result<(), KeydError> {
        let o = self
            .officers()
            .await?
            .into_iter()
            .find(|o| o.name == name)
            .ok_or_else(|| KeydError::Forbidden(format!("{name} is not a registered officer")))?;
        let pk = Sm2PublicKey::from_pem(&o.public_pem).map_err(internal)?;
        let sig = from_hex(signature_hex).map_err(|_| KeydError::Forbidden("signature is not hex".into()))?;
        pk.verify(name, msg, &sig).map_err(|_| KeydError::Forbidden(format!("signature by {name} does not verify")))
    }

    /// Open a request, signed by the requesting officer (their approval counts).
    pub async fn request(&self, r: &NewRequest, required: usize) -> Result<Request, KeydError> {
        let (id, action, target, officer) = (r.id.as_str(), r.action.as_str(), r.target.as_str(), r.officer.as_str());
        let (expires_unix, signature) = (r.expires_unix, r.signature.as_str());
        if id.len() < 8 || id.len() > 64 || !id.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(KeydError::Refused("request id: 8–64 hex digits".into()));
        }
        let now_u = unix_now();
        if expires_unix <= now_u || expires_unix > now_u + MAX_TTL_S {
            return Err(KeydError::Refused(format!(
                "expiry must be in the future and within {} days",
                MAX_TTL_S / 86400
            )));
        }
        self.validate_action(action, target).await?;
        self.verify_officer(officer, &message(id, action, target, expires_unix), signature).await?;
        let req = Request {
            id: id.into(),
            action: action.into(),
            target: target.into(),
            expires_unix,
            requested_by: officer.into(),
            approvals: vec![Approval { officer: officer.into(), signature: signature.into(), time: now() }],
            state: RequestState::Pending,
            result: None,
        };
        let bytes = serde_json::to_vec(&req).expect("serializes");
        self.store.put(Table::Approvals, id, &bytes, Expect::Absent).await.map_err(|e| match e {
            vbank_store::StoreError::Conflict { .. } => KeydError::Refused(format!("request {id} exists already")),
            other => other.into(),
        })?;
        self.audit.append(self, officer, "approval.request", id, "ok", &format!("{action} {target}")).await?;
        self.maybe_execute(req, required).await
    }

    async fn validate_action(&self, action: &str, target: &str) -> Result<(), KeydError> {
        match action {
            "rotate" => Purpose::from_name(target)
                .map(|_| ())
                .ok_or_else(|| KeydError::Refused(format!("rotate takes a purpose, not {target:?}"))),
            "retire" | "destroy" => KeyLabel::parse(target).map(|_| ()).ok_or_else(|| {
                KeydError::Refused(format!("{action} takes a key label such as vbank/recording/v1, not {target:?}"))
            }),
            "decommission" if !target.is_empty() && target.len() <= 64 => Ok(()),
            "decommission" => Err(KeydError::Refused("decommission takes the node's name".into())),
            other => {
                Err(KeydError::Refused(format!("unknown action {other:?}: rotate, retire, destroy or decommission")))
            }
        }
    }

    async fn load(&self, id: &str) -> Result<(Request, u64), KeydError> {
        let v = self
            .store
            .get(Table::Approvals, id)
            .await?
            .ok_or_else(|| KeydError::Refused(format!("no request {id}")))?;
        Ok((serde_json::from_slice(&v.value).map_err(internal)?, v.version))
    }

    /// Every request, newest first.
    pub async fn requests(&self) -> Result<Vec<Request>, KeydError> {
        let rows = self.store.list(Table::Approvals, "", 10_000).await?;
        let mut out: Vec<Request> = rows.iter().filter_map(|(_, v)| serde_json::from_slice(&v.value).ok()).collect();
        out.sort_by(|a, b| b.approvals[0].time.cmp(&a.approvals[0].time));
        Ok(out)
    }

    /// Add an officer's approval; runs the action once `required` distinct officers approved.
    pub async fn approve(
        &self,
        id: &str,
        officer: &str,
        signature: &str,
        required: usize,
    ) -> Result<Request, KeydError> {
        let (mut req, version) = self.load(id).await?;
        if req.state != RequestState::Pending {
            return Err(KeydError::Refused(format!("request {id} is {:?}, not pending", req.state).to_lowercase()));
        }
        if unix_now() > req.expires_unix {
            self.audit.append(self, officer, "approval.approve", id, "denied", "expired").await?;
            return Err(KeydError::Refused(format!("request {id} expired; open a new one")));
        }
        if req.approvals.iter().any(|a| a.officer == officer) {
            return Err(KeydError::Refused(format!(
                "{officer} already approved {id}: approvals must come from distinct officers"
            )));
        }
        let verified =
            self.verify_officer(officer, &message(id, &req.action, &req.target, req.expires_unix), signature).await;
        if let Err(e) = verified {
            self.audit.append(self, officer, "approval.approve", id, "denied", &e.to_string()).await?;
            return Err(e);
        }
        req.approvals.push(Approval { officer: officer.into(), signature: signature.into(), time: now() });
        self.store
            .put(Table::Approvals, id, &serde_json::to_vec(&req).expect("serializes"), Expect::Version(version))
            .await?;
        self.audit
            .append(self, officer, "approval.approve", id, "ok", &format!("{}/{required}", req.approvals.len()))
            .await?;
        self.maybe_execute(req, required).await
    }

    /// An officer rejects a pending request.
    pub async fn reject(&self, id: &str, officer: &str, signature: &str) -> Result<Request, KeydError> {
        let (mut req, version) = self.load(id).await?;
        if req.state != RequestState::Pending {
            return Err(KeydError::Refused(format!("request {id} is not pending")));
        }
        let mut msg = b"reject\n".to_vec();
        msg.extend(message(id, &req.action, &req.target, req.expires_unix));
        self.verify_officer(officer, &msg, signature).await?;
        req.state = RequestState::Rejected;
        req.result = Some(format!("rejected by {officer}"));
        self.store
            .put(Table::Approvals, id, &serde_json::to_vec(&req).expect("serializes"), Expect::Version(version))
            .await?;
        self.audit.append(self, officer, "approval.reject", id, "ok", "").await?;
        Ok(req)
    }

    async fn maybe_execute(&self, mut req: Request, required: usize) -> Result<Request, KeydError> {
        if req.approvals.len() < required {
            return Ok(req);
        }
        let actor = req.approvals.iter().map(|a| a.officer.as_str()).collect::<Vec<_>>().join("+");
        let outcome = match req.action.as_str() {
            "rotate" => {
                let purpose = Purpose::from_name(&req.target).expect("validated at request");
                let alg = self.current(purpose).await?.alg;
                self.new_version(purpose, alg, &actor).await.map(|r| format!("created {}", r.label))
            }
            "retire" => self
                .set_state(KeyLabel::parse(&req.target).expect("validated"), KeyState::Retired, &actor)
                .await
                .map(|r| format!("retired {}", r.label)),
            "destroy" => self
                .set_state(KeyLabel::parse(&req.target).expect("validated"), KeyState::Destroyed, &actor)
                .await
                .map(|r| format!("destroyed {}", r.label)),
            "decommission" => self.decommission(&actor).await.map(|labels| {
                let names: Vec<String> = labels.iter().map(ToString::to_string).collect();
                format!("decommissioned {}: destroyed {} keys ({})", req.target, names.len(), names.join(", "))
            }),
            _ => unreachable!("validated at request"),
        };
        let (_, version) = self.load(&req.id).await?;
        match outcome {
            Ok(done) => {
                req.state = RequestState::Executed;
                req.result = Some(done);
            }
            Err(e) => {
                req.state = RequestState::Failed;
                req.result = Some(e.to_string());
            }
        }
        self.store
            .put(Table::Approvals, &req.id, &serde_json::to_vec(&req).expect("serializes"), Expect::Version(version))
            .await?;
        Ok(req)
    }
}

/// Hex of an officer's signature over a request, for CLI use.
pub fn sign_hex(key: &vbank_crypto::sm2sig::Sm2PrivateKey, officer: &str, msg: &[u8]) -> Result<String, KeydError> {
    Ok(to_hex(&key.sign_der(officer, msg).map_err(internal)?))
}
