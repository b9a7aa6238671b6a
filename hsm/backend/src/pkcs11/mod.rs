//! [`KeyBackend`](crate::KeyBackend) over PKCS#11 (cryptoki).
//!
//! One `Pkcs11` context per process (cryptoki#260: initializing twice crashes) and a pool of logged-in read-write
//! sessions. When an operation meets a dead device (a device-level error, or a token that no longer answers
//! C_GetTokenInfo), the backend empties the pool and re-initializes the module (C_Finalize, C_Initialize): some
//! modules, SoftHSM among them, only rediscover a token that went away that way. The caller gets
//! [`HsmError::Unavailable`] at once; the next call opens a fresh session and logs in again. An epoch counter under a
//! read-write lock makes concurrent failures re-initialize once, and keeps re-initialization away from operations in
//! flight. A wrong PIN is remembered and never retried (tokens lock after a few failures).

mod keys;

use std::path::{Path, PathBuf};
use std::sync::{Mutex, RwLock};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as P11Error, RvError};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;

use crate::{HsmError, Profile};

/// Sessions kept open for reuse.
const POOL_SIZE: usize = 8;

/// The PKCS#11 backend.
pub struct Pkcs11Backend {
    ctx: Pkcs11,
    module: PathBuf,
    token: String,
    pin: AuthPin,
    profile: Profile,
    pool: Mutex<Vec<Session>>,
    pin_refused: Mutex<Option<HsmError>>,
    /// Bumped by every re-initialization; operations hold the read side while they use a session.
    epoch: RwLock<u64>,
}

impl std::fmt::Debug for Pkcs11Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Pkcs11Backend({}, token {}, profile {})", self.module.display(), self.token, self.profile.name)
    }
}

/// Load and initialize a module, once per process.
pub fn load_module(module: &Path) -> Result<Pkcs11, HsmError> {
    let err = |detail: String| HsmError::Module { module: module.display().to_string(), detail };
    let ctx = Pkcs11::new(module).map_err(|e| err(e.to_string()))?;
    ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)).map_err(|e| err(e.to_string()))?;
    Ok(ctx)
}

/// An error inside a session operation: raw from PKCS#11 (checked for device failure), or already decided.
#[derive(Debug)]
pub(crate) enum OpError {
    /// From the module.
    P11(P11Error),
    /// Decided by the operation.
    Hsm(HsmError),
}

impl From<P11Error> for OpError {
    fn from(e: P11Error) -> Self {
        OpError::P11(e)
    }
}

impl From<HsmError> for OpError {
    fn from(e: HsmError) -> Self {
        OpError::Hsm(e)
    }
}

/// Errors after which the session (and probably every session) is dead.
fn is_device_error(e: &P11Error) -> bool {
    matches!(
        e,
        P11Error::Pkcs11(
            RvError::DeviceError
                | RvError::DeviceRemoved
                | RvError::DeviceMemory
                | RvError::SessionClosed
                | RvError::SessionHandleInvalid
                | RvError::TokenNotPresent
                | RvError::TokenNotRecognized
                | RvError::UserNotLoggedIn
                | RvError::CryptokiNotInitialized,
            _
        )
    )
}

/// Map a PKCS#11 error from `op` to what callers act on.
pub(crate) fn map_err(op: &str, e: P11Error) -> HsmError {
    match &e {
        P11Error::Pkcs11(RvError::PinIncorrect, _) => HsmError::PinIncorrect,
        P11Error::Pkcs11(RvError::PinLocked, _) => HsmError::PinLocked,
        _ if is_device_error(&e) => HsmError::Unavailable(format!("{op}: {e}")),
        _ => HsmError::Refused { op: op.to_string(), detail: e.to_string() },
    }
}

impl Pkcs11Backend {
    /// A backend on the token labelled `token` of an initialized module. Nothing is opened until first use.
    pub fn new(ctx: Pkcs11, module: &Path, token: &str, pin: &str, profile: Profile) -> Pkcs11Backend {
        Pkcs11Backend {
            ctx,
            module: module.to_path_buf(),
            token: token.to_string(),
            pin: AuthPin::new(pin.into()),
            profile,
            pool: Mutex::new(Vec::new()),
            pin_refused: Mutex::new(None),
            epoch: RwLock::new(0),
        }
    }

    /// The vendor profile in use.
    pub fn profile(&self) -> &Profile {
        &self.profile
    }

    fn find_slot(&self) -> Result<Slot, HsmError> {
        let mut seen = Vec::new();
        let gone = |e: P11Error| HsmError::Unavailable(format!("token {} does not answer: {e}", self.token));
        let slots = self.ctx.get_slots_with_token().map_err(gone)?;
        for slot in slots {
            let info = self.ctx.get_token_info(slot).map_err(gone)?;
            let label = info.label().trim_end().to_string();
            if label == self.token {
                return Ok(slot);
            }
            seen.push(label);
        }
        Err(HsmError::TokenNotFound { label: self.token.clone(), seen })
    }

    fn open_session(&self) -> Result<(Slot, Session), HsmError> {
        if let Some(e) = self.pin_refused.lock().unwrap_or_else(|p| p.into_inner()).clone() {
            return Err(e);
        }
        let slot = self.find_slot()?;
        let session = self.ctx.open_rw_session(slot).map_err(|e| map_err("open session", e))?;
        match session.login(UserType::User, Some(&self.pin)) {
            Ok(()) | Err(P11Error::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => Ok((slot, session)),
            Err(e) => {
                let mapped = map_err("log in", e);
                if matches!(mapped, HsmError::PinIncorrect | HsmError::PinLocked) {
                    *self.pin_refused.lock().unwrap_or_else(|p| p.into_inner()) = Some(mapped.clone());
                }
                Err(mapped)
            }
        }
    }

    /// Run `f` on a pooled session. A dead device empties the pool and re-initializes the module.
    pub(crate) fn with_session<T>(
        &self,
        op: &str,
        f: impl FnOnce(&Session) -> Result<T, OpError>,
    ) -> Result<T, HsmError> {
        let gate = self.epoch.read().unwrap_or_else(|p| p.into_inner());
        let seen = *gate;
        let pooled = self.pool.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let session = match pooled {
            Some(s) => s,
            None => match self.open_session() {
                Ok((_, s)) => s,
                Err(e @ HsmError::Unavailable(_)) => {
                    drop(gate);
                    self.reinitialize(seen);
                    return Err(e);
                }
                Err(e) => return Err(e),
            },
        };
        let result = f(&session);
        let dead = match &result {
            Err(OpError::P11(e)) => is_device_error(e),
            // An object that is not there may be a token that is not there: ask the token.
            Err(OpError::Hsm(HsmError::NotFound(_))) => !self.token_answers(&session),
            _ => false,
        };
        if dead {
            drop(session);
            drop(gate);
            log::warn!("HSM unreachable during {op}; re-initializing the module");
            self.reinitialize(seen);
            return Err(HsmError::Unavailable(format!("{op}: token {} does not answer", self.token)));
        }
        {
            let mut pool = self.pool.lock().unwrap_or_else(|p| p.into_inner());
            if pool.len() < POOL_SIZE {
                pool.push(session);
            }
        }
        result.map_err(|e| match e {
            OpError::P11(e) => map_err(op, e),
            OpError::Hsm(e) => e,
        })
    }

    fn token_answers(&self, session: &Session) -> bool {
        session.get_session_info().and_then(|i| self.ctx.get_token_info(i.slot_id())).is_ok()
    }

    /// C_Finalize and C_Initialize, unless another thread already did since `seen`.
    fn reinitialize(&self, seen: u64) {
        let mut epoch = self.epoch.write().unwrap_or_else(|p| p.into_inner());
        if *epoch != seen {
            return;
        }
        *epoch += 1;
        // Close pooled sessions while the module is still initialized.
        self.pool.lock().unwrap_or_else(|p| p.into_inner()).clear();
        let _ = self.ctx.clone().finalize();
        if let Err(e) = self.ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
            log::error!("re-initializing the PKCS#11 module failed: {e}; will retry on the next request");
        }
    }

    pub(crate) fn token_label(&self) -> &str {
        &self.token
    }

    pub(crate) fn module_path(&self) -> &Path {
        &self.module
    }

    pub(crate) fn context(&self) -> &Pkcs11 {
        &self.ctx
    }
}
