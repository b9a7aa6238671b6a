//! Decommissioning (退出机制): every key of this node destroyed in the HSM, once two officers approved
//! `decommission <node>`. The audit log is sealed one last time while its seal key still exists; the seal keys and
//! the signing KEK (which wraps software seal keys) go last.

use vbank_hsm::{KeyLabel, Purpose};
use vbank_store::Expect;

use super::{KeyService, KeyState, blocking, now};
use crate::KeydError;

impl KeyService {
    /// Destroy every key version not destroyed yet; returns the labels destroyed, in order.
    pub async fn decommission(&self, actor: &str) -> Result<Vec<KeyLabel>, KeydError> {
        let mut records = self.records().await?;
        records.retain(|r| r.state != KeyState::Destroyed);
        let last = |p: Purpose| match p {
            Purpose::AuditSeal => 1,
            Purpose::Signing => 2,
            _ => 0,
        };
        records.sort_by_key(|r| (last(r.label.purpose), r.label.purpose.name(), r.label.version));
        let mut destroyed = Vec::new();
        let mut sealed = false;
        for mut rec in records {
            if last(rec.label.purpose) > 0 && !sealed {
                self.audit.seal(self).await?;
                sealed = true;
            }
            let (b, label) = (self.backend.clone(), rec.label);
            blocking(move || b.destroy(label)).await?;
            self.sm2_cache.lock().unwrap_or_else(|p| p.into_inner()).remove(&label);
            let (_, version) =
                self.record(label).await?.ok_or_else(|| KeydError::Internal(format!("{label} vanished")))?;
            rec.state = KeyState::Destroyed;
            rec.changed = now();
            self.save(&rec, Expect::Version(version)).await?;
            self.audit.append(self, actor, "key.destroy", &label.to_string(), "ok", "decommission").await?;
            destroyed.push(label);
        }
        Ok(destroyed)
    }
}
