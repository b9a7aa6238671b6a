//! Checks of what the configuration points to: files that must exist, secrets that must be private.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::{Config, Diagnostic, SecretRef, Service, Severity, StoreConfig};

pub(crate) fn check(cfg: &Config) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    let mut file = |key: &str, path: &Path, fix: &str| {
        if !path.is_file() {
            out.push(Diagnostic {
                severity: Severity::Error,
                key: key.to_string(),
                line: cfg.line_of(key),
                message: format!("{} does not exist or is not a file", path.display()),
                hint: fix.to_string(),
            });
        }
    };
    let cert_fix = "issue it from the bank's CA (or run `vbank up` for a development CA)";
    file("tls.internal_ca", &cfg.tls.internal_ca, cert_fix);
    file("tls.public.cert", &cfg.tls.public.cert, cert_fix);
    file("tls.public.key", &cfg.tls.public.key, cert_fix);
    for svc in [Service::Gateway, Service::Keyd] {
        let pair = cfg.tls.service(svc);
        file(&format!("tls.{}.cert", svc.name()), &pair.cert, cert_fix);
        file(&format!("tls.{}.key", svc.name()), &pair.key, cert_fix);
    }
    file(
        "hsm.module",
        &cfg.hsm.module,
        "install the HSM vendor's PKCS#11 module (Debian softhsm2 for development) and give its path",
    );
    let mut secrets = vec![("hsm.pin", cfg.hsm.pin.as_ref())];
    if let StoreConfig::Postgres(pg) = &cfg.store {
        secrets.push(("store.postgres.password", pg.password.as_ref()));
    }
    secrets.push(("backup.password", cfg.backup.password.as_ref()));
    if cfg.hsm.pin.is_none() {
        out.push(Diagnostic {
            severity: Severity::Error,
            key: "hsm.pin".to_string(),
            line: None,
            message: "no PIN reference: keyd cannot log in to the token".to_string(),
            hint: "add pin = \"credential:hsm-pin\" under [hsm]".to_string(),
        });
    }
    for (key, secret) in secrets {
        if let Some(s) = secret {
            out.extend(check_secret(cfg, key, s));
        }
    }
    out
}

fn check_secret(cfg: &Config, key: &str, secret: &SecretRef) -> Option<Diagnostic> {
    let line = cfg.line_of(key);
    let diag = |severity, message: String, hint: &str| Diagnostic {
        severity,
        key: key.to_string(),
        line,
        message,
        hint: hint.to_string(),
    };
    let path = match secret.path() {
        Ok(p) => p,
        // Outside systemd the credential directory may legitimately be absent (e.g. checking on a build host).
        Err(e) => {
            return Some(diag(Severity::Warning, e.to_string(), "check again under the service's unit"));
        }
    };
    match std::fs::metadata(&path) {
        Err(e) => Some(diag(
            Severity::Error,
            format!("{secret} cannot be read: {e}"),
            "create the file holding only the secret, mode 0400",
        )),
        Ok(m) if m.permissions().mode() & 0o077 != 0 => Some(diag(
            Severity::Warning,
            format!("{secret} is readable by group or others (mode {:o})", m.permissions().mode() & 0o777),
            "chmod 0400 the file",
        )),
        Ok(_) => None,
    }
}
