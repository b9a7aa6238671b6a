//! `vbank config check`.

use std::path::Path;

use vbank_config::{Config, ConfigError, Diagnostic, Service, Severity};
use vbank_tls::ClientAuth;

/// Print every finding; exit 0 when there is no error, 1 otherwise (78 when the file cannot be read).
pub fn check(path: &Path, json: bool) -> i32 {
    let (cfg, mut diags) = match vbank_config::check_parsed(path) {
        Ok(checked) => checked,
        Err(e @ ConfigError::Read { .. }) => {
            if json {
                println!("{}", serde_json::json!({"file": path, "ok": false, "error": e.to_string()}));
            } else {
                eprintln!("{e}");
            }
            return vbank_service::exit::CONFIG;
        }
        Err(e) => {
            eprintln!("{e}");
            return 1;
        }
    };
    if let Some(cfg) = cfg.filter(|_| !diags.iter().any(|d| d.severity == Severity::Error)) {
        diags.extend(tls_findings(&cfg));
    }
    let errors = diags.iter().filter(|d| d.severity == Severity::Error).count();
    let warnings = diags.len() - errors;
    if json {
        println!(
            "{}",
            serde_json::json!({"file": path, "ok": errors == 0, "errors": errors, "warnings": warnings, "diagnostics": diags})
        );
    } else {
        if diags.is_empty() {
            println!("{}: OK", path.display());
        } else {
            println!("{}: {errors} error(s), {warnings} warning(s)", path.display());
        }
        for d in &diags {
            println!("  {d}");
        }
    }
    i32::from(errors > 0)
}

/// Build every TLS configuration the services and the CLI will build, so a certificate rustls refuses (an X.509 v1
/// certificate, a key of another certificate) is found here and not at the first start.
fn tls_findings(cfg: &Config) -> Vec<Diagnostic> {
    if cfg.node.dev_mode {
        return Vec::new(); // `vbank up` makes its development certificates at start
    }
    let mut out = Vec::new();
    let mut finding = |key: &str, r: Result<(), vbank_tls::TlsError>| {
        let (message, hint) = match r {
            Ok(()) => return,
            Err(vbank_tls::TlsError::Rustls(e)) => (
                format!("rustls refuses the certificate or key: {e}"),
                "issue X.509 v3 certificates from the bank's CA with subjectAltName DNS:<service>.vbank.internal (the \
                 public one: its host name), each with its own key"
                    .to_string(),
            ),
            Err(e) => (e.to_string(), "see the message".to_string()),
        };
        out.push(Diagnostic { severity: Severity::Error, key: key.into(), line: None, message, hint });
    };
    finding("tls.public", vbank_tls::public_server_tls(&cfg.tls).map(drop));
    for (key, svc) in [
        ("tls.gateway", Service::Gateway),
        ("tls.keyd", Service::Keyd),
        ("tls.recorder", Service::Recorder),
        ("tls.kyc", Service::Kyc),
    ] {
        finding(key, vbank_tls::service_server_tls(&cfg.tls, svc, ClientAuth::Required).map(drop));
    }
    finding("tls.cli", vbank_tls::internal_client_config(&cfg.tls, Service::Cli).map(drop));
    out
}
