//! Key material in memory: locked against swapping while held, zeroized on drop.

use std::ffi::c_void;
use std::fmt;
use std::ptr::NonNull;

use zeroize::Zeroize;

/// Bytes that must not reach swap or outlive their use: plaintext data keys, private scalars.
///
/// The buffer is allocated once at its final size and never grows, so the locked pages are the ones holding it.
/// Locking is best effort: where `RLIMIT_MEMLOCK` is exhausted the bytes are still zeroized on drop.
pub struct SecretBytes {
    buf: Box<[u8]>,
    locked: bool,
}

impl SecretBytes {
    /// Take ownership of `bytes` (the source is zeroized).
    pub fn new(mut bytes: Vec<u8>) -> SecretBytes {
        let mut buf = vec![0u8; bytes.len()].into_boxed_slice();
        let locked = lock(&buf);
        buf.copy_from_slice(&bytes);
        bytes.zeroize();
        SecretBytes { buf, locked }
    }

    /// `len` bytes from the OS random generator.
    pub fn random(len: usize) -> Result<SecretBytes, crate::CryptoError> {
        let mut s = SecretBytes::new(vec![0u8; len]);
        crate::random(&mut s.buf)?;
        Ok(s)
    }

    /// The bytes; keep the borrow short.
    pub fn expose(&self) -> &[u8] {
        &self.buf
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// Whether it holds no bytes.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// Whether the pages are locked in RAM.
    pub fn is_locked(&self) -> bool {
        self.locked
    }
}

impl Clone for SecretBytes {
    fn clone(&self) -> Self {
        SecretBytes::new(self.buf.to_vec())
    }
}

impl Drop for SecretBytes {
    fn drop(&mut self) {
        self.buf.zeroize();
        if self.locked {
            unlock(&self.buf);
        }
    }
}

impl fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretBytes({} bytes, redacted)", self.buf.len())
    }
}

impl PartialEq for SecretBytes {
    /// Constant-time in the length of the shorter input's contents.
    fn eq(&self, other: &Self) -> bool {
        self.buf.len() == other.buf.len()
            && self.buf.iter().zip(other.buf.iter()).fold(0u8, |a, (x, y)| a | (x ^ y)) == 0
    }
}

fn lock(buf: &[u8]) -> bool {
    let Some(ptr) = NonNull::new(buf.as_ptr() as *mut c_void) else { return false };
    if buf.is_empty() {
        return false;
    }
    // SAFETY: mlock(2) only changes the residency of the pages spanning this live allocation; it neither reads nor
    // writes the memory, and the range is exactly the boxed slice we own.
    #[allow(unsafe_code)]
    unsafe {
        nix::sys::mman::mlock(ptr, buf.len()).is_ok()
    }
}

fn unlock(buf: &[u8]) {
    if let Some(ptr) = NonNull::new(buf.as_ptr() as *mut c_void) {
        // SAFETY: as in `lock`, for the same range, which is still allocated (called before the Box is freed).
        #[allow(unsafe_code)]
        unsafe {
            let _ = nix::sys::mman::munlock(ptr, buf.len());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_locks_compares_and_redacts() {
        let a = SecretBytes::new(vec![1, 2, 3]);
        assert_eq!(a.expose(), &[1, 2, 3]);
        assert!(a.is_locked(), "mlock of a small buffer should succeed (RLIMIT_MEMLOCK is at least 64 KiB)");
        assert_eq!(format!("{a:?}"), "SecretBytes(3 bytes, redacted)");
        assert_eq!(a, a.clone());
        assert_ne!(a, SecretBytes::new(vec![1, 2, 4]));
        assert_eq!(SecretBytes::random(32).unwrap().len(), 32);
        assert_ne!(SecretBytes::random(32).unwrap(), SecretBytes::random(32).unwrap());
    }
}
