//! SM2 public-key encryption (GB/T 32918.4), ciphertext as DER `C1 ‖ C3 ‖ C2` — the form OpenSSL 3 reads and writes
//! and the one Chinese vendors' APIs use for field encryption.

use sm2::pke::{DecryptingKey, EncryptingKey};

use crate::CryptoError;
use crate::sm2sig::{Sm2PrivateKey, Sm2PublicKey};

/// Encrypt `msg` to `recipient`.
pub fn encrypt(recipient: &Sm2PublicKey, msg: &[u8]) -> Result<Vec<u8>, CryptoError> {
    EncryptingKey::new(recipient.inner())
        .encrypt_der(&mut getrandom::SysRng, msg)
        .map_err(|_| CryptoError::Encoding("SM2 encryption failed".into()))
}

/// Encrypt `msg` to `recipient`, ciphertext raw `04 ‖ C1 ‖ C3 ‖ C2` (the form Tencent's field encryption takes).
pub fn encrypt_raw(recipient: &Sm2PublicKey, msg: &[u8]) -> Result<Vec<u8>, CryptoError> {
    EncryptingKey::new(recipient.inner())
        .encrypt(&mut getrandom::SysRng, msg)
        .map_err(|_| CryptoError::Encoding("SM2 encryption failed".into()))
}

/// Decrypt a raw `04 ‖ C1 ‖ C3 ‖ C2` ciphertext; any alteration gives [`CryptoError::Decrypt`].
pub fn decrypt_raw(key: &Sm2PrivateKey, ciphertext: &[u8]) -> Result<crate::SecretBytes, CryptoError> {
    let sk = sm2::SecretKey::from_slice(key.scalar().expose()).map_err(|_| CryptoError::InvalidKey("SM2 scalar"))?;
    DecryptingKey::new(sk).decrypt(ciphertext).map(crate::SecretBytes::new).map_err(|_| CryptoError::Decrypt)
}

/// Decrypt a DER ciphertext; any alteration gives [`CryptoError::Decrypt`].
pub fn decrypt(key: &Sm2PrivateKey, ciphertext: &[u8]) -> Result<crate::SecretBytes, CryptoError> {
    let sk = sm2::SecretKey::from_slice(key.scalar().expose()).map_err(|_| CryptoError::InvalidKey("SM2 scalar"))?;
    DecryptingKey::new(sk).decrypt_der(ciphertext).map(crate::SecretBytes::new).map_err(|_| CryptoError::Decrypt)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_tamper() {
        let k = Sm2PrivateKey::generate().unwrap();
        let ct = encrypt(&k.public_key(), b"110101199003078888").unwrap();
        assert_eq!(decrypt(&k, &ct).unwrap().expose(), b"110101199003078888");
        let mut bad = ct.clone();
        let n = bad.len() - 1;
        bad[n] ^= 1;
        assert_eq!(decrypt(&k, &bad).unwrap_err(), CryptoError::Decrypt);
        assert!(decrypt(&Sm2PrivateKey::generate().unwrap(), &ct).is_err());
        let raw = encrypt_raw(&k.public_key(), b"key").unwrap();
        assert_eq!((raw[0], raw.len()), (4, 65 + 32 + 3), "04 ‖ C1 ‖ C3 ‖ C2");
        assert_eq!(decrypt_raw(&k, &raw).unwrap().expose(), b"key");
    }
}
