//! The typed configuration and how each section is read from TOML.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use crate::kyc::read_kyc;
pub use crate::kyc::{KycConfig, VendorConfig, card_local, card_vendor, credential_keys};
use crate::reader::Section;
use crate::secret::{SECRET_HINT, SecretRef};

/// A vbank process with its own identity (certificate, Unix user, systemd unit).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Service {
    /// Customer-facing: pages, signalling, media.
    Gateway,
    /// The key service in front of the HSM.
    Keyd,
    /// Server-side recording (双录).
    Recorder,
    /// Identity checks.
    Kyc,
    /// An operator's command-line client (`vbank token`, `vbank hsm …`).
    Cli,
}

impl Service {
    /// Every identity, in a stable order.
    pub const ALL: [Service; 5] = [Service::Gateway, Service::Keyd, Service::Recorder, Service::Kyc, Service::Cli];

    /// The lowercase name used in certificates, units and file names.
    pub fn name(self) -> &'static str {
        match self {
            Service::Gateway => "gateway",
            Service::Keyd => "keyd",
            Service::Recorder => "recorder",
            Service::Kyc => "kyc",
            Service::Cli => "cli",
        }
    }

    /// Parse a name produced by [`Service::name`].
    pub fn from_name(s: &str) -> Option<Service> {
        Service::ALL.into_iter().find(|svc| svc.name() == s)
    }
}

/// The whole configuration of one node.
#[derive(Debug, Clone)]
pub struct Config {
    /// This node.
    pub node: NodeConfig,
    /// Logging.
    pub log: LogConfig,
    /// Certificates and TLS policy.
    pub tls: TlsConfig,
    /// Where shared state lives.
    pub store: StoreConfig,
    /// The HSM behind keyd.
    pub hsm: HsmConfig,
    /// The customer-facing gateway.
    pub gateway: GatewayConfig,
    /// The key service.
    pub keyd: KeydConfig,
    /// The recorder (双录).
    pub recorder: RecorderConfig,
    /// The KYC proxy.
    pub kyc: KycConfig,
    /// End-to-end media encryption.
    pub e2ee: crate::E2eeConfig,
    /// `vbank backup`: the restic repository and retention.
    pub backup: crate::BackupConfig,
    /// Line of each key as written, for diagnostics found after parsing.
    pub(crate) lines: Vec<(String, usize)>,
}

/// `[node]`
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// A name unique in the cluster; appears in logs and metrics.
    pub name: String,
    /// Where this node keeps its state.
    pub data_dir: PathBuf,
    /// Development mode (`vbank up`): every log line and page says so.
    pub dev_mode: bool,
}

/// Minimum log level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLevel {
    /// Errors only.
    Error,
    /// And warnings.
    Warn,
    /// And normal operation.
    Info,
    /// And detail for diagnosis.
    Debug,
}

/// Where logs go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogTarget {
    /// journald when its socket exists, else stderr.
    Auto,
    /// journald, failing at start if it is absent.
    Journald,
    /// stderr, one line per record.
    Stderr,
}

/// `[log]`
#[derive(Debug, Clone)]
pub struct LogConfig {
    /// Minimum level.
    pub level: LogLevel,
    /// Destination.
    pub target: LogTarget,
}

/// Lowest TLS version accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsVersion {
    /// TLS 1.2 and 1.3 (only where a legacy client needs it).
    V1_2,
    /// TLS 1.3 only (default).
    V1_3,
}

/// A certificate chain and its private key, as PEM files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertPair {
    /// PEM certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
}

/// `[tls]`
#[derive(Debug, Clone)]
pub struct TlsConfig {
    /// Lowest version accepted.
    pub min_version: TlsVersion,
    /// CA that issues the services' certificates (trust anchor for internal mTLS).
    pub internal_ca: PathBuf,
    /// Certificate served to browsers and apps.
    pub public: CertPair,
    /// One certificate per service identity, used for mTLS.
    pub services: Vec<(Service, CertPair)>,
    /// 国密 TLS (RFC 8998) beside standard TLS.
    pub sm: SmTlsConfig,
}

/// `[tls]` keys for 国密 TLS 1.3 (RFC 8998): SM2 certificates next to the standard ones.
#[derive(Debug, Clone)]
pub struct SmTlsConfig {
    /// Also serve RFC 8998 clients (chosen per connection by their ClientHello).
    pub enabled: bool,
    /// Internal mTLS links use only TLS_SM4_GCM_SM3 (listeners refuse standard suites; clients offer only SM).
    pub internal_only: bool,
    /// SM2 CA issuing the services' SM2 certificates.
    pub internal_ca: PathBuf,
    /// SM2 certificate for the public listener.
    pub public: CertPair,
    /// One SM2 certificate per service identity.
    pub services: Vec<(Service, CertPair)>,
}

impl SmTlsConfig {
    /// The SM2 certificate of one service.
    pub fn service(&self, svc: Service) -> &CertPair {
        &self
            .services
            .iter()
            .find(|(s, _)| *s == svc)
            .expect("every Service has an SM2 CertPair: SmTlsConfig is built from Service::ALL")
            .1
    }
}

impl TlsConfig {
    /// The certificate of one service.
    pub fn service(&self, svc: Service) -> &CertPair {
        &self
            .services
            .iter()
            .find(|(s, _)| *s == svc)
            .expect("every Service has a CertPair: TlsConfig is built from Service::ALL")
            .1
    }
}

/// `[store]`
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreConfig {
    /// Embedded redb: one file per service process in this directory (redb allows one writer process per file).
    Redb {
        /// The directory holding `<service>.redb`.
        dir: PathBuf,
    },
    /// PostgreSQL, shared by the nodes of a cluster.
    Postgres(PostgresConfig),
}

/// `[store.postgres]`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostgresConfig {
    /// Host name, IP, or a Unix socket directory (absolute path); or a cluster's members, `host:port` comma-separated
    /// (connections go to the one that accepts writes: the primary).
    pub host: String,
    /// TCP port (also names the socket file in a socket directory).
    pub port: u16,
    /// Database name.
    pub dbname: String,
    /// Role name.
    pub user: String,
    /// Password reference; none for peer/trust authentication on a local socket.
    pub password: Option<SecretRef>,
    /// Connections kept open.
    pub pool_size: u32,
    /// Seconds to wait for the server before giving up.
    pub connect_timeout_s: u32,
}

/// `[hsm]`
#[derive(Debug, Clone)]
pub struct HsmConfig {
    /// Path of the vendor's PKCS#11 module.
    pub module: PathBuf,
    /// Token label.
    pub token_label: String,
    /// User PIN reference.
    pub pin: Option<SecretRef>,
    /// Vendor profile name (mechanism numbers and behaviours).
    pub profile: String,
}

/// `[gateway]`
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// Public HTTPS listener (pages, signalling).
    pub listen: SocketAddr,
    /// Admin listener (/healthz, /readyz, /metrics).
    pub admin_listen: SocketAddr,
    /// URL customers use to reach this listener (printed, put in links).
    pub public_url: String,
    /// UDP socket for WebRTC media.
    pub media_listen: SocketAddr,
    /// Address browsers send media to (the ICE host candidate); defaults to media_listen, or 127.0.0.1 with its port
    /// when media_listen is a wildcard.
    pub media_advertise: SocketAddr,
    /// Passive ICE-TCP candidate for browsers whose network blocks UDP (RFC 6544, RFC 4571 framing), listened on
    /// media_listen's address over TCP. `None` when `media_tcp = false`. Defaults to media_advertise's IP with
    /// media_listen's port.
    pub media_tcp_advertise: Option<SocketAddr>,
    /// Most participants this node carries at once; joins beyond it are refused so the entry point routes elsewhere.
    pub max_participants: usize,
    /// Whether calls must be recorded before they start.
    pub recording: RecordingMode,
    /// Seconds of every recorded call's media the gateway keeps, so a recorder that crashed continues the recording
    /// without a hole (0: off). Covers the gateway noticing the recorder is gone (6 s of silence) and its restart.
    pub recorder_backlog_s: u32,
    /// The most memory (MiB) those backlogs take on this node, shared evenly among its recorded calls (at most
    /// 48 MiB each): with many calls at once, each keeps less than `recorder_backlog_s`.
    pub recorder_backlog_mb: u32,
}

/// `[gateway] recording`: what happens when a call cannot be recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordingMode {
    /// `required` (the default): the call is refused. No banking call goes unrecorded.
    Required,
    /// `when-available` (development): the call goes ahead unrecorded, with a warning in the log.
    WhenAvailable,
    /// `off`: calls are not recorded (test benches only).
    Off,
}

/// `[keyd]`
#[derive(Debug, Clone)]
pub struct KeydConfig {
    /// Internal mTLS API listener.
    pub listen: SocketAddr,
    /// Admin listener (/healthz, /readyz, /metrics).
    pub admin_listen: SocketAddr,
    /// Distinct officer approvals needed to destroy, rotate or retire a key (M of M-of-N).
    pub approvals_required: usize,
}

/// `[recorder]`
#[derive(Debug, Clone)]
pub struct RecorderConfig {
    /// Internal mTLS API listener (the gateway opens and closes recordings here).
    pub listen: SocketAddr,
    /// Admin listener (/healthz, /readyz, /metrics).
    pub admin_listen: SocketAddr,
    /// Where recordings are written.
    pub dir: PathBuf,
    /// Seconds per segment.
    pub segment_seconds: u32,
    /// The recordings' AEAD: `aes-256-gcm` or `sm4-gcm`.
    pub alg: String,
    /// The IP the recorder receives media on (its host candidate towards the gateway).
    pub media_ip: std::net::IpAddr,
    /// New recordings are refused (and so the calls that need them) while the recordings disk has less free space.
    pub min_free_mb: u64,
}

pub(crate) const ADDR_HINT: &str = "write an IP and port such as \"127.0.0.1:9101\" or \"[::]:8443\"";
const PATH_HINT: &str = "write an absolute path such as \"/etc/vbank/tls/ca.crt\"";

pub(crate) fn path_in(s: &Section<'_, '_>, key: &str, default: PathBuf) -> PathBuf {
    match s.opt_str(key, PATH_HINT) {
        None => default,
        Some((p, line)) => {
            let p = PathBuf::from(p);
            if !p.is_absolute() {
                s.error(key, line, format!("{} is not absolute", p.display()), PATH_HINT);
            }
            p
        }
    }
}

pub(crate) fn addr(s: &Section<'_, '_>, key: &str, default: &str) -> SocketAddr {
    let default = default.parse().expect("built-in default addresses are valid");
    s.parsed(key, default, "an IP address and port", ADDR_HINT)
}

pub(crate) fn secret(s: &Section<'_, '_>, key: &str) -> Option<SecretRef> {
    let (v, line) = s.opt_str(key, SECRET_HINT)?;
    match SecretRef::parse(&v) {
        Ok(r) => Some(r),
        Err(problem) => {
            s.error(key, line, problem, SECRET_HINT);
            None
        }
    }
}

pub(crate) fn read_config(root: &Section<'_, '_>) -> Config {
    let node = read_node(&root.section("node"));
    let cfg = Config {
        log: read_log(&root.section("log")),
        tls: read_tls(&root.section("tls")),
        store: read_store(&root.section("store"), &node.data_dir),
        hsm: read_hsm(&root.section("hsm")),
        gateway: read_gateway(&root.section("gateway")),
        keyd: read_keyd(&root.section("keyd")),
        recorder: read_recorder(&root.section("recorder"), &node.data_dir),
        kyc: read_kyc(&root.section("kyc")),
        e2ee: crate::e2ee::read_e2ee(&root.section("e2ee")),
        backup: crate::backup::read_backup(&root.section("backup"), &node.data_dir),
        node,
        lines: Vec::new(),
    };
    check_ports(root, &cfg);
    cfg
}

fn read_node(s: &Section<'_, '_>) -> NodeConfig {
    let default_name = std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "node-1".to_string());
    let name = s.string("name", &default_name, "write a short name such as \"vbank-a\"");
    let cfg = NodeConfig {
        data_dir: path_in(s, "data_dir", PathBuf::from("/var/lib/vbank")),
        dev_mode: s.boolean("dev_mode", false),
        name,
    };
    s.finish();
    cfg
}

fn read_log(s: &Section<'_, '_>) -> LogConfig {
    let level = match s.choice("level", &["error", "warn", "info", "debug"], "info") {
        "error" => LogLevel::Error,
        "warn" => LogLevel::Warn,
        "debug" => LogLevel::Debug,
        _ => LogLevel::Info,
    };
    let target = match s.choice("target", &["auto", "journald", "stderr"], "auto") {
        "journald" => LogTarget::Journald,
        "stderr" => LogTarget::Stderr,
        _ => LogTarget::Auto,
    };
    s.finish();
    LogConfig { level, target }
}

fn read_tls(s: &Section<'_, '_>) -> TlsConfig {
    let dir = path_in(s, "dir", PathBuf::from("/etc/vbank/tls"));
    let min_version = match s.choice("min_version", &["1.2", "1.3"], "1.3") {
        "1.2" => TlsVersion::V1_2,
        _ => TlsVersion::V1_3,
    };
    let internal_ca = path_in(s, "internal_ca", dir.join("ca.crt"));
    let pair = |name: &str| {
        let sub = s.section(name);
        let pair = CertPair {
            cert: path_in(&sub, "cert", dir.join(format!("{name}.crt"))),
            key: path_in(&sub, "key", dir.join(format!("{name}.key"))),
        };
        sub.finish();
        pair
    };
    let public = pair("public");
    let services = Service::ALL.iter().map(|svc| (*svc, pair(svc.name()))).collect();
    let sm_pair =
        |name: &str| CertPair { cert: dir.join(format!("sm-{name}.crt")), key: dir.join(format!("sm-{name}.key")) };
    let sm = SmTlsConfig {
        enabled: s.boolean("sm", false),
        internal_only: s.boolean("sm_internal_only", false),
        internal_ca: path_in(s, "sm_internal_ca", dir.join("sm-ca.crt")),
        public: sm_pair("public"),
        services: Service::ALL.iter().map(|svc| (*svc, sm_pair(svc.name()))).collect(),
    };
    if sm.internal_only && !sm.enabled {
        s.error(
            "sm_internal_only",
            None,
            "needs sm = true".into(),
            "set sm = true under [tls], or drop sm_internal_only",
        );
    }
    s.finish();
    TlsConfig { min_version, internal_ca, public, services, sm }
}

fn read_store(s: &Section<'_, '_>, data_dir: &Path) -> StoreConfig {
    let backend = s.choice("backend", &["redb", "postgres"], "redb");
    let redb_dir = path_in(s, "redb_dir", data_dir.join("store"));
    let pg = s.section("postgres");
    let pg_cfg = PostgresConfig {
        host: pg.string(
            "host",
            "/run/postgresql",
            "a host name, an IP, a socket directory, or the cluster's members as \"10.0.0.1:5432,10.0.0.2:5432\"",
        ),
        port: pg.integer("port", 5432, 1, 65535) as u16,
        dbname: pg.string("dbname", "vbank", "a database name"),
        user: pg.string("user", "vbank", "a role name"),
        password: secret(&pg, "password"),
        pool_size: pg.integer("pool_size", 8, 1, 256) as u32,
        connect_timeout_s: pg.integer("connect_timeout_s", 5, 1, 300) as u32,
    };
    pg.finish();
    s.finish();
    match backend {
        "postgres" => StoreConfig::Postgres(pg_cfg),
        _ => StoreConfig::Redb { dir: redb_dir },
    }
}

fn read_hsm(s: &Section<'_, '_>) -> HsmConfig {
    let cfg = HsmConfig {
        module: path_in(s, "module", PathBuf::from("/usr/lib/softhsm/libsofthsm2.so")),
        token_label: s.string("token_label", "vbank", "the label the token was initialised with"),
        pin: secret(s, "pin"),
        profile: s.choice("profile", &["softhsm", "sansec", "tass", "luna"], "softhsm").to_string(),
    };
    s.finish();
    cfg
}

fn read_gateway(s: &Section<'_, '_>) -> GatewayConfig {
    let listen = addr(s, "listen", "0.0.0.0:8443");
    let default_url = format!("https://localhost:{}", listen.port());
    let media_listen = addr(s, "media_listen", "0.0.0.0:10000");
    let default_adv = if media_listen.ip().is_unspecified() {
        SocketAddr::from(([127, 0, 0, 1], media_listen.port()))
    } else {
        media_listen
    };
    let cfg = GatewayConfig {
        listen,
        admin_listen: addr(s, "admin_listen", "127.0.0.1:9101"),
        public_url: s.string("public_url", &default_url, "write the https:// URL customers use"),
        media_listen,
        media_advertise: s.parsed("media_advertise", default_adv, "an IP address and port", ADDR_HINT),
        media_tcp_advertise: None,
        max_participants: s.integer("max_participants", 1000, 1, 100_000) as usize,
        recording: match s.choice("recording", &["required", "when-available", "off"], "required") {
            "when-available" => RecordingMode::WhenAvailable,
            "off" => RecordingMode::Off,
            _ => RecordingMode::Required,
        },
        recorder_backlog_s: s.integer("recorder_backlog_s", 15, 0, 120) as u32,
        recorder_backlog_mb: s.integer("recorder_backlog_mb", 1024, 0, 65_536) as u32,
    };
    let default_tcp = SocketAddr::new(cfg.media_advertise.ip(), media_listen.port());
    let tcp_advertise = s.parsed("media_tcp_advertise", default_tcp, "an IP address and port", ADDR_HINT);
    let cfg = GatewayConfig { media_tcp_advertise: s.boolean("media_tcp", true).then_some(tcp_advertise), ..cfg };
    s.finish();
    cfg
}

fn read_keyd(s: &Section<'_, '_>) -> KeydConfig {
    let cfg = KeydConfig {
        listen: addr(s, "listen", "127.0.0.1:8450"),
        admin_listen: addr(s, "admin_listen", "127.0.0.1:9104"),
        approvals_required: s.integer("approvals_required", 2, 1, 9) as usize,
    };
    s.finish();
    cfg
}

fn read_recorder(s: &Section<'_, '_>, data_dir: &Path) -> RecorderConfig {
    let cfg = RecorderConfig {
        listen: addr(s, "listen", "127.0.0.1:8460"),
        admin_listen: addr(s, "admin_listen", "127.0.0.1:9106"),
        dir: path_in(s, "dir", data_dir.join("recordings")),
        segment_seconds: s.integer("segment_seconds", 10, 1, 300) as u32,
        alg: s.choice("alg", &["aes-256-gcm", "sm4-gcm"], "aes-256-gcm").to_string(),
        min_free_mb: s.integer("min_free_mb", 1024, 0, 1 << 40) as u64,
        media_ip: s.parsed(
            "media_ip",
            std::net::IpAddr::from([127, 0, 0, 1]),
            "an IP address",
            "write an IP such as \"10.0.0.5\"",
        ),
    };
    s.finish();
    cfg
}

/// Two listeners of this node on one port cannot both start.
fn check_ports(root: &Section<'_, '_>, cfg: &Config) {
    let listeners = cfg.listeners();
    for (i, (key_a, a)) in listeners.iter().enumerate() {
        for (key_b, b) in &listeners[i + 1..] {
            let clash =
                a.port() == b.port() && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified());
            if clash {
                root.error(
                    key_b,
                    None,
                    format!("port {} is also used by {key_a}", b.port()),
                    "give every listener its own port",
                );
            }
        }
    }
}

impl Config {
    /// Every TCP listener of this node, by key path (media is UDP: `gateway.media_listen`).
    pub fn listeners(&self) -> Vec<(&'static str, SocketAddr)> {
        vec![
            ("gateway.listen", self.gateway.listen),
            ("gateway.admin_listen", self.gateway.admin_listen),
            ("keyd.listen", self.keyd.listen),
            ("keyd.admin_listen", self.keyd.admin_listen),
            ("recorder.listen", self.recorder.listen),
            ("recorder.admin_listen", self.recorder.admin_listen),
            ("kyc.listen", self.kyc.listen),
            ("kyc.admin_listen", self.kyc.admin_listen),
        ]
    }
}
