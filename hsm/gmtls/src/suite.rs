//! The cipher suite TLS_SM4_GCM_SM3 (0x00C6): SM3 transcript hash, HKDF over HMAC-SM3, SM4-GCM records.

use aes_gcm::aead::consts::U12;
use aes_gcm::aead::{AeadInOut, KeyInit};
use aes_gcm::{AesGcm, Nonce as GcmNonce, Tag};
use hmac::Mac;
use rustls::crypto::cipher::{
    AeadKey, InboundOpaqueMessage, InboundPlainMessage, Iv, MessageDecrypter, MessageEncrypter, Nonce,
    OutboundOpaqueMessage, OutboundPlainMessage, PrefixedPayload, Tls13AeadAlgorithm, UnsupportedOperationError,
    make_tls13_aad,
};
use rustls::crypto::hash::{self, HashAlgorithm};
use rustls::crypto::{CipherSuiteCommon, hmac as rhmac, tls13::HkdfUsingHmac};
use rustls::{
    CipherSuite, ConnectionTrafficSecrets, ContentType, Error, ProtocolVersion, SupportedCipherSuite, Tls13CipherSuite,
};
use sm3::{Digest, Sm3};

type Sm4Gcm = AesGcm<sm4::Sm4, U12>;
const TAG_LEN: usize = 16;

/// RFC 8998 cipher suite number.
pub const TLS_SM4_GCM_SM3_ID: u16 = 0x00C6;

/// TLS_SM4_GCM_SM3 for rustls.
pub static TLS_SM4_GCM_SM3: SupportedCipherSuite = SupportedCipherSuite::Tls13(&TLS13_SM4_GCM_SM3);

static TLS13_SM4_GCM_SM3: Tls13CipherSuite = Tls13CipherSuite {
    common: CipherSuiteCommon {
        suite: CipherSuite::Unknown(TLS_SM4_GCM_SM3_ID),
        hash_provider: &Sm3Hash,
        // The AES-GCM limit of RFC 8446 §5.5 (SM4 has the same 128-bit block).
        confidentiality_limit: 1 << 24,
    },
    hkdf_provider: &HkdfUsingHmac(&HmacSm3),
    aead_alg: &Sm4GcmAead,
    quic: None,
};

/// SM3 for rustls's transcript hash. No TLS 1.2 HashAlgorithm code exists for SM3; 0xFE marks it private.
struct Sm3Hash;

impl hash::Hash for Sm3Hash {
    fn start(&self) -> Box<dyn hash::Context> {
        Box::new(Sm3Context(Sm3::new()))
    }

    fn hash(&self, data: &[u8]) -> hash::Output {
        hash::Output::new(&Sm3::digest(data))
    }

    fn output_len(&self) -> usize {
        32
    }

    fn algorithm(&self) -> HashAlgorithm {
        HashAlgorithm::Unknown(0xFE)
    }
}

struct Sm3Context(Sm3);

impl hash::Context for Sm3Context {
    fn fork_finish(&self) -> hash::Output {
        hash::Output::new(&self.0.clone().finalize())
    }

    fn fork(&self) -> Box<dyn hash::Context> {
        Box::new(Sm3Context(self.0.clone()))
    }

    fn finish(self: Box<Self>) -> hash::Output {
        hash::Output::new(&self.0.finalize())
    }

    fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }
}

/// HMAC-SM3; rustls builds HKDF (RFC 5869) on it.
struct HmacSm3;

impl rhmac::Hmac for HmacSm3 {
    fn with_key(&self, key: &[u8]) -> Box<dyn rhmac::Key> {
        Box::new(HmacSm3Key(<hmac::Hmac<Sm3> as KeyInit>::new_from_slice(key).expect("HMAC takes any key length")))
    }

    fn hash_output_len(&self) -> usize {
        32
    }
}

struct HmacSm3Key(hmac::Hmac<Sm3>);

impl rhmac::Key for HmacSm3Key {
    fn sign_concat(&self, first: &[u8], middle: &[&[u8]], last: &[u8]) -> rhmac::Tag {
        let mut m = self.0.clone();
        m.update(first);
        for part in middle {
            m.update(part);
        }
        m.update(last);
        rhmac::Tag::new(&m.finalize().into_bytes())
    }

    fn tag_len(&self) -> usize {
        32
    }
}

/// SM4-GCM record protection as RFC 8446 §5.2 prescribes for any AEAD (nonce = IV ⊕ sequence, AAD = header).
struct Sm4GcmAead;

impl Tls13AeadAlgorithm for Sm4GcmAead {
    fn encrypter(&self, key: AeadKey, iv: Iv) -> Box<dyn MessageEncrypter> {
        Box::new(Sm4GcmRecords { cipher: Sm4Gcm::new_from_slice(key.as_ref()).expect("16-byte key"), iv })
    }

    fn decrypter(&self, key: AeadKey, iv: Iv) -> Box<dyn MessageDecrypter> {
        Box::new(Sm4GcmRecords { cipher: Sm4Gcm::new_from_slice(key.as_ref()).expect("16-byte key"), iv })
    }

    fn key_len(&self) -> usize {
        16
    }

    fn extract_keys(&self, _key: AeadKey, _iv: Iv) -> Result<ConnectionTrafficSecrets, UnsupportedOperationError> {
        // kTLS has no SM4-GCM; nothing outside rustls needs the raw keys.
        Err(UnsupportedOperationError)
    }
}

struct Sm4GcmRecords {
    cipher: Sm4Gcm,
    iv: Iv,
}

impl MessageEncrypter for Sm4GcmRecords {
    fn encrypt(&mut self, msg: OutboundPlainMessage<'_>, seq: u64) -> Result<OutboundOpaqueMessage, Error> {
        let total_len = self.encrypted_payload_len(msg.payload.len());
        let mut payload = PrefixedPayload::with_capacity(total_len);
        payload.extend_from_chunks(&msg.payload);
        payload.extend_from_slice(&msg.typ.to_array());
        let nonce = Nonce::new(&self.iv, seq).0;
        let aad = make_tls13_aad(total_len);
        let tag = self
            .cipher
            .encrypt_inout_detached(&GcmNonce::from(nonce), &aad, payload.as_mut().into())
            .map_err(|_| Error::EncryptError)?;
        payload.extend_from_slice(&tag);
        Ok(OutboundOpaqueMessage::new(ContentType::ApplicationData, ProtocolVersion::TLSv1_2, payload))
    }

    fn encrypted_payload_len(&self, payload_len: usize) -> usize {
        payload_len + 1 + TAG_LEN
    }
}

impl MessageDecrypter for Sm4GcmRecords {
    fn decrypt<'a>(&mut self, mut msg: InboundOpaqueMessage<'a>, seq: u64) -> Result<InboundPlainMessage<'a>, Error> {
        let payload = &mut msg.payload;
        let len = payload.len();
        if len < TAG_LEN {
            return Err(Error::DecryptError);
        }
        let nonce = Nonce::new(&self.iv, seq).0;
        let aad = make_tls13_aad(len);
        let (body, tag) = payload.split_at_mut(len - TAG_LEN);
        let tag = Tag::try_from(&tag[..]).map_err(|_| Error::DecryptError)?;
        self.cipher
            .decrypt_inout_detached(&GcmNonce::from(nonce), &aad, body.into(), &tag)
            .map_err(|_| Error::DecryptError)?;
        payload.truncate(len - TAG_LEN);
        msg.into_tls13_unpadded_message()
    }
}
