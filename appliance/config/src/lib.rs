//! The vbank configuration: one TOML file, a typed schema with defaults, unknown keys rejected.
//!
//! [`load`] gives a [`Config`] or every problem at once; [`check`] also looks at what the file points to (certificates,
//! the PKCS#11 module, secret files) and is what `vbank config check` prints. Secrets are never in the file: see
//! [`SecretRef`].

mod backup;
mod e2ee;
mod environment;
mod kyc;
mod reader;
mod schema;
mod secret;

use std::path::{Path, PathBuf};

pub use backup::BackupConfig;
pub use e2ee::E2eeConfig;
pub use reader::{Diagnostic, Severity};
pub use schema::{
    CertPair, Config, GatewayConfig, HsmConfig, KeydConfig, KycConfig, LogConfig, LogLevel, LogTarget, NodeConfig,
    PostgresConfig, RecorderConfig, RecordingMode, Service, StoreConfig, TlsConfig, TlsVersion, VendorConfig,
    card_local, card_vendor, credential_keys,
};
pub use secret::{Secret, SecretRef};

/// Default location of the configuration file.
pub const DEFAULT_PATH: &str = "/etc/vbank/vbank.toml";

/// Why a configuration could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source} (hint: pass --config PATH, or create {DEFAULT_PATH})")]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file is not valid TOML or not a valid configuration.
    #[error("{} has {} error(s):\n{}", path.display(), errors(diagnostics), render(diagnostics))]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Every finding, errors and warnings.
        diagnostics: Vec<Diagnostic>,
    },
    /// A secret could not be resolved or read.
    #[error("secret {what}: {problem} (hint: {fix})")]
    Secret {
        /// The reference (never the value).
        what: String,
        /// What went wrong.
        problem: String,
        /// How to fix it.
        fix: String,
    },
}

fn errors(d: &[Diagnostic]) -> usize {
    d.iter().filter(|d| d.severity == Severity::Error).count()
}

fn render(d: &[Diagnostic]) -> String {
    d.iter().map(|d| format!("  {d}")).collect::<Vec<_>>().join("\n")
}

/// Parse configuration text. On success the warnings come along; on failure, every diagnostic.
pub fn parse(src: &str) -> Result<(Config, Vec<Diagnostic>), Vec<Diagnostic>> {
    let doc = match toml_edit::Document::parse(src) {
        Ok(doc) => doc,
        Err(e) => {
            return Err(vec![Diagnostic {
                severity: Severity::Error,
                key: String::new(),
                line: e.span().map(|s| reader::line_at(src, s.start)),
                message: format!("not valid TOML: {}", e.message().trim()),
                hint: "fix the syntax at this line (quotes around strings, [section] headers, key = value)".to_string(),
            }]);
        }
    };
    let ctx = reader::Ctx::new(src);
    let root = reader::Section::root(&ctx, doc.as_table());
    let mut cfg = schema::read_config(&root);
    root.finish();
    drop(root);
    let (mut diags, lines) = ctx.into_parts();
    diags.sort_by_key(|d| (d.line.unwrap_or(usize::MAX), d.key.clone()));
    cfg.lines = lines;
    if errors(&diags) > 0 { Err(diags) } else { Ok((cfg, diags)) }
}

/// Read and parse a configuration file.
pub fn load(path: &Path) -> Result<(Config, Vec<Diagnostic>), ConfigError> {
    let src = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_path_buf(), source })?;
    parse(&src).map_err(|diagnostics| ConfigError::Invalid { path: path.to_path_buf(), diagnostics })
}

/// Everything `vbank config check` reports: schema findings, then what the file refers to.
pub fn check(path: &Path) -> Result<Vec<Diagnostic>, ConfigError> {
    check_parsed(path).map(|(_, diags)| diags)
}

/// Like [`check`], also giving the configuration when it parsed, so a caller checks more without reading it again.
pub fn check_parsed(path: &Path) -> Result<(Option<Config>, Vec<Diagnostic>), ConfigError> {
    let src = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_path_buf(), source })?;
    Ok(match parse(&src) {
        Err(diags) => (None, diags),
        Ok((cfg, mut diags)) => {
            diags.extend(environment::check(&cfg));
            (Some(cfg), diags)
        }
    })
}

impl Config {
    /// The line where `key` (dotted path) was written, if it was.
    pub fn line_of(&self, key: &str) -> Option<usize> {
        self.lines.iter().find(|(k, _)| k == key).map(|(_, l)| *l)
    }
}

#[cfg(test)]
mod tests;
