//! `vbank config check`.

use std::path::Path;

use vbank_config::{ConfigError, Severity};

/// Print every finding; exit 0 when there is no error, 1 otherwise (78 when the file cannot be read).
pub fn check(path: &Path, json: bool) -> i32 {
    let diags = match vbank_config::check(path) {
        Ok(d) => d,
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
