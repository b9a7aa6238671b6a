//! End-to-end media frame encryption, sans IO: SFrame (RFC 9605) as vbank's pages and recorder use it on WebRTC
//! encoded frames, with the codec's own header left in clear so the SFU can still tell keyframes and layers apart.
//!
//! A protected frame is `prefix ‖ SFrame header ‖ ciphertext ‖ tag`:
//! - `prefix`: the first byte of the codec payload, in clear ([`clear_prefix`]: VP8's keyframe flag, Opus's TOC). It
//!   is the SFrame *metadata*: authenticated, not encrypted.
//! - the SFrame header ([`header`]): the key id (the call key's epoch — a new key on every join and leave — and the
//!   sender's slot in it, [`epochs::kid`]) and the sender's counter, which never repeats under one key.
//! - ciphertext and tag: AEAD over the rest, with `header ‖ prefix` as associated data, key and nonce derived as the
//!   RFC says ([`suite`]).
//!
//! Suites: AES-256-GCM (SHA-512 KDF, the default), AES-128-GCM, and the 国密 private-use suite SM4-GCM with HKDF-SM3.

pub mod epochs;
pub mod header;
pub mod suite;

use std::collections::HashMap;

use zeroize::Zeroizing;

pub use epochs::EpochKeys;
pub use header::Header;
pub use suite::Suite;

/// Why a frame could not be protected or opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SframeError {
    /// The frame is too short or its header is cut.
    #[error("malformed frame: {0}")]
    Malformed(&'static str),
    /// No key with this id is held (a receiver that joined late, or a key already dropped at rotation).
    #[error("no key {0} is held")]
    UnknownKey(u64),
    /// The tag does not verify: the frame was altered, or the key is not the sender's.
    #[error("the frame does not authenticate")]
    Auth,
    /// The key has the wrong length for the suite.
    #[error("the key does not fit the suite")]
    Key,
    /// The sender's counter is used up under this key: rotate.
    #[error("the frame counter is used up: rotate the key")]
    CounterExhausted,
}

/// The media a frame carries: it decides how much of the frame stays in clear.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    /// VP8 video.
    Vp8,
    /// Opus audio.
    Opus,
}

/// How many leading bytes of `frame` stay in clear for `codec`: one. For VP8 it is the first byte of the frame tag
/// (keyframe flag, version, show-frame): all the SFU reads to tell keyframes. The rest of the tag, the keyframe start
/// code and the picture size are encrypted too, so a decoder without the key rejects every frame instead of turning
/// a keyframe into noise. For Opus it is the TOC byte.
pub fn clear_prefix(codec: Codec, frame: &[u8]) -> usize {
    let n = match codec {
        Codec::Vp8 | Codec::Opus => 1,
    };
    n.min(frame.len())
}

/// One key's derived material.
#[derive(Clone)]
struct Keyed {
    suite: Suite,
    key: Zeroizing<Vec<u8>>,
    salt: [u8; suite::NONCE_LEN],
}

impl Keyed {
    fn new(suite: Suite, base_key: &[u8], kid: u64) -> Keyed {
        let (key, salt) = suite.derive(base_key, kid);
        Keyed { suite, key, salt }
    }
}

/// RFC 9605 encryption of `pt` under `kid`/`ctr` with `metadata` authenticated: `header ‖ ciphertext ‖ tag`.
pub fn protect(
    suite: Suite,
    base_key: &[u8],
    kid: u64,
    ctr: u64,
    metadata: &[u8],
    pt: &[u8],
) -> Result<Vec<u8>, SframeError> {
    seal_with(&Keyed::new(suite, base_key, kid), Header { kid, ctr }, metadata, pt)
}

fn seal_with(k: &Keyed, h: Header, metadata: &[u8], pt: &[u8]) -> Result<Vec<u8>, SframeError> {
    let mut out = h.encode();
    let aad = [out.as_slice(), metadata].concat();
    let ct = k.suite.seal(&k.key, &suite::nonce(&k.salt, h.ctr), &aad, pt)?;
    out.extend_from_slice(&ct);
    Ok(out)
}

fn open_with(k: &Keyed, h: Header, header_len: usize, metadata: &[u8], sealed: &[u8]) -> Result<Vec<u8>, SframeError> {
    let aad = [&sealed[..header_len], metadata].concat();
    k.suite.open(&k.key, &suite::nonce(&k.salt, h.ctr), &aad, &sealed[header_len..])
}

/// A sender: its key id in the call (epoch and slot, [`epochs::kid`]), the derived key and the counter.
pub struct Sender {
    kid: u64,
    keyed: Keyed,
    ctr: u64,
}

impl Sender {
    /// Send as key id `kid` under `base_key` (the epoch's call key), with `suite`.
    pub fn new(suite: Suite, kid: u64, base_key: &[u8]) -> Sender {
        Sender { kid, keyed: Keyed::new(suite, base_key, kid), ctr: 0 }
    }

    /// The key id frames carry now.
    pub fn kid(&self) -> u64 {
        self.kid
    }

    /// Protect one encoded frame of `codec`.
    pub fn encrypt(&mut self, codec: Codec, frame: &[u8]) -> Result<Vec<u8>, SframeError> {
        let ctr = self.ctr;
        self.ctr = self.ctr.checked_add(1).ok_or(SframeError::CounterExhausted)?;
        let n = clear_prefix(codec, frame);
        let (prefix, rest) = frame.split_at(n);
        let mut out = prefix.to_vec();
        out.extend(seal_with(&self.keyed, Header { kid: self.kid, ctr }, prefix, rest)?);
        Ok(out)
    }
}

/// A receiver: the call keys it holds, by key id (the current one and, across a rotation, the one before).
#[derive(Clone, Default)]
pub struct Receiver {
    keys: HashMap<u64, Keyed>,
}

impl Receiver {
    /// A receiver with no key.
    pub fn new() -> Receiver {
        Receiver::default()
    }

    /// Hold `base_key` as key `kid`.
    pub fn add_key(&mut self, suite: Suite, kid: u64, base_key: &[u8]) {
        self.keys.insert(kid, Keyed::new(suite, base_key, kid));
    }

    /// Whether key `kid` is held.
    pub fn holds(&self, kid: u64) -> bool {
        self.keys.contains_key(&kid)
    }

    /// Drop every key older than `kid` (after a rotation has settled).
    pub fn retire_before(&mut self, kid: u64) {
        self.keys.retain(|k, _| *k >= kid);
    }

    /// Open one protected frame of `codec`: the encoded frame and its header.
    pub fn decrypt(&self, codec: Codec, frame: &[u8]) -> Result<(Vec<u8>, Header), SframeError> {
        let n = clear_prefix(codec, frame);
        let (prefix, sealed) = frame.split_at(n);
        let (h, header_len) = Header::decode(sealed)?;
        if sealed.len() < header_len + suite::TAG_LEN {
            return Err(SframeError::Malformed("shorter than a tag"));
        }
        let k = self.keys.get(&h.kid).ok_or(SframeError::UnknownKey(h.kid))?;
        let mut out = prefix.to_vec();
        out.extend(open_with(k, h, header_len, prefix, sealed)?);
        Ok((out, h))
    }

    /// The header of a protected frame, without opening it (for the recorder's index and for tests).
    pub fn peek(codec: Codec, frame: &[u8]) -> Result<Header, SframeError> {
        let n = clear_prefix(codec, frame);
        Header::decode(&frame[n..]).map(|(h, _)| h)
    }
}

#[cfg(test)]
mod tests;
