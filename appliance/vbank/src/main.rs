//! `vbank`: one binary, a subcommand per service (`gateway`, `keyd`) and per operator task (`up`, `config check`).
//!
//! Services exit with [`vbank_service::exit`] codes so a supervisor (systemd or `vbank up`) can tell a configuration
//! error (do not restart) from a failure worth retrying.

mod accounts_cmd;
mod backup;
mod bench;
mod config_cmd;
mod decommission;
mod drill;
mod hsm_cmd;
mod recordings_cmd;
mod release_cmd;
mod status_cmd;
mod up;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use vbank_config::{Config, LogLevel, LogTarget};
use vbank_service::exit;

#[derive(Debug, Parser)]
#[command(name = "vbank", version, about = "Video banking appliance: calls, 双录 recording, keys in the bank's HSM")]
struct Cli {
    /// Configuration file.
    #[arg(long, global = true, default_value = vbank_config::DEFAULT_PATH)]
    config: PathBuf,
    /// Machine-readable output (JSON) where a command prints results.
    #[arg(long, global = true)]
    json: bool,
    /// TLS for the CLI's calls to vbank services: std (TLS 1.3), or sm (国密 TLS 1.3, RFC 8998; needs [tls] sm).
    #[arg(long, global = true, value_parser = ["std", "sm"], default_value = "std")]
    tls: String,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Run the customer-facing gateway (pages, signalling, media).
    Gateway,
    /// Run the key service in front of the HSM.
    Keyd,
    /// Run the recorder (双录): joins calls as the hidden recorder, writes sealed encrypted recordings.
    Recorder,
    /// Run the KYC proxy (face in frame, identity verification through the configured vendor); `simulate` runs the
    /// vendors' conformance simulator instead.
    Kyc {
        #[command(subcommand)]
        cmd: Option<KycCmd>,
    },
    /// Run every service on this machine in development mode (SoftHSM2 token, development CA).
    Up {
        /// Where state, configuration, certificates and the development token live.
        #[arg(long, default_value = "vbank-data")]
        data_dir: PathBuf,
        /// Public HTTPS port (customer page, teller console) for a fresh configuration.
        #[arg(long, default_value_t = 8443)]
        port: u16,
        /// Internal listeners of a fresh configuration use the ports after this one.
        #[arg(long, default_value_t = 9100)]
        internal_port_base: u16,
        /// For a fresh configuration: the address browsers send media to (e.g. this machine's LAN address and
        /// internal-port-base + 4, for phones); default 127.0.0.1.
        #[arg(long)]
        media_advertise: Option<std::net::SocketAddr>,
        /// For a fresh configuration: offer no ICE-TCP candidate (media over UDP only).
        #[arg(long)]
        no_media_tcp: bool,
        /// For a fresh configuration: end-to-end encrypt calls joined by link too (the front desk's `wealth`
        /// calls always are).
        #[arg(long)]
        e2ee_direct: bool,
        /// For a fresh configuration: the frame cipher of end-to-end encrypted calls.
        #[arg(long, default_value = "aes-256-gcm", value_parser = ["aes-256-gcm", "sm4-gcm"])]
        e2ee_suite: String,
        /// Extra DNS names or IPs for the public certificate (localhost and 127.0.0.1 are always included).
        #[arg(long = "name")]
        names: Vec<String>,
        /// Seconds to wait for every service to report ready before warning.
        #[arg(long, default_value_t = 120)]
        ready_timeout: u64,
    },
    /// Configuration tools.
    Config {
        #[command(subcommand)]
        cmd: ConfigCmd,
    },
    /// The HSM console: keys, approvals, the key ceremony, the audit log.
    Hsm {
        #[command(subcommand)]
        cmd: hsm_cmd::HsmCmd,
    },
    /// Print a call token (room, role, expiry) signed by keyd, for joining a call by hand or from a test.
    Token {
        /// The room (call).
        #[arg(long)]
        room: String,
        /// customer, teller, specialist, recorder or observer.
        #[arg(long)]
        role: String,
        /// How long it is valid: 90s, 10m, 1h (at most 1h).
        #[arg(long, default_value = "10m")]
        ttl: String,
    },
    /// Benchmarks against a peer measured in the same run.
    Bench {
        #[command(subcommand)]
        cmd: bench::BenchCmd,
    },
    /// Recordings: search, show and export them (audited); verify one against its manifest and seal; close one after a
    /// recorder crash.
    Recordings {
        #[command(subcommand)]
        cmd: recordings_cmd::RecordingsCmd,
    },
    /// Staff accounts: tellers and supervisors (through the gateway, with the operator certificate).
    Accounts {
        #[command(subcommand)]
        cmd: accounts_cmd::AccountsCmd,
    },
    /// The audit log (same as `vbank hsm audit`).
    Audit {
        #[command(subcommand)]
        cmd: hsm_cmd::AuditCmd,
    },
    /// Backups into restic: create, list, verify (restore into scratch and compare), restore.
    Backup {
        #[command(subcommand)]
        cmd: backup::BackupCmd,
    },
    /// Take this node out of service for good (退出机制): erase the recordings (legal holds respected), destroy every
    /// key in the HSM under dual control, wipe state, and write a signed certificate.
    Decommission {
        #[command(subcommand)]
        cmd: decommission::DecommissionCmd,
    },
    /// Disaster-recovery drills: run one in a network namespace of its own and write a sealed report; verify a
    /// report's seal.
    Drill {
        #[command(subcommand)]
        cmd: drill::DrillCmd,
    },
    /// Every local service's readiness (its /readyz, through the admin listener); exit 0 when all are ready.
    Status {
        /// Keep asking for up to this many seconds until all are ready.
        #[arg(long, default_value_t = 0)]
        wait: u64,
    },
    /// The signed release bundle: the release key and building a bundle.
    Release {
        #[command(subcommand)]
        cmd: release_cmd::ReleaseCmd,
    },
    /// Check a release bundle against the pinned release key; refuse it when its signature or any file's SHA-256
    /// fails, or it holds anything unlisted.
    VerifyBundle {
        /// The bundle (vbank-<version>.tar.gz).
        bundle: PathBuf,
        /// The release public key bank IT pinned (release.pem).
        #[arg(long)]
        key: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum KycCmd {
    /// Serve the identity vendors' APIs (Tencent FaceID, Alibaba Id2MetaVerify, NCIIC, Baidu OCR and person/verify)
    /// as documented — signatures, QPS, results, errors — with faults on demand (POST /_simulator/faults), for
    /// tests, development nodes and DR drills.
    Simulate {
        /// Where to listen.
        #[arg(long, default_value = "127.0.0.1:8479")]
        listen: std::net::SocketAddr,
        /// Its certificate chain (PEM), for the host.
        #[arg(long)]
        cert: PathBuf,
        /// Its key (PEM).
        #[arg(long)]
        key: PathBuf,
        /// The directory of the vendors' credentials (tencent-secret-id, tencent-secret-key, alibaba-access-key-id,
        /// alibaba-access-key-secret, nciic-license, baidu-api-key, baidu-secret-key); each vendor whose files are
        /// there is simulated.
        #[arg(long)]
        credentials: PathBuf,
        /// Tencent's SM2 private key (PEM) for SM4-GCM field encryption.
        #[arg(long)]
        tencent_encryption_key: Option<PathBuf>,
        /// The simulated authority's records: a JSON list of {"name", "id_number", "photo" (a JPEG's path)}.
        #[arg(long)]
        people: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
enum ConfigCmd {
    /// Check a configuration file and what it refers to; print every problem with its key, line and a fix.
    Check {
        /// The file (default: --config).
        path: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let code = match cli.cmd {
        Cmd::Gateway => run_service("gateway", &cli.config, |cfg| async move {
            vbank_gateway::run(cfg).await.map_err(|e| (e.exit_code(), e.to_string()))
        }),
        Cmd::Keyd => run_service("keyd", &cli.config, |cfg| async move {
            vbank_keyd::run(cfg).await.map_err(|e| (e.exit_code(), e.to_string()))
        }),
        Cmd::Recorder => run_service("recorder", &cli.config, |cfg| async move {
            vbank_recorder_service::run(cfg).await.map_err(|e| (e.exit_code(), e.to_string()))
        }),
        Cmd::Kyc { cmd: None } => run_service("kyc", &cli.config, |cfg| async move {
            vbank_kyc_service::run(cfg).await.map_err(|e| (e.exit_code(), e.to_string()))
        }),
        Cmd::Kyc { cmd: Some(KycCmd::Simulate { listen, cert, key, credentials, tencent_encryption_key, people }) } => {
            let _ = vbank_log::init(
                vbank_log::Identity { service: "kyc-simulator".into(), node: "dev".into(), dev: true },
                log::LevelFilter::Info,
                vbank_log::Target::Stderr,
            );
            let o = vbank_kyc_service::simulate::SimulateOptions {
                listen,
                cert,
                key,
                credentials,
                tencent_encryption_key,
                people,
            };
            match runtime().block_on(vbank_kyc_service::simulate::run(o)) {
                Ok(()) => 0,
                Err(e) => {
                    eprintln!("vbank kyc simulate: {e}");
                    e.exit_code()
                }
            }
        }
        Cmd::Up {
            data_dir,
            port,
            internal_port_base,
            media_advertise,
            no_media_tcp,
            e2ee_direct,
            e2ee_suite,
            mut names,
            ready_timeout,
        } => {
            let _ = vbank_log::init(
                vbank_log::Identity { service: "up".into(), node: "dev".into(), dev: true },
                log::LevelFilter::Info,
                vbank_log::Target::Stderr,
            );
            names.extend(["localhost".to_string(), "127.0.0.1".to_string()]);
            names.dedup();
            let opts = up::UpOptions {
                data_dir,
                ports: up::Ports {
                    public: port,
                    internal_base: internal_port_base,
                    media_advertise,
                    media_tcp: !no_media_tcp,
                    e2ee_direct,
                    e2ee_sm4: e2ee_suite == "sm4-gcm",
                },
                public_names: names,
                json: cli.json,
                ready_timeout: Duration::from_secs(ready_timeout),
            };
            match runtime().block_on(up::run(opts)) {
                Ok(()) => 0,
                Err(e) => {
                    eprintln!("vbank up: {e:#}");
                    1
                }
            }
        }
        Cmd::Config { cmd: ConfigCmd::Check { path } } => config_cmd::check(&path.unwrap_or(cli.config), cli.json),
        Cmd::Hsm { cmd } => console(&cli.config, cmd, cli.json, cli.tls == "sm"),
        Cmd::Token { room, role, ttl } => match vbank_config::load(&cli.config) {
            Err(e) => {
                eprintln!("vbank token: {e}");
                exit::CONFIG
            }
            Ok((cfg, _)) => {
                match runtime().block_on(hsm_cmd::token(&cfg, &room, &role, &ttl, cli.json, cli.tls == "sm")) {
                    Ok(()) => 0,
                    Err(e) => {
                        eprintln!("vbank token: {e:#}");
                        1
                    }
                }
            }
        },
        Cmd::Bench { cmd } => match runtime().block_on(bench::run(cmd, cli.json)) {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("vbank bench: {e:#}");
                1
            }
        },
        Cmd::Recordings { cmd } => match recordings_cmd::run(cmd, &cli.config, cli.json) {
            Ok(code) => code,
            Err(e) => {
                eprintln!("vbank recordings: {e:#}");
                1
            }
        },
        Cmd::Accounts { cmd } => match accounts_cmd::run(cmd, &cli.config, cli.json) {
            Ok(code) => code,
            Err(e) => {
                eprintln!("vbank accounts: {e:#}");
                1
            }
        },
        Cmd::Audit { cmd } => console(&cli.config, hsm_cmd::HsmCmd::Audit { cmd }, cli.json, cli.tls == "sm"),
        Cmd::Backup { cmd } => match backup::run(cmd, &cli.config, cli.json) {
            Ok(code) => code,
            Err(e) => {
                eprintln!("vbank backup: {e:#}");
                1
            }
        },
        Cmd::Decommission { cmd } => match decommission::run(cmd, &cli.config, cli.json) {
            Ok(code) => code,
            Err(e) => {
                eprintln!("vbank decommission: {e:#}");
                1
            }
        },
        Cmd::Drill { cmd } => match drill::run(cmd, cli.json) {
            Ok(code) => code,
            Err(e) => {
                eprintln!("vbank drill: {e:#}");
                1
            }
        },
        Cmd::Status { wait } => match status_cmd::run(&cli.config, Duration::from_secs(wait), cli.json) {
            Ok(code) => code,
            Err(e) => {
                eprintln!("vbank status: {e:#}");
                exit::CONFIG
            }
        },
        Cmd::Release { cmd } => match release_cmd::run(cmd, cli.json) {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("vbank release: {e:#}");
                1
            }
        },
        Cmd::VerifyBundle { bundle, key } => match release_cmd::verify(&bundle, &key, cli.json) {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("vbank verify-bundle: {e:#}");
                1
            }
        },
    };
    ExitCode::from(code.clamp(0, 255) as u8)
}

/// Run a console command; online ones load the configuration to find keyd and the operator certificate.
fn console(config: &std::path::Path, cmd: hsm_cmd::HsmCmd, json: bool, sm: bool) -> i32 {
    let offline = matches!(
        cmd,
        hsm_cmd::HsmCmd::OfficerKeygen { .. } | hsm_cmd::HsmCmd::Audit { cmd: hsm_cmd::AuditCmd::Verify { .. } }
    );
    let cfg = if offline {
        vbank_config::parse("").map(|(c, _)| c).expect("the empty configuration is valid")
    } else {
        match vbank_config::load(config) {
            Ok((c, _)) => c,
            Err(e) => {
                eprintln!("vbank hsm: {e}");
                return exit::CONFIG;
            }
        }
    };
    match runtime().block_on(hsm_cmd::run(&cfg, cmd, json, sm)) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("vbank hsm: {e:#}");
            1
        }
    }
}

/// Seconds since the epoch.
pub(crate) fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime can always be built on Linux")
}

/// Load the configuration, start logging, run the service; map failures to exit codes with one clear line.
fn run_service<F, Fut>(service: &'static str, path: &std::path::Path, f: F) -> i32
where
    F: FnOnce(Config) -> Fut,
    Fut: std::future::Future<Output = Result<(), (i32, String)>>,
{
    let cfg = match vbank_config::load(path) {
        Ok((cfg, _warnings)) => cfg,
        Err(e) => {
            eprintln!("vbank {service}: {e}");
            return exit::CONFIG;
        }
    };
    let level = match cfg.log.level {
        LogLevel::Error => log::LevelFilter::Error,
        LogLevel::Warn => log::LevelFilter::Warn,
        LogLevel::Info => log::LevelFilter::Info,
        LogLevel::Debug => log::LevelFilter::Debug,
    };
    let target = match cfg.log.target {
        LogTarget::Auto => vbank_log::Target::Auto,
        LogTarget::Journald => vbank_log::Target::Journald,
        LogTarget::Stderr => vbank_log::Target::Stderr,
    };
    let identity = vbank_log::Identity { service: service.into(), node: cfg.node.name.clone(), dev: cfg.node.dev_mode };
    if let Err(e) = vbank_log::init(identity, level, target) {
        eprintln!("vbank {service}: {e}");
        return exit::CONFIG;
    }
    match runtime().block_on(f(cfg)) {
        Ok(()) => 0,
        Err((code, msg)) => {
            log::error!("{msg}");
            eprintln!("vbank {service}: {msg}");
            code
        }
    }
}
