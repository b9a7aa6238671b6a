//! `vbank-sframe` for the pages' frame-encryption worker, as a WebAssembly module with a C ABI (no bindings
//! generator): the worker copies a frame into memory from [`sframe_alloc`], calls [`sframe_encrypt`] or
//! [`sframe_decrypt`], reads the result from [`sframe_out_ptr`] / [`sframe_out_len`], and frees what it allocated.
//! Keys are installed once per epoch with [`sframe_set_sender`] and [`sframe_add_key`]; each context is a handle.
//!
//! Return codes: `0` done; `-1` malformed; `-2` unknown key; `-3` does not authenticate; `-4` bad key or suite;
//! `-5` counter used up; `-6` bad handle or codec.
//!
//! A C ABI across the WebAssembly boundary is raw pointers by nature: this crate is the one place `unsafe` is
//! allowed for it, and each function says what the worker must guarantee.
#![allow(unsafe_code)]

use std::cell::RefCell;

use vbank_sframe::{Codec, Receiver, Sender, SframeError, Suite};

struct Context {
    sender: Option<Sender>,
    receiver: Receiver,
    out: Vec<u8>,
}

thread_local! {
    static CONTEXTS: RefCell<Vec<Option<Context>>> = const { RefCell::new(Vec::new()) };
}

fn code(e: &SframeError) -> i32 {
    match e {
        SframeError::Malformed(_) => -1,
        SframeError::UnknownKey(_) => -2,
        SframeError::Auth => -3,
        SframeError::Key => -4,
        SframeError::CounterExhausted => -5,
    }
}

fn with<T>(handle: u32, f: impl FnOnce(&mut Context) -> T) -> Option<T> {
    CONTEXTS.with(|c| c.borrow_mut().get_mut(handle as usize).and_then(Option::as_mut).map(f))
}

/// # Safety
/// `ptr` must point to `len` readable bytes (memory from [`sframe_alloc`]).
unsafe fn bytes<'a>(ptr: *const u8, len: usize) -> &'a [u8] {
    if len == 0 { &[] } else { unsafe { std::slice::from_raw_parts(ptr, len) } }
}

/// Memory for `len` bytes, for the worker to copy into.
#[unsafe(no_mangle)]
pub extern "C" fn sframe_alloc(len: usize) -> *mut u8 {
    let mut v = Vec::<u8>::with_capacity(len.max(1));
    let p = v.as_mut_ptr();
    std::mem::forget(v);
    p
}

/// Free memory from [`sframe_alloc`].
///
/// # Safety
/// `ptr` and `len` must be exactly what [`sframe_alloc`] was given and returned, freed once.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sframe_free(ptr: *mut u8, len: usize) {
    drop(unsafe { Vec::from_raw_parts(ptr, 0, len.max(1)) });
}

/// A new context (a page's sender and receivers for one call); its handle.
#[unsafe(no_mangle)]
pub extern "C" fn sframe_context() -> u32 {
    CONTEXTS.with(|c| {
        let mut c = c.borrow_mut();
        c.push(Some(Context { sender: None, receiver: Receiver::new(), out: Vec::new() }));
        (c.len() - 1) as u32
    })
}

/// Drop a context and its keys.
#[unsafe(no_mangle)]
pub extern "C" fn sframe_drop(handle: u32) {
    CONTEXTS.with(|c| {
        if let Some(slot) = c.borrow_mut().get_mut(handle as usize) {
            *slot = None;
        }
    });
}

fn suite(id: u32) -> Option<Suite> {
    u16::try_from(id).ok().and_then(Suite::from_id)
}

fn codec(c: u32) -> Option<Codec> {
    match c {
        0 => Some(Codec::Vp8),
        1 => Some(Codec::Opus),
        _ => None,
    }
}

/// Send under `key` as key id `kid` with suite `suite_id` (RFC 9605 registry value; 0xF001 for SM4-GCM).
///
/// # Safety
/// `key` must point to `key_len` readable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sframe_set_sender(
    handle: u32,
    suite_id: u32,
    kid: u64,
    key: *const u8,
    key_len: usize,
) -> i32 {
    let Some(s) = suite(suite_id) else { return -4 };
    let key = unsafe { bytes(key, key_len) };
    with(handle, |c| c.sender = Some(Sender::new(s, kid, key))).map_or(-6, |()| 0)
}

/// Receive frames under key id `kid`.
///
/// # Safety
/// `key` must point to `key_len` readable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sframe_add_key(handle: u32, suite_id: u32, kid: u64, key: *const u8, key_len: usize) -> i32 {
    let Some(s) = suite(suite_id) else { return -4 };
    let key = unsafe { bytes(key, key_len) };
    with(handle, |c| c.receiver.add_key(s, kid, key)).map_or(-6, |()| 0)
}

/// Drop receive keys older than `kid`.
#[unsafe(no_mangle)]
pub extern "C" fn sframe_retire_before(handle: u32, kid: u64) -> i32 {
    with(handle, |c| c.receiver.retire_before(kid)).map_or(-6, |()| 0)
}

/// Protect one encoded frame (`codec` 0 VP8, 1 Opus); the result is at [`sframe_out_ptr`].
///
/// # Safety
/// `frame` must point to `len` readable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sframe_encrypt(handle: u32, codec_id: u32, frame: *const u8, len: usize) -> i32 {
    let Some(k) = codec(codec_id) else { return -6 };
    let frame = unsafe { bytes(frame, len) };
    with(handle, |c| {
        let Some(tx) = c.sender.as_mut() else { return -2 };
        match tx.encrypt(k, frame) {
            Ok(out) => {
                c.out = out;
                0
            }
            Err(e) => code(&e),
        }
    })
    .unwrap_or(-6)
}

/// Open one protected frame; the result is at [`sframe_out_ptr`]. The key id it carried is [`sframe_out_kid`].
///
/// # Safety
/// `frame` must point to `len` readable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sframe_decrypt(handle: u32, codec_id: u32, frame: *const u8, len: usize) -> i32 {
    let Some(k) = codec(codec_id) else { return -6 };
    let frame = unsafe { bytes(frame, len) };
    with(handle, |c| match c.receiver.decrypt(k, frame) {
        Ok((out, _)) => {
            c.out = out;
            0
        }
        Err(e) => code(&e),
    })
    .unwrap_or(-6)
}

/// Where the last result is (valid until the next call on the handle).
#[unsafe(no_mangle)]
pub extern "C" fn sframe_out_ptr(handle: u32) -> *const u8 {
    with(handle, |c| c.out.as_ptr()).unwrap_or(std::ptr::null())
}

/// The last result's length.
#[unsafe(no_mangle)]
pub extern "C" fn sframe_out_len(handle: u32) -> usize {
    with(handle, |c| c.out.len()).unwrap_or(0)
}

/// The key id of a protected frame, without opening it; `u64::MAX` when it has no readable header.
///
/// # Safety
/// `frame` must point to `len` readable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sframe_frame_kid(codec_id: u32, frame: *const u8, len: usize) -> u64 {
    let Some(k) = codec(codec_id) else { return u64::MAX };
    Receiver::peek(k, unsafe { bytes(frame, len) }).map_or(u64::MAX, |h| h.kid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_c_abi_round_trips_and_reports_errors() {
        let key = [7u8; 16];
        let h = sframe_context();
        unsafe {
            assert_eq!(sframe_set_sender(h, 0xF001, 5, key.as_ptr(), key.len()), 0);
            assert_eq!(sframe_add_key(h, 0xF001, 5, key.as_ptr(), key.len()), 0);
            assert_eq!(sframe_set_sender(h, 0x9999, 5, key.as_ptr(), key.len()), -4, "no such suite");
            let frame = [0xfcu8, 1, 2, 3, 4];
            assert_eq!(sframe_encrypt(h, 1, frame.as_ptr(), frame.len()), 0);
            let sealed = std::slice::from_raw_parts(sframe_out_ptr(h), sframe_out_len(h)).to_vec();
            assert_eq!(sframe_frame_kid(1, sealed.as_ptr(), sealed.len()), 5);
            assert_eq!(sframe_decrypt(h, 1, sealed.as_ptr(), sealed.len()), 0);
            assert_eq!(std::slice::from_raw_parts(sframe_out_ptr(h), sframe_out_len(h)), frame);
            let mut bad = sealed.clone();
            bad[3] ^= 1;
            assert_eq!(sframe_decrypt(h, 1, bad.as_ptr(), bad.len()), -3);
            assert_eq!(sframe_decrypt(h, 9, bad.as_ptr(), bad.len()), -6);
            let p = sframe_alloc(64);
            sframe_free(p, 64);
        }
        sframe_drop(h);
        assert_eq!(sframe_retire_before(h, 0), -6, "a dropped handle");
    }
}
