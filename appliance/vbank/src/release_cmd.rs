//! `vbank release …`: the signed release bundle (`vbank-release`) — the release key, building a bundle from this
//! binary and what it carries (units, the example configuration, runbooks), and `vbank verify-bundle`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};
use clap::Subcommand;
use serde_json::json;
use vbank_crypto::sm2sig::{Sm2PrivateKey, Sm2PublicKey};
use vbank_release::File;

/// The systemd units, one per service plus the backup jobs and their timers, as the bundle and the Ansible role
/// install them.
pub const UNITS: [(&str, &str); 8] = [
    ("vbank-gateway.service", include_str!("../dist/units/vbank-gateway.service")),
    ("vbank-keyd.service", include_str!("../dist/units/vbank-keyd.service")),
    ("vbank-recorder.service", include_str!("../dist/units/vbank-recorder.service")),
    ("vbank-kyc.service", include_str!("../dist/units/vbank-kyc.service")),
    ("vbank-backup.service", include_str!("../dist/units/vbank-backup.service")),
    ("vbank-backup.timer", include_str!("../dist/units/vbank-backup.timer")),
    ("vbank-backup-verify.service", include_str!("../dist/units/vbank-backup-verify.service")),
    ("vbank-backup-verify.timer", include_str!("../dist/units/vbank-backup-verify.timer")),
];
/// Prometheus alert rules for the conditions the runbooks handle.
const ALERTS: &str = include_str!("../dist/prometheus/vbank-alerts.yml");
const EXAMPLE_CONFIG: &str = include_str!("../dist/vbank.toml.example");
const RUNBOOKS: [(&str, &str); 10] = [
    ("README.md", include_str!("../../../runbooks/README.md")),
    ("gateway-node-loss.md", include_str!("../../../runbooks/gateway-node-loss.md")),
    ("recorder-crash.md", include_str!("../../../runbooks/recorder-crash.md")),
    ("hsm-outage.md", include_str!("../../../runbooks/hsm-outage.md")),
    ("storage-full.md", include_str!("../../../runbooks/storage-full.md")),
    ("database-failover.md", include_str!("../../../runbooks/database-failover.md")),
    ("restore-from-backup.md", include_str!("../../../runbooks/restore-from-backup.md")),
    ("key-compromise.md", include_str!("../../../runbooks/key-compromise.md")),
    ("data-leak.md", include_str!("../../../runbooks/data-leak.md")),
    ("decommission.md", include_str!("../../../runbooks/decommission.md")),
];
const README: &str = include_str!("../../../README.md");

/// `vbank release …`
#[derive(Debug, Subcommand)]
pub enum ReleaseCmd {
    /// Make the release signing key (SM2): `<out>/release.key` (PKCS#8, 0600: keep it offline) and `release.pem`,
    /// the public key bank IT pins.
    Keygen {
        /// Directory for the two files.
        #[arg(long, default_value = ".")]
        out: PathBuf,
    },
    /// Build `vbank-<version>.tar.gz`: this binary, the units, the example configuration, the runbooks, the pages'
    /// WebAssembly module and the KYC models, with SHA256SUMS signed by the release key.
    Build {
        /// The version (e.g. 1.4.0).
        #[arg(long)]
        version: String,
        /// The release key (PKCS#8 PEM from `vbank release keygen`).
        #[arg(long)]
        key: PathBuf,
        /// The binary to ship (default: this one).
        #[arg(long)]
        binary: Option<PathBuf>,
        /// The pages' frame-cipher module (vbank_sframe_wasm.wasm).
        #[arg(long)]
        wasm: PathBuf,
        /// The KYC OCR models directory (appliance/kyc-service/models/fetch-ocr.sh fills it); left out if absent.
        #[arg(long)]
        models: Option<PathBuf>,
        /// Where to write the tarball.
        #[arg(long, default_value = ".")]
        out: PathBuf,
    },
}

pub fn run(cmd: ReleaseCmd, json: bool) -> Result<()> {
    match cmd {
        ReleaseCmd::Keygen { out } => keygen(&out, json),
        ReleaseCmd::Build { version, key, binary, wasm, models, out } => {
            let binary = match binary {
                Some(b) => b,
                None => std::env::current_exe().context("cannot find this binary: pass --binary")?,
            };
            build(&version, &key, &binary, &wasm, models.as_deref(), &out, json)
        }
    }
}

fn keygen(out: &Path, json: bool) -> Result<()> {
    let (private, public) = (out.join("release.key"), out.join("release.pem"));
    crate::hsm_cmd::write_key_pair(&private, &public)?;
    if json {
        println!("{}", json!({"key": private, "public_key": public}));
    } else {
        println!(
            "release key {} (keep it offline), public key {} (pin it on every node)",
            private.display(),
            public.display()
        );
    }
    Ok(())
}

fn read(p: &Path) -> Result<Vec<u8>> {
    std::fs::read(p).with_context(|| format!("cannot read {}", p.display()))
}

fn build(
    version: &str,
    key: &Path,
    binary: &Path,
    wasm: &Path,
    models: Option<&Path>,
    out: &Path,
    json: bool,
) -> Result<()> {
    let pem = String::from_utf8(read(key)?).context("the release key is not PEM")?;
    let key = Sm2PrivateKey::from_pkcs8_pem(&pem).context("the release key is not an SM2 PKCS#8 key")?;
    let file = |path: &str, bytes: Vec<u8>, executable| File { path: path.into(), bytes, executable };
    let mut files = vec![
        file("bin/vbank", read(binary)?, true),
        file("lib/vbank_sframe_wasm.wasm", read(wasm)?, false),
        file("etc/vbank.toml.example", EXAMPLE_CONFIG.into(), false),
        file("doc/README.md", README.into(), false),
        file("prometheus/vbank-alerts.yml", ALERTS.into(), false),
    ];
    files.extend(UNITS.iter().map(|(n, t)| file(&format!("units/{n}"), t.as_bytes().to_vec(), false)));
    files.extend(RUNBOOKS.iter().map(|(n, t)| file(&format!("runbooks/{n}"), t.as_bytes().to_vec(), false)));
    if let Some(dir) = models.filter(|d| d.is_dir()) {
        let mut names: Vec<_> = std::fs::read_dir(dir)?.filter_map(|e| e.ok()).map(|e| e.path()).collect();
        names.sort();
        for p in names.into_iter().filter(|p| p.is_file()) {
            let name = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            files.push(file(&format!("models/{name}"), read(&p)?, false));
        }
    }
    let count = files.len();
    let path = out.join(format!("vbank-{version}.tar.gz"));
    let f = std::fs::File::create(&path).with_context(|| format!("cannot create {}", path.display()))?;
    vbank_release::build(version, files, &key, std::io::BufWriter::new(f))?;
    if json {
        println!("{}", json!({"bundle": path, "files": count}));
    } else {
        println!("{}: {count} files, SHA256SUMS signed", path.display());
    }
    Ok(())
}

/// `vbank verify-bundle BUNDLE --key release.pem`: refuse a bundle whose signature or sums fail.
pub fn verify(bundle: &Path, key: &Path, json: bool) -> Result<()> {
    let pem = String::from_utf8(read(key)?).context("the release public key is not PEM")?;
    let key = Sm2PublicKey::from_pem(&pem).context("the release public key is not an SM2 public key")?;
    let f = std::fs::File::open(bundle).with_context(|| format!("cannot open {}", bundle.display()))?;
    match vbank_release::verify(std::io::BufReader::new(f), &key) {
        Ok(v) => {
            if json {
                let files: BTreeMap<_, _> = v.files.iter().collect();
                println!("{}", json!({"ok": true, "top": v.top, "files": files}));
            } else {
                println!("{}: signature and {} files verify ({})", bundle.display(), v.files.len(), v.top);
            }
            Ok(())
        }
        Err(e) => {
            if json {
                println!("{}", json!({"ok": false, "error": e.to_string()}));
            }
            bail!("{}: refused: {e}", bundle.display())
        }
    }
}
