//! Secrets are referenced from the configuration, never written in it.
//!
//! A reference is `credential:NAME` (a file in systemd's `$CREDENTIALS_DIRECTORY`, as `LoadCredential=` provides)
//! or `file:/absolute/path`. The value is read when needed, held in zeroizing memory and never printed.

use std::fmt;
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

use crate::ConfigError;

/// Where a secret lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretRef {
    /// A systemd credential: `$CREDENTIALS_DIRECTORY/NAME`.
    Credential(String),
    /// A file readable only by the service.
    File(PathBuf),
}

/// The hint shown wherever a secret reference is malformed.
pub(crate) const SECRET_HINT: &str = "secrets never go in vbank.toml: write credential:NAME (systemd LoadCredential=) \
     or file:/absolute/path and put the value in that file";

impl SecretRef {
    /// Parse `credential:NAME` or `file:/path`; anything else is refused with an explanation.
    pub fn parse(s: &str) -> Result<Self, String> {
        if let Some(name) = s.strip_prefix("credential:") {
            if name.is_empty() || name.contains('/') || name.starts_with('.') {
                return Err(format!("{name:?} is not a credential name"));
            }
            Ok(SecretRef::Credential(name.to_string()))
        } else if let Some(path) = s.strip_prefix("file:") {
            let path = PathBuf::from(path);
            if !path.is_absolute() {
                return Err("a secret file path must be absolute".to_string());
            }
            Ok(SecretRef::File(path))
        } else {
            // Never echo the value: it may be the secret itself.
            Err("looks like a secret written in place".to_string())
        }
    }

    /// The file this reference resolves to now.
    pub fn path(&self) -> Result<PathBuf, ConfigError> {
        match self {
            SecretRef::File(p) => Ok(p.clone()),
            SecretRef::Credential(name) => match std::env::var_os("CREDENTIALS_DIRECTORY") {
                Some(dir) => Ok(Path::new(&dir).join(name)),
                None => Err(ConfigError::Secret {
                    what: self.to_string(),
                    problem: "$CREDENTIALS_DIRECTORY is not set".to_string(),
                    fix: format!(
                        "run under systemd with LoadCredential={name}:/path, or set CREDENTIALS_DIRECTORY to the \
                         directory holding {name}"
                    ),
                }),
            },
        }
    }

    /// Read the secret, trimming one trailing newline.
    pub fn load(&self) -> Result<Secret, ConfigError> {
        let path = self.path()?;
        let bytes = std::fs::read(&path).map_err(|e| ConfigError::Secret {
            what: self.to_string(),
            problem: format!("cannot read {}: {e}", path.display()),
            fix: "create the file (mode 0400, owned by the service user) holding only the secret".to_string(),
        })?;
        let mut bytes = Zeroizing::new(bytes);
        while bytes.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
            bytes.pop();
        }
        if bytes.is_empty() {
            return Err(ConfigError::Secret {
                what: self.to_string(),
                problem: format!("{} is empty", path.display()),
                fix: "write the secret into the file".to_string(),
            });
        }
        Ok(Secret(bytes))
    }
}

impl fmt::Display for SecretRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretRef::Credential(n) => write!(f, "credential:{n}"),
            SecretRef::File(p) => write!(f, "file:{}", p.display()),
        }
    }
}

/// A secret value: zeroized on drop, redacted in `Debug`, no `Display`.
pub struct Secret(Zeroizing<Vec<u8>>);

impl Secret {
    /// The raw bytes; keep the borrow short.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    /// The value as UTF-8, for APIs that take a string (a PIN, a database password).
    pub fn expose_str(&self) -> Result<&str, ConfigError> {
        std::str::from_utf8(&self.0).map_err(|_| ConfigError::Secret {
            what: "secret".to_string(),
            problem: "not valid UTF-8".to_string(),
            fix: "store the secret as plain UTF-8 text".to_string(),
        })
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_references_and_refuses_literals() {
        assert_eq!(SecretRef::parse("credential:hsm-pin"), Ok(SecretRef::Credential("hsm-pin".into())));
        assert_eq!(SecretRef::parse("file:/etc/vbank/pin"), Ok(SecretRef::File("/etc/vbank/pin".into())));
        let err = SecretRef::parse("123456").unwrap_err();
        assert!(!err.contains("123456"), "the literal must not be echoed");
        assert!(SecretRef::parse("file:relative").is_err());
        assert!(SecretRef::parse("credential:../x").is_err());
    }

    #[test]
    fn loads_and_redacts() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("pin");
        std::fs::write(&p, "9876\n").unwrap();
        let s = SecretRef::File(p).load().unwrap();
        assert_eq!(s.expose(), b"9876");
        assert_eq!(format!("{s:?}"), "Secret(<redacted>)");
    }

    #[test]
    fn empty_or_missing_is_an_error_that_names_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("empty");
        std::fs::write(&p, "\n").unwrap();
        let e = SecretRef::File(p).load().unwrap_err().to_string();
        assert!(e.contains("is empty"), "{e}");
        let e = SecretRef::File(dir.path().join("nope")).load().unwrap_err().to_string();
        assert!(e.contains("create the file"), "{e}");
    }
}
