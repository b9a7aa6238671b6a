//! Local staff accounts: tellers and supervisors, kept in the store (`accounts` table) so every node sees them.
//!
//! - Passwords are hashed with Argon2id (RFC 9106; OWASP's 19 MiB, 2 passes, 1 lane) into a PHC string; the
//!   plaintext is zeroized after hashing or checking.
//! - After [`MAX_FAILURES`] wrong passwords in a row the account locks for [`LOCK_SECONDS`]; a supervisor can
//!   unlock it. Failures are counted with the store's compare-and-set, so two nodes cannot lose a count.
//! - A name that does not exist costs the same hash as one that does, so timing does not tell names apart.
//! - A teller takes calls only for the business types the account is permitted for.

use std::collections::BTreeSet;
use std::sync::Arc;

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use serde::{Deserialize, Serialize};
use vbank_store::{Expect, Store, StoreError, Table};
use zeroize::Zeroizing;

/// Wrong passwords in a row before an account locks.
pub const MAX_FAILURES: u32 = 5;
/// How long a locked account stays locked, seconds.
pub const LOCK_SECONDS: u64 = 15 * 60;

/// What an account may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// Serves customers.
    Teller,
    /// Watches calls and queues, manages tellers, plays recordings back under audit.
    Supervisor,
}

impl Role {
    /// From its name.
    pub fn from_name(s: &str) -> Option<Role> {
        match s {
            "teller" => Some(Role::Teller),
            "supervisor" => Some(Role::Supervisor),
            _ => None,
        }
    }
}

/// One account as stored (the hash, never the password).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    /// Login name.
    pub name: String,
    /// Teller or supervisor.
    pub role: Role,
    /// Business types (queues) a teller may take.
    pub businesses: BTreeSet<String>,
    /// Argon2id PHC string.
    pub hash: String,
    /// Wrong passwords since the last good one.
    pub failures: u32,
    /// Locked until this Unix second.
    pub locked_until: Option<u64>,
    /// Disabled by a supervisor.
    pub disabled: bool,
}

/// Why an account operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AccountError {
    /// Name unknown or password wrong (the same answer for both).
    #[error("wrong name or password")]
    BadCredentials,
    /// Too many wrong passwords.
    #[error(
        "the account is locked after {MAX_FAILURES} wrong passwords until {until} (Unix time): wait, or ask a supervisor to unlock it"
    )]
    Locked {
        /// Unix second.
        until: u64,
    },
    /// Disabled by a supervisor.
    #[error("the account is disabled: ask a supervisor")]
    Disabled,
    /// The name is taken.
    #[error("an account named {0:?} already exists")]
    Exists(String),
    /// No such account.
    #[error("no account named {0:?}")]
    NotFound(String),
    /// The new password or name does not meet the policy.
    #[error("{0}")]
    Policy(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Hashing failed.
    #[error("password hashing failed: {0}")]
    Hash(String),
}

fn argon2() -> Argon2<'static> {
    Argon2::new(Algorithm::Argon2id, Version::V0x13, Params::new(19 * 1024, 2, 1, None).expect("valid parameters"))
}

/// Hash `password` (Argon2id, a fresh salt).
pub fn hash_password(password: &str) -> Result<String, AccountError> {
    let salt = SaltString::generate(&mut OsRng);
    argon2()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| AccountError::Hash(e.to_string()))
}

fn verify(password: &str, phc: &str) -> bool {
    PasswordHash::new(phc).is_ok_and(|h| argon2().verify_password(password.as_bytes(), &h).is_ok())
}

/// The password policy: at least 10 characters, with letters and digits; not the name.
pub fn check_policy(name: &str, password: &str) -> Result<(), AccountError> {
    let long = password.chars().count() >= 10;
    let letters = password.chars().any(char::is_alphabetic);
    let digits = password.chars().any(|c| c.is_ascii_digit());
    if !(long && letters && digits) || password.eq_ignore_ascii_case(name) {
        return Err(AccountError::Policy(
            "the password must have at least 10 characters, letters and digits, and not be the account name".into(),
        ));
    }
    Ok(())
}

fn check_name(name: &str) -> Result<(), AccountError> {
    let ok = (1..=32).contains(&name.len())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
    if ok {
        Ok(())
    } else {
        Err(AccountError::Policy("account names are 1–32 of a-z, A-Z, 0-9, '.', '-', '_'".into()))
    }
}

/// The accounts in a store.
#[derive(Clone)]
pub struct Accounts {
    store: Arc<dyn Store>,
    /// A hash of a random password, checked when the name is unknown (equal cost).
    decoy: Arc<String>,
}

fn key(name: &str) -> String {
    format!("account/{name}")
}

impl Accounts {
    /// Accounts kept in `store`.
    pub fn new(store: Arc<dyn Store>) -> Result<Accounts, AccountError> {
        Ok(Accounts { store, decoy: Arc::new(hash_password("decoy-password-never-matches-0")?) })
    }

    async fn load(&self, name: &str) -> Result<Option<(Account, u64)>, AccountError> {
        let Some(v) = self.store.get(Table::Accounts, &key(name)).await? else { return Ok(None) };
        let a = serde_json::from_slice(&v.value).map_err(|e| AccountError::Hash(format!("stored account: {e}")))?;
        Ok(Some((a, v.version)))
    }

    async fn save(&self, a: &Account, expect: Expect) -> Result<(), AccountError> {
        self.store.put(Table::Accounts, &key(&a.name), &serde_json::to_vec(a).expect("serializes"), expect).await?;
        Ok(())
    }

    /// Create an account.
    pub async fn create(
        &self,
        name: &str,
        role: Role,
        businesses: BTreeSet<String>,
        password: Zeroizing<String>,
    ) -> Result<Account, AccountError> {
        check_name(name)?;
        check_policy(name, &password)?;
        let hash = blocking_hash(password).await?;
        let a = Account { name: name.into(), role, businesses, hash, failures: 0, locked_until: None, disabled: false };
        match self.save(&a, Expect::Absent).await {
            Err(AccountError::Store(StoreError::Conflict { .. })) => Err(AccountError::Exists(name.into())),
            other => other.map(|()| a),
        }
    }

    /// Check a login at Unix second `now`: the account, or why not. Counts failures and locks.
    pub async fn login(&self, name: &str, password: Zeroizing<String>, now: u64) -> Result<Account, AccountError> {
        let Some((mut a, version)) = self.load(name).await? else {
            let decoy = self.decoy.clone();
            let _ = tokio::task::spawn_blocking(move || verify(&password, &decoy)).await;
            return Err(AccountError::BadCredentials);
        };
        if a.disabled {
            return Err(AccountError::Disabled);
        }
        if let Some(until) = a.locked_until.filter(|u| *u > now) {
            return Err(AccountError::Locked { until });
        }
        let phc = a.hash.clone();
        let good = tokio::task::spawn_blocking(move || verify(&password, &phc))
            .await
            .map_err(|e| AccountError::Hash(e.to_string()))?;
        if good {
            if a.failures > 0 || a.locked_until.is_some() {
                a.failures = 0;
                a.locked_until = None;
                self.save(&a, Expect::Version(version)).await?;
            }
            return Ok(a);
        }
        a.failures += 1;
        if a.failures >= MAX_FAILURES {
            a.locked_until = Some(now + LOCK_SECONDS);
            a.failures = 0;
        }
        // A conflict means another node counted a failure at the same time: count again on the fresh value.
        match self.save(&a, Expect::Version(version)).await {
            Err(AccountError::Store(StoreError::Conflict { .. })) => Box::pin(self.count_failure(name, now)).await?,
            other => other?,
        }
        match a.locked_until {
            Some(until) => Err(AccountError::Locked { until }),
            None => Err(AccountError::BadCredentials),
        }
    }

    async fn count_failure(&self, name: &str, now: u64) -> Result<(), AccountError> {
        for _ in 0..8 {
            let Some((mut a, version)) = self.load(name).await? else { return Ok(()) };
            a.failures += 1;
            if a.failures >= MAX_FAILURES {
                a.locked_until = Some(now + LOCK_SECONDS);
                a.failures = 0;
            }
            match self.save(&a, Expect::Version(version)).await {
                Err(AccountError::Store(StoreError::Conflict { .. })) => continue,
                other => return other,
            }
        }
        Ok(())
    }

    /// Change an account with `f` (compare-and-set, retried on a concurrent change).
    async fn update(&self, name: &str, f: impl Fn(&mut Account)) -> Result<Account, AccountError> {
        loop {
            let (mut a, version) = self.load(name).await?.ok_or_else(|| AccountError::NotFound(name.into()))?;
            f(&mut a);
            match self.save(&a, Expect::Version(version)).await {
                Err(AccountError::Store(StoreError::Conflict { .. })) => continue,
                other => return other.map(|()| a),
            }
        }
    }

    /// Set the business types a teller may take.
    pub async fn permit(&self, name: &str, businesses: BTreeSet<String>) -> Result<Account, AccountError> {
        self.update(name, |a| a.businesses = businesses.clone()).await
    }

    /// Lift a lock.
    pub async fn unlock(&self, name: &str) -> Result<Account, AccountError> {
        self.update(name, |a| {
            a.locked_until = None;
            a.failures = 0;
        })
        .await
    }

    /// Disable or enable an account.
    pub async fn set_disabled(&self, name: &str, disabled: bool) -> Result<Account, AccountError> {
        self.update(name, |a| a.disabled = disabled).await
    }

    /// Set a new password.
    pub async fn set_password(&self, name: &str, password: Zeroizing<String>) -> Result<Account, AccountError> {
        check_policy(name, &password)?;
        let hash = blocking_hash(password).await?;
        self.update(name, |a| {
            a.hash = hash.clone();
            a.failures = 0;
            a.locked_until = None;
        })
        .await
    }

    /// Every account, by name.
    pub async fn list(&self) -> Result<Vec<Account>, AccountError> {
        let rows = self.store.list(Table::Accounts, "account/", 10_000).await?;
        rows.into_iter()
            .map(|(_, v)| {
                serde_json::from_slice(&v.value).map_err(|e| AccountError::Hash(format!("stored account: {e}")))
            })
            .collect()
    }
}

async fn blocking_hash(password: Zeroizing<String>) -> Result<String, AccountError> {
    tokio::task::spawn_blocking(move || hash_password(&password))
        .await
        .map_err(|e| AccountError::Hash(e.to_string()))?
}

#[cfg(test)]
mod tests;
