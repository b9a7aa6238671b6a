//! Preparing a development node for `vbank up`: data directory, configuration, credentials, a SoftHSM2 token and a
//! development CA. Every step is idempotent: an existing file is kept, so a second `vbank up` reuses the first's state.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, Result, bail};
use vbank_config::Config;

/// Where `vbank up` keeps its state and what it prepared.
#[derive(Debug)]
pub struct DevEnv {
    /// The data directory.
    pub dir: PathBuf,
    /// `dir/vbank.toml`.
    pub config_path: PathBuf,
    /// `dir/credentials` (becomes `$CREDENTIALS_DIRECTORY` for the children).
    pub credentials: PathBuf,
    /// `dir/softhsm/softhsm2.conf`, when the dev token is used.
    pub softhsm_conf: Option<PathBuf>,
    /// The loaded configuration.
    pub config: Config,
    /// The KYC vendor simulator's files, when the configuration points KYC at it.
    pub kyc_simulator: Option<super::kyc_dev::SimulatorFiles>,
}

/// Ports for a fresh configuration.
#[derive(Debug, Clone, Copy)]
pub struct Ports {
    /// Public HTTPS (customer page, teller console).
    pub public: u16,
    /// Internal listeners take base+1, base+2, …
    pub internal_base: u16,
    /// Where browsers send media, when not 127.0.0.1 (a LAN address for phones).
    pub media_advertise: Option<std::net::SocketAddr>,
    /// Offer ICE-TCP on the media port (for networks that block UDP).
    pub media_tcp: bool,
    /// End-to-end encrypt calls joined by link too (not only the front desk's `wealth` calls).
    pub e2ee_direct: bool,
    /// The 国密 frame cipher (SM4-GCM) instead of AES-256-GCM.
    pub e2ee_sm4: bool,
}

const DEV_TOKEN: &str = "vbank-dev";
const SOFTHSM_MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";

fn mkdir_private(p: &Path) -> Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(p)
        .with_context(|| format!("cannot create {} (hint: choose a --data-dir you can write to)", p.display()))
}

fn random_digits(n: usize) -> Result<String> {
    let mut buf = vec![0u8; n];
    fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut buf))
        .context("cannot read /dev/urandom")?;
    Ok(buf.iter().map(|b| char::from(b'0' + b % 10)).collect())
}

/// `n` random bytes, hex.
pub(super) fn random_hex(n: usize) -> Result<String> {
    let mut buf = vec![0u8; n];
    fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut buf))
        .context("cannot read /dev/urandom")?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

pub(super) fn write_secret(path: &Path, value: &str) -> Result<()> {
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o400)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    f.write_all(value.as_bytes())?;
    Ok(())
}

pub(crate) fn config_text(dir: &Path, ports: Ports) -> String {
    let d = dir.display();
    let b = ports.internal_base;
    let advertise = ports.media_advertise.unwrap_or_else(|| std::net::SocketAddr::from(([127, 0, 0, 1], b + 4)));
    format!(
        r#"# vbank development configuration, written by `vbank up`. NOT FOR PRODUCTION:
# a SoftHSM2 token stands in for the bank's HSM and a development CA for the bank's CA.

[node]
name = "dev"
data_dir = "{d}"
dev_mode = true

[log]
level = "info"
target = "stderr"   # `vbank up` forwards each service's stderr to its own, prefixed

[tls]
dir = "{d}/tls"
sm = true            # also serve 国密 TLS 1.3 (RFC 8998) clients, with SM2 certificates from a development SM2 CA

[store]
backend = "redb"

[hsm]
module = "{SOFTHSM_MODULE}"
token_label = "{DEV_TOKEN}"
pin = "credential:hsm-pin"
profile = "softhsm"

[gateway]
listen = "0.0.0.0:{public}"
admin_listen = "127.0.0.1:{gw_admin}"
public_url = "https://localhost:{public}"
media_listen = "0.0.0.0:{media}"     # WebRTC media (UDP)
media_advertise = "{advertise}"   # the address browsers send media to
media_tcp = {media_tcp}              # also ICE-TCP on media_listen's port, for networks that block UDP
recording = "when-available"   # record calls once the key ceremony is held; production: "required"

[keyd]
listen = "127.0.0.1:{keyd}"
admin_listen = "127.0.0.1:{keyd_admin}"

[recorder]
listen = "127.0.0.1:{rec}"
admin_listen = "127.0.0.1:{rec_admin}"
dir = "{d}/recordings"
min_free_mb = 256     # new recordings (and so calls that need them) are refused below this much free space
media_ip = "{recorder_ip}"   # the recorder's media address: the gateway's advertised one (this node)

[e2ee]
businesses = "wealth"    # the front desk's business types whose calls are end-to-end encrypted ("*": all)
direct = {e2ee_direct}           # calls joined by link (these development pages, `vbank token`) too
suite = "{e2ee_suite}"   # the frame cipher: aes-256-gcm (WebCrypto) or sm4-gcm (国密, WebAssembly)
wasm = "{e2ee_wasm}"
{kyc}"#,
        public = ports.public,
        gw_admin = b + 1,
        keyd = b + 2,
        keyd_admin = b + 3,
        media = b + 4,
        rec = b + 5,
        rec_admin = b + 6,
        advertise = advertise,
        recorder_ip = advertise.ip(),
        media_tcp = ports.media_tcp,
        e2ee_direct = ports.e2ee_direct,
        e2ee_suite = if ports.e2ee_sm4 { "sm4-gcm" } else { "aes-256-gcm" },
        // Built by tests/run.sh (cargo build -p vbank-sframe-wasm --target wasm32-unknown-unknown --release).
        e2ee_wasm = std::env::var("VBANK_SFRAME_WASM")
            .ok()
            .filter(|p| Path::new(p).is_absolute())
            .unwrap_or_else(|| "/usr/lib/vbank/vbank_sframe_wasm.wasm".into()),
        kyc = super::kyc_dev::config_text(dir, ports),
    )
}

/// Prepare (or reuse) the development node in `dir`.
pub fn prepare(dir: &Path, ports: Ports, public_names: &[String]) -> Result<DevEnv> {
    mkdir_private(dir)?;
    let dir = dir.canonicalize().with_context(|| format!("cannot resolve {}", dir.display()))?;
    let probe = dir.join(".write-test");
    fs::write(&probe, b"").with_context(|| {
        format!(
            "data directory {} is not writable (hint: fix its permissions or pass --data-dir with a directory you own)",
            dir.display()
        )
    })?;
    let _ = fs::remove_file(&probe);

    let config_path = dir.join("vbank.toml");
    if !config_path.exists() {
        fs::write(&config_path, config_text(&dir, ports))
            .with_context(|| format!("cannot write {}", config_path.display()))?;
    }
    super::kyc_dev::upgrade_config(&config_path, &dir, ports)?;
    let credentials = dir.join("credentials");
    mkdir_private(&credentials)?;
    let (config, warnings) = vbank_config::load(&config_path).map_err(|e| anyhow::anyhow!("{e}"))?;
    for w in warnings {
        eprintln!("{}: {w}", config_path.display());
    }

    let softhsm_conf = if config.hsm.module == Path::new(SOFTHSM_MODULE) {
        Some(prepare_softhsm(&dir, &credentials, &config.hsm.token_label)?)
    } else {
        None
    };

    let created = vbank_tls::devca::ensure_dev_pki(&config.tls, public_names)?;
    if created == vbank_tls::devca::DevPki::Created {
        log::info!("created a development CA and certificates in {}", dir.join("tls").display());
    }
    let kyc_simulator = match config.kyc.tencent.connect {
        Some(a) if config.kyc.identity == "tencent" && a.ip().is_loopback() => {
            Some(super::kyc_dev::prepare(&dir, &credentials)?)
        }
        _ => None,
    };
    Ok(DevEnv { dir, config_path, credentials, softhsm_conf, config, kyc_simulator })
}

/// A SoftHSM2 token labelled `label` in `dir/softhsm`, with its user PIN in `credentials/hsm-pin`.
fn prepare_softhsm(dir: &Path, credentials: &Path, label: &str) -> Result<PathBuf> {
    if !Path::new(SOFTHSM_MODULE).exists() {
        bail!("SoftHSM2 is not installed (hint: apt-get install softhsm2, or configure your HSM's module under [hsm])");
    }
    let root = dir.join("softhsm");
    let tokens = root.join("tokens");
    mkdir_private(&tokens)?;
    let conf = root.join("softhsm2.conf");
    if !conf.exists() {
        fs::write(
            &conf,
            format!("directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n", tokens.display()),
        )?;
    }
    let pin_path = credentials.join("hsm-pin");
    let has_token = fs::read_dir(&tokens)?.next().is_some();
    if has_token && pin_path.exists() {
        return Ok(conf);
    }
    if has_token {
        bail!(
            "{} holds a SoftHSM token but {} is missing (hint: restore the PIN file, or delete {} to start over)",
            tokens.display(),
            pin_path.display(),
            tokens.display()
        );
    }
    let pin = random_digits(12)?;
    let so_pin = random_digits(12)?;
    // PINs go to softhsm2-util on its command line: acceptable for a throw-away development token only.
    let out = Command::new("softhsm2-util")
        .args(["--init-token", "--free", "--label", label, "--pin", &pin, "--so-pin", &so_pin])
        .env("SOFTHSM2_CONF", &conf)
        .output()
        .context("cannot run softhsm2-util (hint: apt-get install softhsm2)")?;
    if !out.status.success() {
        bail!("softhsm2-util could not create the development token: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    write_secret(&pin_path, &pin)?;
    write_secret(&credentials.join("hsm-so-pin"), &so_pin)?;
    log::info!(token_label = label; "created a SoftHSM2 development token");
    Ok(conf)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn mode(p: &Path) -> u32 {
        fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn prepares_once_and_reuses() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("data");
        let ports = Ports {
            public: 18443,
            internal_base: 19100,
            media_advertise: None,
            media_tcp: true,
            e2ee_direct: false,
            e2ee_sm4: false,
        };
        let names = vec!["localhost".to_string()];
        let env = prepare(&dir, ports, &names).unwrap();
        assert_eq!(env.config.gateway.listen.port(), 18443);
        assert_eq!(env.config.keyd.admin_listen.port(), 19103);
        assert!(env.config.node.dev_mode);
        assert_eq!(mode(&env.dir), 0o700);
        assert!(env.config.tls.internal_ca.is_file());
        if env.softhsm_conf.is_some() {
            assert_eq!(mode(&env.credentials.join("hsm-pin")), 0o400);
        }
        let pin_before = fs::read(env.credentials.join("hsm-pin")).ok();
        let again = prepare(&dir, ports, &names).unwrap();
        assert_eq!(fs::read(again.credentials.join("hsm-pin")).ok(), pin_before, "token and PIN are reused");
    }

    #[test]
    fn an_unwritable_data_dir_names_the_fix() {
        let e = prepare(
            Path::new("/proc/vbank-data"),
            Ports {
                public: 1,
                internal_base: 2,
                media_advertise: None,
                media_tcp: true,
                e2ee_direct: false,
                e2ee_sm4: false,
            },
            &[],
        )
        .unwrap_err();
        assert!(format!("{e:#}").contains("--data-dir"), "{e:#}");
    }
}
