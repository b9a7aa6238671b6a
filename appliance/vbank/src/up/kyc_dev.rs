//! The KYC part of a development node: the `[kyc]` section, its credentials (the log-token key, the vendor accounts
//! the simulator accepts), and the vendor simulator's certificate, Tencent's SM2 key pair and simulated people. A configuration written by an
//! older `vbank up` gets the section appended once.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};

use super::devenv::{Ports, random_hex, write_secret};

/// The hosts the simulator answers as (its certificate names them all).
const VENDOR_HOSTS: [&str; 5] =
    ["faceid.tencentcloudapi.com", "ocr.tencentcloudapi.com", "cloudauth.aliyuncs.com", "aip.baidubce.com", NCIIC_HOST];
/// Where a bank reaches NCIIC is its own; the development node's name for the simulator's.
const NCIIC_HOST: &str = "nciic.simulator.vbank.test";
/// The vendors' credential files, and their lengths.
const CREDENTIALS: [(&str, usize); 8] = [
    ("kyc-token-key", 32),
    ("tencent-secret-id", 16),
    ("tencent-secret-key", 20),
    ("alibaba-access-key-id", 12),
    ("alibaba-access-key-secret", 15),
    ("nciic-license", 24),
    ("baidu-api-key", 12),
    ("baidu-secret-key", 16),
];

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
identity = "tencent"            # 联网核查 through Tencent Cloud FaceID — here, the simulator; or "alibaba", "nciic"
identity_fallback = "alibaba"   # asked only when the first is unavailable and did not bill; or "none"
ocr = "local"            # or "tencent", "baidu", "local+tencent", "local+baidu" (the simulator reads only queued cards)
face_compare = "local"   # or a vendor, "local+<vendor>": the live face against the authority's photo

# Every vendor below is the vendor simulator (`vbank kyc simulate`). Production: remove the `connect` and `ca` lines.
[kyc.tencent]
connect = "127.0.0.1:{sim}"
ca = "{d}/kyc-simulator/sim-ca.crt"
secret_id = "credential:tencent-secret-id"
secret_key = "credential:tencent-secret-key"
encrypt_to = "{d}/kyc-simulator/tencent-sm2.pub"   # the ID number travels SM4-GCM encrypted to Tencent's SM2 key

[kyc.alibaba]
connect = "127.0.0.1:{sim}"
ca = "{d}/kyc-simulator/sim-ca.crt"
access_key_id = "credential:alibaba-access-key-id"
access_key_secret = "credential:alibaba-access-key-secret"

[kyc.nciic]
host = "{nciic}"
connect = "127.0.0.1:{sim}"
ca = "{d}/kyc-simulator/sim-ca.crt"
license = "credential:nciic-license"
sbm = "VBANK-DEV"
place = "110101"

[kyc.baidu]
connect = "127.0.0.1:{sim}"
ca = "{d}/kyc-simulator/sim-ca.crt"
api_key = "credential:baidu-api-key"
secret_key = "credential:baidu-secret-key"
"#,
        nciic = NCIIC_HOST,
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
    for (name, len) in CREDENTIALS {
        if !credentials.join(name).exists() {
            write_secret(&credentials.join(name), &random_hex(len)?)?;
        }
    }
    let sim = dir.join("kyc-simulator");
    let pki = vbank_tls::devca::ensure_simulator_pki(&sim, &VENDOR_HOSTS)?;
    // Tencent's field-encryption key pair: the simulator holds the private half, `encrypt_to` names the public.
    let (private, public) = (sim.join("tencent-sm2.key"), sim.join("tencent-sm2.pub"));
    let key = if private.exists() {
        vbank_crypto::sm2sig::Sm2PrivateKey::from_pkcs8_pem(&fs::read_to_string(&private)?)?
    } else {
        let key = vbank_crypto::sm2sig::Sm2PrivateKey::generate()?;
        write_secret(&private, std::str::from_utf8(key.to_pkcs8_pem()?.expose())?)?;
        key
    };
    if !public.exists() {
        fs::write(&public, key.public_key().to_pem())?;
    }
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
    Ok(SimulatorFiles { cert: pki.cert, key: pki.key, people, encryption_key: private })
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
    /// Tencent's SM2 private key, for field encryption.
    pub encryption_key: PathBuf,
}
