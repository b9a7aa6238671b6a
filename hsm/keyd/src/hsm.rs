//! The PKCS#11 connection: one context per process (cryptoki#260: initializing twice crashes), one logged-in session
//! kept open and re-opened after device or session errors.
//!
//! Fail-closed: while the token is unreachable every operation errors at once. A wrong PIN is never retried by itself:
//! tokens lock after a few failed logins, so keyd waits for an operator to fix the credential and restart it.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as P11Error, RvError};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;
use serde::Serialize;

use crate::KeydError;

/// What keyd reports about its HSM.
#[derive(Debug, Clone, Serialize)]
pub struct HsmStatus {
    /// Module path.
    pub module: PathBuf,
    /// Library manufacturer and description.
    pub library: String,
    /// Library version.
    pub library_version: String,
    /// Token label.
    pub token_label: String,
    /// Token manufacturer.
    pub manufacturer: String,
    /// Token model.
    pub model: String,
    /// Vendor profile in use.
    pub profile: String,
    /// Whether the user session is logged in now.
    pub logged_in: bool,
}

/// A logged-in connection to one token.
pub struct Hsm {
    ctx: Arc<Pkcs11>,
    module: PathBuf,
    label: String,
    profile: String,
    pin: AuthPin,
    session: Mutex<Option<(Slot, Session)>>,
}

impl std::fmt::Debug for Hsm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Hsm({}, token {})", self.module.display(), self.label)
    }
}

fn p11(e: P11Error) -> KeydError {
    match e {
        P11Error::Pkcs11(RvError::PinIncorrect, _) => KeydError::PinIncorrect,
        P11Error::Pkcs11(RvError::PinLocked, _) => KeydError::PinLocked,
        other => KeydError::Hsm(other.to_string()),
    }
}

impl Hsm {
    /// Load the module and initialize it, once per process. Fails only when the module itself is unusable (a
    /// configuration error); the token may be absent and appear later.
    pub fn load_module(module: &Path) -> Result<Arc<Pkcs11>, KeydError> {
        let err = |detail: String| KeydError::Module { path: module.to_path_buf(), detail };
        let ctx = Pkcs11::new(module).map_err(|e| err(e.to_string()))?;
        ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)).map_err(|e| err(e.to_string()))?;
        Ok(Arc::new(ctx))
    }

    /// A handle on the token labelled `label` through an initialized module; nothing is opened yet.
    pub fn new(ctx: Arc<Pkcs11>, module: &Path, label: &str, profile: &str, pin: &str) -> Hsm {
        Hsm {
            ctx,
            module: module.to_path_buf(),
            label: label.to_string(),
            profile: profile.to_string(),
            pin: AuthPin::new(pin.into()),
            session: Mutex::new(None),
        }
    }

    fn find_slot(&self) -> Result<Slot, KeydError> {
        let mut seen = Vec::new();
        for slot in self.ctx.get_slots_with_token().map_err(p11)? {
            let info = self.ctx.get_token_info(slot).map_err(p11)?;
            let label = info.label().trim_end().to_string();
            if label == self.label {
                return Ok(slot);
            }
            seen.push(label);
        }
        Err(KeydError::TokenNotFound { label: self.label.clone(), seen })
    }

    /// Make sure a logged-in session exists, opening one if needed; then check it still works.
    pub fn ensure_session(&self) -> Result<(), KeydError> {
        let mut guard = self.session.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((_, s)) = guard.as_ref() {
            match s.get_session_info() {
                Ok(info) if matches!(info.session_state(), cryptoki::session::SessionState::RwUser) => {
                    return Ok(());
                }
                Ok(_) | Err(_) => {
                    log::warn!("HSM session lost; opening a new one");
                    *guard = None;
                }
            }
        }
        let slot = self.find_slot()?;
        let session = self.ctx.open_rw_session(slot).map_err(p11)?;
        match session.login(UserType::User, Some(&self.pin)) {
            Ok(()) => {}
            // Another session of this process already logged the token in.
            Err(P11Error::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => {}
            Err(e) => return Err(p11(e)),
        }
        log::info!(token_label = self.label.as_str(); "logged in to the HSM token");
        *guard = Some((slot, session));
        Ok(())
    }

    /// The current status; logs in if needed.
    pub fn status(&self) -> Result<HsmStatus, KeydError> {
        self.ensure_session()?;
        let lib = self.ctx.get_library_info().map_err(p11)?;
        let guard = self.session.lock().unwrap_or_else(|p| p.into_inner());
        let (slot, _) = guard.as_ref().ok_or_else(|| KeydError::Hsm("no session".into()))?;
        let token = self.ctx.get_token_info(*slot).map_err(p11)?;
        Ok(HsmStatus {
            module: self.module.clone(),
            library: format!("{} {}", lib.manufacturer_id().trim_end(), lib.library_description().trim_end()),
            library_version: lib.library_version().to_string(),
            token_label: self.label.clone(),
            manufacturer: token.manufacturer_id().trim_end().to_string(),
            model: token.model().trim_end().to_string(),
            profile: self.profile.clone(),
            logged_in: true,
        })
    }
}
