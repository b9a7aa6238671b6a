//! A call's keys by epoch. keyd makes one key per epoch (a new one on every join and leave); within an epoch each
//! sender has its own key id, `epoch << 8 | slot` ([`kid`]), so two senders never use a nonce twice under one key
//! (RFC 9605 derives a different key and salt for every key id). A receiver that holds whole epochs — the
//! recorder's fusion — derives each sender's key the first time one of its frames arrives.

use std::collections::HashMap;

use zeroize::Zeroizing;

use crate::{Codec, Receiver, SframeError, Suite};

/// Senders one epoch can have (slot 0 is never given).
pub const MAX_SLOT: u8 = u8::MAX;

/// The key id of the sender in `slot` during `epoch`.
pub fn kid(epoch: u64, slot: u8) -> u64 {
    (epoch << 8) | u64::from(slot)
}

/// The epoch and slot a key id names.
pub fn split(kid: u64) -> (u64, u8) {
    (kid >> 8, (kid & 0xff) as u8)
}

/// Every epoch key of a call, opening frames of any sender in any of those epochs.
#[derive(Clone, Default)]
pub struct EpochKeys {
    epochs: HashMap<u64, (Suite, Zeroizing<Vec<u8>>)>,
    receiver: Receiver,
}

impl std::fmt::Debug for EpochKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut epochs: Vec<_> = self.epochs.keys().collect();
        epochs.sort();
        f.debug_struct("EpochKeys").field("epochs", &epochs).finish_non_exhaustive()
    }
}

impl EpochKeys {
    /// No keys.
    pub fn new() -> EpochKeys {
        EpochKeys::default()
    }

    /// Hold `key`, the call key of `epoch`, under `suite`.
    pub fn add_epoch(&mut self, suite: Suite, epoch: u64, key: &[u8]) {
        self.epochs.insert(epoch, (suite, Zeroizing::new(key.to_vec())));
    }

    /// How many epochs are held.
    pub fn len(&self) -> usize {
        self.epochs.len()
    }

    /// Whether no epoch is held.
    pub fn is_empty(&self) -> bool {
        self.epochs.is_empty()
    }

    /// Open one protected frame of `codec`: the encoded frame as the sender's encoder made it, and its key id.
    pub fn open(&mut self, codec: Codec, frame: &[u8]) -> Result<(Vec<u8>, u64), SframeError> {
        let kid = Receiver::peek(codec, frame)?.kid;
        if !self.receiver.holds(kid) {
            let (suite, key) = self.epochs.get(&split(kid).0).ok_or(SframeError::UnknownKey(kid))?;
            self.receiver.add_key(*suite, kid, key);
        }
        self.receiver.decrypt(codec, frame).map(|(f, h)| (f, h.kid))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Sender;

    #[test]
    fn two_senders_of_one_epoch_use_different_keys_and_both_open() {
        let key = [7u8; 32];
        let suite = Suite::Aes256GcmSha512;
        let mut a = Sender::new(suite, kid(3, 1), &key);
        let mut b = Sender::new(suite, kid(3, 2), &key);
        let frame = [0x31u8, 0, 0, 1, 2, 3, 4, 5];
        let (fa, fb) = (a.encrypt(Codec::Vp8, &frame).unwrap(), b.encrypt(Codec::Vp8, &frame).unwrap());
        // Same counter, same plaintext: a shared key would give the same ciphertext (a reused nonce).
        assert_ne!(fa[4..], fb[4..]);
        let mut keys = EpochKeys::new();
        keys.add_epoch(suite, 3, &key);
        assert_eq!(keys.open(Codec::Vp8, &fa).unwrap(), (frame.to_vec(), kid(3, 1)));
        assert_eq!(keys.open(Codec::Vp8, &fb).unwrap(), (frame.to_vec(), kid(3, 2)));
        let mut later = Sender::new(suite, kid(4, 1), &key);
        let f4 = later.encrypt(Codec::Vp8, &frame).unwrap();
        assert_eq!(keys.open(Codec::Vp8, &f4), Err(SframeError::UnknownKey(kid(4, 1))));
        assert!(format!("{keys:?}").contains("[3]") && !format!("{keys:?}").contains('7'));
    }

    #[test]
    fn key_ids_split_back() {
        assert_eq!(split(kid(0x1234, 9)), (0x1234, 9));
        assert_eq!(kid(1, 0), 256);
    }
}
