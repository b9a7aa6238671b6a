//! `vbank accounts …`: staff accounts (tellers, supervisors) through the gateway's admin listener, with the operator
//! certificate. Passwords come from a file or standard input, never from the command line.

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use clap::Subcommand;
use serde_json::{Value, json};
use vbank_config::Service;
use vbank_service::client::{self, Method};
use zeroize::Zeroizing;

/// Account commands.
#[derive(Debug, Subcommand)]
pub enum AccountsCmd {
    /// Every account: name, role, business types, locked or disabled.
    List,
    /// Create an account; the password is read from --password-file or standard input.
    Add {
        /// Login name.
        name: String,
        /// teller or supervisor.
        #[arg(long, default_value = "teller")]
        role: String,
        /// Business types a teller takes, comma-separated (corporate-account, loan-signing, wealth).
        #[arg(long, default_value = "")]
        business: String,
        /// A file holding the password (else standard input).
        #[arg(long)]
        password_file: Option<PathBuf>,
    },
    /// Change an account.
    Set {
        /// Login name.
        name: String,
        /// New business types, comma-separated.
        #[arg(long)]
        business: Option<String>,
        /// Disable the account.
        #[arg(long, conflicts_with = "enable")]
        disable: bool,
        /// Enable it again.
        #[arg(long)]
        enable: bool,
        /// Lift a lock after failed logins.
        #[arg(long)]
        unlock: bool,
        /// Set a new password from this file.
        #[arg(long)]
        password_file: Option<PathBuf>,
    },
}

fn password(file: Option<&Path>) -> Result<Zeroizing<String>> {
    let mut s = Zeroizing::new(String::new());
    match file {
        Some(f) => {
            std::fs::File::open(f)
                .and_then(|mut h| h.read_to_string(&mut s))
                .with_context(|| format!("{}", f.display()))?;
        }
        None => {
            std::io::stdin().read_to_string(&mut s).context("reading the password from standard input")?;
        }
    }
    let trimmed = Zeroizing::new(s.trim_end_matches(['\n', '\r']).to_string());
    if trimmed.is_empty() {
        bail!("no password given (--password-file, or on standard input)");
    }
    Ok(trimmed)
}

fn list_of(s: &str) -> Vec<String> {
    s.split(',').map(str::trim).filter(|b| !b.is_empty()).map(str::to_string).collect()
}

fn call(config: &Path, method: Method, path: &str, body: Option<Value>) -> Result<Value> {
    let (cfg, _) = vbank_config::load(config).map_err(|e| anyhow::anyhow!("{e}"))?;
    let tls = vbank_tls::internal_client_config(&cfg.tls, Service::Cli).context("loading the operator certificate")?;
    let name = vbank_tls::service_dns_name(Service::Gateway);
    let addr = cfg.gateway.admin_listen;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let (status, bytes) = rt
        .block_on(client::call(
            tls,
            addr,
            &name,
            method,
            path,
            body.map(|b| b.to_string().into()),
            Duration::from_secs(30),
        ))
        .with_context(|| format!("the gateway's admin listener at {addr} (is it running?)"))?;
    let v: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    if !status.is_success() {
        bail!("the gateway refused ({status}): {}", v["error"].as_str().unwrap_or_default());
    }
    Ok(v)
}

/// Run an accounts command; the exit code.
pub fn run(cmd: AccountsCmd, config: &Path, json_out: bool) -> Result<i32> {
    let v = match cmd {
        AccountsCmd::List => call(config, Method::GET, "/v1/accounts", None)?,
        AccountsCmd::Add { name, role, business, password_file } => {
            let pw = password(password_file.as_deref())?;
            let body = json!({"name": name, "role": role, "businesses": list_of(&business), "password": pw.as_str()});
            call(config, Method::POST, "/v1/accounts", Some(body))?
        }
        AccountsCmd::Set { name, business, disable, enable, unlock, password_file } => {
            let mut body = json!({"unlock": unlock});
            if let Some(b) = business {
                body["businesses"] = json!(list_of(&b));
            }
            if disable || enable {
                body["disabled"] = json!(disable);
            }
            if let Some(f) = password_file {
                body["password"] = json!(password(Some(&f))?.as_str());
            }
            call(config, Method::POST, &format!("/v1/accounts/{name}"), Some(body))?
        }
    };
    if json_out {
        println!("{v}");
        return Ok(0);
    }
    let rows = v["accounts"].as_array().cloned().unwrap_or_else(|| vec![v.clone()]);
    println!("{:<20} {:<11} {:<40} STATUS", "NAME", "ROLE", "BUSINESS TYPES");
    for a in rows {
        let status = if a["disabled"] == true {
            "disabled".to_string()
        } else if a["locked_until"].is_u64() {
            format!("locked until {}", a["locked_until"])
        } else {
            "active".into()
        };
        let businesses: Vec<&str> =
            a["businesses"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
        println!(
            "{:<20} {:<11} {:<40} {status}",
            a["name"].as_str().unwrap_or(""),
            a["role"].as_str().unwrap_or(""),
            businesses.join(",")
        );
    }
    Ok(0)
}
