//! The KYC part of a development node: the `[kyc]` section, its credentials (the log-token key, the vendor account
//! the simulator accepts), and the vendor simulator's certificate and simulated people. A configuration written by an
//! older `vbank up` gets the section appended once.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};

use super::devenv::{Ports, random_hex, write_secret};

/// The vendor host the simulator answers as.
pub const VENDOR_HOST: &str = "faceid.tencentcloudapi.com";

/// Synthetic people in the simulated authority's records (region 110101, check characters computed): for trying
/// the identity check by hand.
const PEOPLE: [(&str, &str); 2] = [("测试甲", "11010119900307002"), ("测试乙", "11010119851111003")];

/// The `[kyc]` section for a fresh configuration.
pub fn config_text(dir: &Path, ports: Ports) -> String {
    let b = ports.internal_base;
    format!(
        r#"
[kyc]
listen = "127.0.0.1:{kyc}"
admin_listen = "127.0.0.1:{kyc_admin}"
token_key = "credential:kyc-token-key"   # HMAC-SM3 key: logs carry tokens, never ID numbers or names
models = "{models}"   # OCR models (tests/setup.sh installs them there; production: /usr/share/vbank/models)
identity = "tencent"                      # 联网核查 through Tencent Cloud FaceID — here, its simulator

[kyc.tencent]
connect = "127.0.0.1:{sim}"     # the vendor simulator (`vbank kyc simulate`); production: remove this line
ca = "{d}/kyc-simulator/sim-ca.crt"   # production: the system CA bundle (the default)
secret_id = "credential:tencent-secret-id"
secret_key = "credential:tencent-secret-key"
"#,
        d = dir.display(),
        models = models_dir().display(),
        kyc = b + 7,
        kyc_admin = b + 8,
        sim = b + 9,
    )
}

/// Where `tests/setup.sh` installs the OCR models: `$VBANK_MODELS`, else `~/.cache/vbank/models`.
fn models_dir() -> PathBuf {
    std::env::var_os("VBANK_MODELS").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/root".into())).join(".cache/vbank/models")
    })
}

/// Append the `[kyc]` section to a configuration that lacks it.
pub fn upgrade_config(config_path: &Path, dir: &Path, ports: Ports) -> Result<()> {
    let text = fs::read_to_string(config_path).with_context(|| format!("cannot read {}", config_path.display()))?;
    if text.lines().any(|l| l.trim() == "[kyc]") {
        return Ok(());
    }
    fs::write(config_path, format!("{text}{}", config_text(dir, ports)))
        .with_context(|| format!("cannot add [kyc] to {}", config_path.display()))?;
    log::info!("added a [kyc] section to {}", config_path.display());
    Ok(())
}

/// Credentials, certificate and people for KYC; the simulator's files.
pub fn prepare(dir: &Path, credentials: &Path) -> Result<SimulatorFiles> {
    for (name, len) in [("kyc-token-key", 32), ("tencent-secret-key", 20)] {
        if !credentials.join(name).exists() {
            write_secret(&credentials.join(name), &random_hex(len)?)?;
        }
    }
    if !credentials.join("tencent-secret-id").exists() {
        write_secret(&credentials.join("tencent-secret-id"), &format!("AKIDdev{}", random_hex(14)?))?;
    }
    let sim = dir.join("kyc-simulator");
    let pki = vbank_tls::devca::ensure_simulator_pki(&sim, &[VENDOR_HOST])?;
    let people = sim.join("people.json");
    if !people.exists() {
        let list: Vec<serde_json::Value> = PEOPLE
            .iter()
            .map(|(name, first17)| {
                let id = format!("{first17}{}", vbank_kyc::id::check_char(first17.as_bytes()));
                serde_json::json!({"name": name, "id_number": id})
            })
            .collect();
        fs::write(&people, serde_json::to_string_pretty(&list)?)?;
    }
    Ok(SimulatorFiles { cert: pki.cert, key: pki.key, people })
}

/// What `vbank kyc simulate` is started with.
#[derive(Debug, Clone)]
pub struct SimulatorFiles {
    /// Its certificate chain.
    pub cert: PathBuf,
    /// Its key.
    pub key: PathBuf,
    /// The simulated people.
    pub people: PathBuf,
}
