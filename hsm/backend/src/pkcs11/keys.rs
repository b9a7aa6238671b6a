//! The key operations of [`Pkcs11Backend`].

use cryptoki::mechanism::{Mechanism, MechanismType};
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::Session;
use vbank_crypto::SecretBytes;

use super::{OpError, Pkcs11Backend, map_err};
use crate::{BackendStatus, HsmError, KeyAlg, KeyBackend, KeyInfo, KeyLabel};

/// DER of the OID prime256v1 (1.2.840.10045.3.1.7), as CKA_EC_PARAMS wants it.
const P256_PARAMS: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];

fn find(s: &Session, class: ObjectClass, label: &str) -> Result<Option<ObjectHandle>, OpError> {
    let found = s.find_objects(&[Attribute::Class(class), Attribute::Label(label.as_bytes().to_vec())])?;
    Ok(found.into_iter().next())
}

fn require(s: &Session, class: ObjectClass, label: KeyLabel) -> Result<ObjectHandle, OpError> {
    find(s, class, &label.to_string())?.ok_or_else(|| OpError::Hsm(HsmError::NotFound(label.to_string())))
}

/// A session object holding `value`, extractable so it can be wrapped; destroyed by the caller.
fn temporary_secret(s: &Session, value: &[u8]) -> Result<ObjectHandle, OpError> {
    Ok(s.create_object(&[
        Attribute::Class(ObjectClass::SECRET_KEY),
        Attribute::KeyType(KeyType::GENERIC_SECRET),
        Attribute::Token(false),
        Attribute::Private(true),
        Attribute::Sensitive(false),
        Attribute::Extractable(true),
        Attribute::Value(value.to_vec()),
    ])?)
}

/// Template for a key unwrapped into the session: `readable` decides whether its value may be read out.
fn unwrap_template(readable: bool) -> Vec<Attribute> {
    vec![
        Attribute::Class(ObjectClass::SECRET_KEY),
        Attribute::KeyType(KeyType::GENERIC_SECRET),
        Attribute::Token(false),
        Attribute::Private(true),
        Attribute::Sensitive(!readable),
        Attribute::Extractable(true),
    ]
}

/// Unwrap failures that mean "these bytes are not a valid wrap under this KEK". SoftHSM reports a tampered blob as
/// CKR_GENERAL_ERROR, others as CKR_WRAPPED_KEY_INVALID or CKR_ENCRYPTED_DATA_INVALID: treat all as tampering.
fn unwrap_err(e: cryptoki::error::Error) -> OpError {
    use cryptoki::error::{Error, RvError};
    match e {
        Error::Pkcs11(
            RvError::WrappedKeyInvalid
            | RvError::WrappedKeyLenRange
            | RvError::EncryptedDataInvalid
            | RvError::EncryptedDataLenRange
            | RvError::GeneralError,
            _,
        ) => OpError::Hsm(HsmError::Tampered),
        other => OpError::P11(other),
    }
}

fn read_bool(attrs: &[Attribute], t: AttributeType) -> bool {
    attrs.iter().any(|a| match (a, t) {
        (Attribute::Sensitive(b), AttributeType::Sensitive)
        | (Attribute::Extractable(b), AttributeType::Extractable)
        | (Attribute::NeverExtractable(b), AttributeType::NeverExtractable) => *b,
        _ => false,
    })
}

impl KeyBackend for Pkcs11Backend {
    fn profile(&self) -> &crate::Profile {
        Pkcs11Backend::profile(self)
    }

    fn ping(&self) -> Result<(), HsmError> {
        self.with_session("ping", |s| {
            let slot = s.get_session_info()?.slot_id();
            self.context().get_token_info(slot)?;
            Ok(())
        })
    }

    fn status(&self) -> Result<BackendStatus, HsmError> {
        let slot = self.with_session("status", |s| Ok(s.get_session_info()?.slot_id()))?;
        let ctx = self.context();
        let lib = ctx.get_library_info().map_err(|e| map_err("library info", e))?;
        let token = ctx.get_token_info(slot).map_err(|e| map_err("token info", e))?;
        let offered: Vec<u64> = ctx
            .get_mechanism_list(slot)
            .map_err(|e| map_err("mechanism list", e))?
            .into_iter()
            .map(mechanism_number)
            .collect();
        let mechanisms = self
            .profile()
            .mechanisms
            .iter()
            .filter(|(_, num)| offered.contains(num))
            .map(|(name, _)| name.clone())
            .collect();
        Ok(BackendStatus {
            module: self.module_path().to_path_buf(),
            library: format!(
                "{} {} {}",
                lib.manufacturer_id().trim_end(),
                lib.library_description().trim_end(),
                lib.library_version()
            ),
            token: self.token_label().to_string(),
            device: format!("{} {}", token.manufacturer_id().trim_end(), token.model().trim_end()),
            profile: self.profile().name.clone(),
            mechanisms,
            logged_in: true,
        })
    }

    fn list(&self) -> Result<Vec<KeyInfo>, HsmError> {
        self.with_session("list keys", |s| {
            let mut out = Vec::new();
            for h in s.find_objects(&[Attribute::Token(true)])? {
                let attrs = s.get_attributes(
                    h,
                    &[
                        AttributeType::Label,
                        AttributeType::Class,
                        AttributeType::KeyType,
                        AttributeType::Sensitive,
                        AttributeType::Extractable,
                        AttributeType::NeverExtractable,
                        AttributeType::CheckValue,
                    ],
                )?;
                let mut label = None;
                let mut class = None;
                let mut key_type = None;
                let mut kcv = None;
                for a in &attrs {
                    match a {
                        Attribute::Label(l) => label = KeyLabel::parse(&String::from_utf8_lossy(l)),
                        Attribute::Class(c) => class = Some(*c),
                        Attribute::KeyType(k) => key_type = Some(*k),
                        Attribute::CheckValue(v) if !v.is_empty() => kcv = Some(vbank_crypto::to_hex(v)),
                        _ => {}
                    }
                }
                let (Some(label), Some(class)) = (label, class) else { continue };
                let class_name = match class {
                    ObjectClass::SECRET_KEY => "secret-key",
                    ObjectClass::PRIVATE_KEY => "private-key",
                    ObjectClass::PUBLIC_KEY => "public-key",
                    ObjectClass::DATA => "data",
                    _ => "other",
                };
                let alg = match key_type {
                    Some(KeyType::AES) => Some(KeyAlg::Aes256),
                    Some(KeyType::EC) => Some(KeyAlg::P256),
                    _ if class == ObjectClass::DATA => Some(KeyAlg::Sm2),
                    _ => None,
                };
                out.push(KeyInfo {
                    label,
                    class: class_name.to_string(),
                    alg,
                    sensitive: read_bool(&attrs, AttributeType::Sensitive),
                    extractable: read_bool(&attrs, AttributeType::Extractable),
                    never_extractable: read_bool(&attrs, AttributeType::NeverExtractable),
                    kcv,
                });
            }
            out.sort_by(|a, b| (a.label, &a.class).cmp(&(b.label, &b.class)));
            Ok(out)
        })
    }

    fn create_kek(&self, label: KeyLabel, alg: KeyAlg) -> Result<KeyInfo, HsmError> {
        if alg != KeyAlg::Aes256 {
            return Err(HsmError::Unsupported {
                op: format!("a {} KEK", alg.name()),
                profile: self.profile().name.clone(),
                hint: "create an aes256 KEK; SM4-GCM data keys are still generated and wrapped under it".into(),
            });
        }
        let name = label.to_string();
        self.with_session("create KEK", |s| {
            if find(s, ObjectClass::SECRET_KEY, &name)?.is_some() {
                return Err(HsmError::Exists(name.clone()).into());
            }
            s.generate_key(
                &Mechanism::AesKeyGen,
                &[
                    Attribute::Class(ObjectClass::SECRET_KEY),
                    Attribute::KeyType(KeyType::AES),
                    Attribute::ValueLen(32.into()),
                    Attribute::Token(true),
                    Attribute::Private(true),
                    Attribute::Sensitive(true),
                    Attribute::Extractable(false),
                    Attribute::Wrap(true),
                    Attribute::Unwrap(true),
                    Attribute::Encrypt(false),
                    Attribute::Decrypt(false),
                    Attribute::Sign(false),
                    Attribute::Verify(false),
                    Attribute::Derive(false),
                    Attribute::Label(name.as_bytes().to_vec()),
                    Attribute::Id(name.as_bytes().to_vec()),
                ],
            )?;
            Ok(())
        })?;
        self.info(label, "secret-key")
    }

    fn create_p256(&self, label: KeyLabel) -> Result<KeyInfo, HsmError> {
        let name = label.to_string();
        self.with_session("create P-256 key pair", |s| {
            if find(s, ObjectClass::PRIVATE_KEY, &name)?.is_some() {
                return Err(HsmError::Exists(name.clone()).into());
            }
            let common = [Attribute::Label(name.as_bytes().to_vec()), Attribute::Id(name.as_bytes().to_vec())];
            let mut public = vec![
                Attribute::Token(true),
                Attribute::Private(false),
                Attribute::Verify(true),
                Attribute::EcParams(P256_PARAMS.to_vec()),
            ];
            public.extend(common.iter().cloned());
            let mut private = vec![
                Attribute::Token(true),
                Attribute::Private(true),
                Attribute::Sensitive(true),
                Attribute::Extractable(false),
                Attribute::Sign(true),
                Attribute::Derive(false),
            ];
            private.extend(common.iter().cloned());
            s.generate_key_pair(&Mechanism::EccKeyPairGen, &public, &private)?;
            Ok(())
        })?;
        self.info(label, "private-key")
    }

    fn random(&self, len: usize) -> Result<SecretBytes, HsmError> {
        self.with_session("generate random", |s| {
            let mut tmp = vec![0u8; len];
            s.generate_random_slice(&mut tmp)?;
            // SecretBytes::new zeroizes `tmp` after copying it into locked memory.
            Ok(SecretBytes::new(tmp))
        })
    }

    fn wrap(&self, kek: KeyLabel, secret: &[u8]) -> Result<Vec<u8>, HsmError> {
        self.with_session("wrap", |s| {
            let kek = require(s, ObjectClass::SECRET_KEY, kek)?;
            let tmp = temporary_secret(s, secret)?;
            let wrapped = s.wrap_key(&Mechanism::AesKeyWrapPad, kek, tmp);
            let _ = s.destroy_object(tmp);
            Ok(wrapped?)
        })
    }

    fn unwrap(&self, kek: KeyLabel, wrapped: &[u8]) -> Result<SecretBytes, HsmError> {
        self.with_session("unwrap", |s| {
            let kek = require(s, ObjectClass::SECRET_KEY, kek)?;
            let obj =
                s.unwrap_key(&Mechanism::AesKeyWrapPad, kek, wrapped, &unwrap_template(true)).map_err(unwrap_err)?;
            let value = s.get_attributes(obj, &[AttributeType::Value]);
            let _ = s.destroy_object(obj);
            match value?.into_iter().next() {
                Some(Attribute::Value(v)) => Ok(SecretBytes::new(v)),
                _ => Err(HsmError::Refused { op: "unwrap".into(), detail: "no value returned".into() }.into()),
            }
        })
    }

    fn rewrap(&self, from: KeyLabel, to: KeyLabel, wrapped: &[u8]) -> Result<Vec<u8>, HsmError> {
        self.with_session("rewrap", |s| {
            let old = require(s, ObjectClass::SECRET_KEY, from)?;
            let new = require(s, ObjectClass::SECRET_KEY, to)?;
            // Sensitive: the plaintext stays inside the HSM between unwrap and wrap.
            let obj =
                s.unwrap_key(&Mechanism::AesKeyWrapPad, old, wrapped, &unwrap_template(false)).map_err(unwrap_err)?;
            let rewrapped = s.wrap_key(&Mechanism::AesKeyWrapPad, new, obj);
            let _ = s.destroy_object(obj);
            Ok(rewrapped?)
        })
    }

    fn sign_p256(&self, key: KeyLabel, digest: &[u8; 32]) -> Result<Vec<u8>, HsmError> {
        self.with_session("sign", |s| {
            let k = require(s, ObjectClass::PRIVATE_KEY, key)?;
            Ok(s.sign(&Mechanism::Ecdsa, k, digest)?)
        })
    }

    fn public_point(&self, key: KeyLabel) -> Result<Vec<u8>, HsmError> {
        self.with_session("read public key", |s| {
            let k = require(s, ObjectClass::PUBLIC_KEY, key)?;
            match s.get_attributes(k, &[AttributeType::EcPoint])?.into_iter().next() {
                // CKA_EC_POINT is a DER OCTET STRING around the SEC1 point.
                Some(Attribute::EcPoint(v)) if v.len() == 67 && v[0] == 0x04 && v[1] == 0x41 => Ok(v[2..].to_vec()),
                Some(Attribute::EcPoint(v)) if v.len() == 65 && v[0] == 0x04 => Ok(v),
                _ => {
                    Err(HsmError::Refused { op: "read public key".into(), detail: "unexpected EC point".into() }.into())
                }
            }
        })
    }

    fn put_data(&self, label: KeyLabel, name: &str, value: &[u8]) -> Result<(), HsmError> {
        let l = label.to_string();
        self.with_session("store data object", |s| {
            let tpl = [
                Attribute::Class(ObjectClass::DATA),
                Attribute::Label(l.as_bytes().to_vec()),
                Attribute::Application(name.as_bytes().to_vec()),
            ];
            if !s.find_objects(&tpl)?.is_empty() {
                return Err(HsmError::Exists(format!("{l} ({name})")).into());
            }
            let mut full = tpl.to_vec();
            full.extend([Attribute::Token(true), Attribute::Private(true), Attribute::Value(value.to_vec())]);
            s.create_object(&full)?;
            Ok(())
        })
    }

    fn get_data(&self, label: KeyLabel, name: &str) -> Result<Vec<u8>, HsmError> {
        let l = label.to_string();
        self.with_session("read data object", |s| {
            let found = s.find_objects(&[
                Attribute::Class(ObjectClass::DATA),
                Attribute::Label(l.as_bytes().to_vec()),
                Attribute::Application(name.as_bytes().to_vec()),
            ])?;
            let h =
                found.into_iter().next().ok_or_else(|| OpError::Hsm(HsmError::NotFound(format!("{l} ({name})"))))?;
            match s.get_attributes(h, &[AttributeType::Value])?.into_iter().next() {
                Some(Attribute::Value(v)) => Ok(v),
                _ => Err(HsmError::NotFound(format!("{l} ({name})")).into()),
            }
        })
    }

    fn destroy(&self, label: KeyLabel) -> Result<usize, HsmError> {
        let l = label.to_string();
        self.with_session("destroy", |s| {
            let objs = s.find_objects(&[Attribute::Label(l.as_bytes().to_vec())])?;
            for h in &objs {
                s.destroy_object(*h)?;
            }
            Ok(objs.len())
        })
    }
}

impl Pkcs11Backend {
    fn info(&self, label: KeyLabel, class: &str) -> Result<KeyInfo, HsmError> {
        self.list()?
            .into_iter()
            .find(|k| k.label == label && k.class == class)
            .ok_or_else(|| HsmError::NotFound(label.to_string()))
    }
}

fn mechanism_number(m: MechanismType) -> u64 {
    let raw: std::os::raw::c_ulong = m.into();
    #[allow(clippy::useless_conversion)] // c_ulong is u64 on Linux x86_64 but not on every platform.
    u64::from(raw)
}
