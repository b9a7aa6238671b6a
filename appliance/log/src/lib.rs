//! Logging for vbank services.
//!
//! One [`log::Log`] implementation, installed once per process by [`init`], that
//! 1. masks personal data and removes secrets from every message and field ([`redact`]),
//! 2. stamps each record with the service, node and (in development) a `DEV` marker,
//! 3. sends it to journald when its socket exists (or when required), else to stderr.
//!
//! Services log through the `log` macros with key-value fields: `log::info!(room = id; "call started")`.

pub mod redact;
mod stderr;

pub use stderr::civil_from_days;

/// The current time as RFC 3339 UTC with milliseconds (`2026-11-27T02:42:09.123Z`), as log lines show it.
pub fn rfc3339_now() -> String {
    stderr::utc_now()
}

use std::io::Write;
use std::sync::Mutex;

use log::kv::{Key, Source, Value, VisitSource};
use log::{LevelFilter, Log, Metadata, Record};
use systemd_journal_logger::JournalLog;

/// Where records go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// journald if `/run/systemd/journal/socket` exists, else stderr.
    Auto,
    /// journald; [`init`] fails if it is absent.
    Journald,
    /// stderr.
    Stderr,
}

/// Who is logging.
#[derive(Debug, Clone)]
pub struct Identity {
    /// Service name, e.g. `gateway`; becomes `SYSLOG_IDENTIFIER=vbank-gateway`.
    pub service: String,
    /// Node name.
    pub node: String,
    /// Development mode: every record says so.
    pub dev: bool,
}

/// Why logging could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LogError {
    /// journald was required but could not be reached.
    #[error(
        "cannot reach journald: {0} (hint: set [log] target = \"stderr\" or \"auto\" when not running under systemd)"
    )]
    Journald(std::io::Error),
    /// A logger was already installed in this process.
    #[error("a logger is already installed in this process")]
    AlreadyInstalled,
}

enum Sink {
    Journal(JournalLog),
    Stderr(Mutex<Box<dyn Write + Send>>),
}

/// The redacting logger. Public so tests can build one over their own writer.
pub struct Logger {
    identity: Identity,
    level: LevelFilter,
    sink: Sink,
}

impl Logger {
    /// A logger for `identity` that sends to `target`.
    pub fn new(identity: Identity, level: LevelFilter, target: Target) -> Result<Logger, LogError> {
        let journal = match target {
            Target::Stderr => None,
            Target::Auto if !std::path::Path::new("/run/systemd/journal/socket").exists() => None,
            Target::Auto | Target::Journald => match JournalLog::new() {
                Ok(j) => Some(j),
                Err(e) if target == Target::Journald => return Err(LogError::Journald(e)),
                Err(_) => None,
            },
        };
        let sink = match journal {
            Some(j) => {
                let mut extra = vec![
                    ("VBANK_SERVICE".to_string(), identity.service.clone()),
                    ("VBANK_NODE".to_string(), identity.node.clone()),
                ];
                if identity.dev {
                    extra.push(("VBANK_DEV".to_string(), "1".to_string()));
                }
                Sink::Journal(j.with_syslog_identifier(format!("vbank-{}", identity.service)).with_extra_fields(extra))
            }
            None => Sink::Stderr(Mutex::new(Box::new(std::io::stderr()))),
        };
        Ok(Logger { identity, level, sink })
    }

    /// A logger that writes stderr-format lines to `w` (for tests and tools).
    pub fn to_writer(identity: Identity, level: LevelFilter, w: Box<dyn Write + Send>) -> Logger {
        Logger { identity, level, sink: Sink::Stderr(Mutex::new(w)) }
    }

    /// Whether records go to journald.
    pub fn is_journald(&self) -> bool {
        matches!(self.sink, Sink::Journal(_))
    }
}

/// Install the logger for this process.
pub fn init(identity: Identity, level: LevelFilter, target: Target) -> Result<(), LogError> {
    let logger = Logger::new(identity, level, target)?;
    log::set_boxed_logger(Box::new(logger)).map_err(|_| LogError::AlreadyInstalled)?;
    log::set_max_level(level);
    Ok(())
}

/// Fields of a record after redaction.
struct Fields(Vec<(String, String)>);

impl<'kvs> VisitSource<'kvs> for Fields {
    fn visit_pair(&mut self, key: Key<'kvs>, value: Value<'kvs>) -> Result<(), log::kv::Error> {
        let v = value.to_string();
        let redacted = redact::redact_field(key.as_str(), &v).into_owned();
        self.0.push((key.as_str().to_string(), redacted));
        Ok(())
    }
}

impl Source for Fields {
    fn visit<'kvs>(&'kvs self, visitor: &mut dyn VisitSource<'kvs>) -> Result<(), log::kv::Error> {
        for (k, v) in &self.0 {
            visitor.visit_pair(Key::from_str(k), Value::from(v.as_str()))?;
        }
        Ok(())
    }
}

impl Log for Logger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= self.level
    }

    fn log(&self, record: &Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let message = record.args().to_string();
        let message = redact::redact_text(&message);
        let mut fields = Fields(Vec::new());
        // A field that fails to render is dropped rather than logged raw.
        let _ = record.key_values().visit(&mut fields);
        match &self.sink {
            Sink::Journal(j) => {
                let shown = if self.identity.dev { format!("[DEV] {message}") } else { message.into_owned() };
                // journald being briefly unavailable must not take the service down; the record is lost.
                let _ = j.journal_send(
                    &Record::builder()
                        .args(format_args!("{shown}"))
                        .level(record.level())
                        .target(record.target())
                        .module_path(record.module_path())
                        .file(record.file())
                        .line(record.line())
                        .key_values(&fields)
                        .build(),
                );
            }
            Sink::Stderr(w) => {
                let line = stderr::format_line(&self.identity, record.level(), &message, &fields.0);
                if let Ok(mut w) = w.lock() {
                    let _ = w.write_all(line.as_bytes());
                }
            }
        }
    }

    fn flush(&self) {
        if let Sink::Stderr(w) = &self.sink
            && let Ok(mut w) = w.lock()
        {
            let _ = w.flush();
        }
    }
}

#[cfg(test)]
mod tests;
