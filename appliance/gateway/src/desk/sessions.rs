//! Staff sessions: a random token in an HttpOnly cookie; kept in memory and in the store (accounts table,
//! `session/<SM3 of the token>`, so whoever reads the store cannot take a session over), so a restarted gateway
//! keeps its tellers and supervisors logged in. A session lasts [`SESSION_TTL`] after its last use.

use std::time::Duration;

use axum::http::{HeaderMap, header};
use serde::{Deserialize, Serialize};
use vbank_accounts::Role as StaffRole;
use vbank_store::{Expect, Table};

use super::{Desk, now_ms, random_hex, secret_hash};

/// How long a staff session lasts without activity.
pub(super) const SESSION_TTL: Duration = Duration::from_secs(10 * 3600);

/// A logged-in member of staff.
#[derive(Clone, Serialize, Deserialize)]
pub(super) struct Session {
    name: String,
    role: StaffRole,
    expires_ms: u64,
}

fn key(token: &str) -> String {
    format!("session/{}", secret_hash(token))
}

impl Desk {
    /// A new session for `name`; its token, for the cookie.
    pub(super) async fn open_session(&self, name: &str, role: StaffRole) -> String {
        let token = random_hex(32);
        let s = Session { name: name.into(), role, expires_ms: now_ms() + SESSION_TTL.as_millis() as u64 };
        self.keep(&token, &s).await;
        self.inner.lock().expect("not poisoned").sessions.insert(token.clone(), s);
        token
    }

    async fn keep(&self, token: &str, s: &Session) {
        let Some(store) = &self.store else { return };
        let value = serde_json::to_vec(s).expect("serializes");
        if let Err(e) = store.put(Table::Accounts, &key(token), &value, Expect::Any).await {
            // The session works on this node; after a restart its holder logs in again.
            log::warn!("a staff session could not be kept in the store: {e}");
        }
    }

    /// The member of staff whose session cookie `headers` carry; the session is extended.
    pub(super) async fn session(&self, headers: &HeaderMap) -> Option<(String, StaffRole)> {
        let cookie = headers.get(header::COOKIE)?.to_str().ok()?;
        let token = cookie.split(';').find_map(|c| c.trim().strip_prefix("vbank_session="))?;
        let now = now_ms();
        let known = self.inner.lock().expect("not poisoned").sessions.get(token).cloned();
        let mut s = match known {
            Some(s) => s,
            // Not in memory: this gateway restarted since the login.
            None => {
                let v = self.store.as_ref()?.get(Table::Accounts, &key(token)).await.ok()??;
                serde_json::from_slice::<Session>(&v.value).ok()?
            }
        };
        if s.expires_ms < now {
            self.inner.lock().expect("not poisoned").sessions.remove(token);
            if let Some(store) = &self.store {
                let _ = store.delete(Table::Accounts, &key(token), Expect::Any).await;
            }
            return None;
        }
        let ttl = SESSION_TTL.as_millis() as u64;
        // The store learns of the extension only when half the time is used, not on every request.
        if s.expires_ms - now < ttl / 2 {
            s.expires_ms = now + ttl;
            self.keep(token, &s).await;
        }
        let who = (s.name.clone(), s.role);
        self.inner.lock().expect("not poisoned").sessions.insert(token.to_string(), s);
        Some(who)
    }

    /// End every session of `name` (logging out ends them all: a shared PC left logged in elsewhere too).
    pub(super) async fn close_sessions(&self, name: &str) {
        self.inner.lock().expect("not poisoned").sessions.retain(|_, v| v.name != name);
        let Some(store) = &self.store else { return };
        if let Ok(all) = store.list(Table::Accounts, "session/", 100_000).await {
            for (k, v) in all {
                if serde_json::from_slice::<Session>(&v.value).is_ok_and(|s| s.name == name) {
                    let _ = store.delete(Table::Accounts, &k, Expect::Any).await;
                }
            }
        }
    }

    /// Forget expired sessions, in memory and in the store.
    pub(super) async fn expire_sessions(&self) {
        let now = now_ms();
        self.inner.lock().expect("not poisoned").sessions.retain(|_, s| s.expires_ms >= now);
        let Some(store) = &self.store else { return };
        if let Ok(all) = store.list(Table::Accounts, "session/", 100_000).await {
            for (k, v) in all {
                if serde_json::from_slice::<Session>(&v.value).is_ok_and(|s| s.expires_ms < now) {
                    let _ = store.delete(Table::Accounts, &k, Expect::Any).await;
                }
            }
        }
    }
}
