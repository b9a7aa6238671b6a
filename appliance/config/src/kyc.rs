//! `[kyc]` and its vendors (`[kyc.tencent]`, `[kyc.alibaba]`, `[kyc.nciic]`, `[kyc.baidu]`): the KYC proxy's listeners,
//! log-token key, which engine does each check (local, a vendor, or both with a rule), models and masking.

use std::net::SocketAddr;
use std::path::PathBuf;

use crate::reader::Section;
use crate::schema::{ADDR_HINT, addr, path_in, secret};
use crate::secret::SecretRef;

/// `[kyc]`
#[derive(Debug, Clone)]
pub struct KycConfig {
    /// Internal mTLS API listener (the gateway asks for checks here).
    pub listen: SocketAddr,
    /// Admin listener (/healthz, /readyz, /metrics).
    pub admin_listen: SocketAddr,
    /// The HMAC-SM3 key that turns ID numbers and names into tokens in logs (32 bytes or more, any encoding).
    pub token_key: Option<SecretRef>,
    /// Who checks a citizen's identity (联网核查): `tencent`, `alibaba`, `nciic`, or `off` (manual review).
    pub identity: String,
    /// The rule for a second vendor: asked only when the first is unavailable and did not bill (`none` for none).
    pub identity_fallback: String,
    /// Who reads ID cards: `local` (on the appliance), a vendor (`tencent`, `baidu`), or `local+<vendor>` (local
    /// first; the vendor's read is compared and a disagreement is shown to the teller).
    pub ocr: String,
    /// Who compares the live face: `local` (with the card's portrait, advisory), a vendor (`tencent`, `baidu`: with
    /// the authority's photo), or `local+<vendor>` (both are shown; the vendor's score decides).
    pub face_compare: String,
    /// Tencent Cloud FaceID.
    pub tencent: VendorConfig,
    /// Alibaba Cloud 实人认证.
    pub alibaba: VendorConfig,
    /// NCIIC through PBoC channels.
    pub nciic: VendorConfig,
    /// Baidu AI Cloud.
    pub baidu: VendorConfig,
    /// Seconds before a vendor call is abandoned.
    pub timeout_s: u32,
    /// Where the OCR models are (installed by `fetch-ocr.sh`, checked by SHA-256).
    pub models: PathBuf,
    /// Characters of an ID number tellers see at its start (the rest up to `mask_id_back` is `*`).
    pub mask_id_front: u32,
    /// Characters of an ID number tellers see at its end.
    pub mask_id_back: u32,
}

/// One vendor's endpoint and credentials (`[kyc.tencent]`, `[kyc.alibaba]`, `[kyc.nciic]`, `[kyc.baidu]`).
#[derive(Debug, Clone)]
pub struct VendorConfig {
    /// The API host, signed into each request.
    pub host: String,
    /// Where to connect instead of resolving `host` on port 443 (an egress proxy; the simulator).
    pub connect: Option<SocketAddr>,
    /// The CA bundle that vouches for the vendor's certificate.
    pub ca: PathBuf,
    /// The key's id: Tencent `secret_id`, Alibaba `access_key_id`, Baidu `api_key`.
    pub key_id: Option<SecretRef>,
    /// The secret: Tencent `secret_key`, Alibaba `access_key_secret`, Baidu `secret_key`, NCIIC `license`.
    pub secret: Option<SecretRef>,
    /// Tencent: the vendor's SM2 public key (PEM); when set, the ID number travels SM4-GCM encrypted to it.
    pub encrypt_to: Option<PathBuf>,
    /// Tencent: the OCR API's host.
    pub ocr_host: String,
    /// NCIIC: the bank's 识别码 (`SBM`).
    pub sbm: String,
    /// NCIIC: the business type (`YWLX`).
    pub business: String,
    /// NCIIC: the place of business, a region code (`FSD`).
    pub place: String,
}

impl VendorConfig {
    /// Whether the credentials this vendor needs are set.
    pub fn has_credentials(&self, vendor: &str) -> bool {
        self.secret.is_some() && (vendor == "nciic" || self.key_id.is_some())
    }
}

/// The key names a vendor's section uses for its id and secret.
pub fn credential_keys(vendor: &str) -> (&'static str, &'static str) {
    match vendor {
        "alibaba" => ("access_key_id", "access_key_secret"),
        "baidu" => ("api_key", "secret_key"),
        "nciic" => ("", "license"),
        _ => ("secret_id", "secret_key"),
    }
}

fn read_vendor(s: &Section<'_, '_>, vendor: &str, default_host: &str) -> VendorConfig {
    let t = s.section(vendor);
    let (id_key, secret_key) = credential_keys(vendor);
    let cfg = VendorConfig {
        host: t.string("host", default_host, "the API host, e.g. \"faceid.tencentcloudapi.com\""),
        connect: t.opt_str("connect", ADDR_HINT).and_then(|(v, line)| match v.parse() {
            Ok(a) => Some(a),
            Err(_) => {
                t.error("connect", line, format!("{v:?} is not an IP address and port"), ADDR_HINT);
                None
            }
        }),
        ca: path_in(&t, "ca", PathBuf::from("/etc/ssl/certs/ca-certificates.crt")),
        key_id: if id_key.is_empty() { None } else { secret(&t, id_key) },
        secret: secret(&t, secret_key),
        encrypt_to: if vendor == "tencent" {
            t.opt_str("encrypt_to", "the path of Tencent's SM2 public key (PEM)").map(|(v, _)| PathBuf::from(v))
        } else {
            None
        },
        ocr_host: if vendor == "tencent" {
            t.string("ocr_host", "ocr.tencentcloudapi.com", "the OCR API host, e.g. \"ocr.tencentcloudapi.com\"")
        } else {
            String::new()
        },
        sbm: if vendor == "nciic" {
            t.string("sbm", "", "the bank's 识别码 from its NCIIC licence")
        } else {
            String::new()
        },
        business: if vendor == "nciic" {
            t.string("business", "开户", "the business type, e.g. 开户")
        } else {
            String::new()
        },
        place: if vendor == "nciic" {
            t.string("place", "", "the region code of the place of business")
        } else {
            String::new()
        },
    };
    t.finish();
    cfg
}

/// The engines that read cards and compare faces.
const CARD_ENGINES: [&str; 5] = ["local", "tencent", "baidu", "local+tencent", "local+baidu"];

/// Whether an `ocr` or `face_compare` value has the appliance's own engine run.
pub fn card_local(engine: &str) -> bool {
    engine == "local" || engine.starts_with("local+")
}

/// The vendor an `ocr` or `face_compare` value names, if any.
pub fn card_vendor(engine: &str) -> Option<&str> {
    Some(engine.strip_prefix("local+").unwrap_or(engine)).filter(|v| *v != "local")
}

pub(crate) fn read_kyc(s: &Section<'_, '_>) -> KycConfig {
    let cfg = KycConfig {
        listen: addr(s, "listen", "127.0.0.1:8470"),
        admin_listen: addr(s, "admin_listen", "127.0.0.1:9108"),
        token_key: secret(s, "token_key"),
        identity: s.choice("identity", &["tencent", "alibaba", "nciic", "off"], "off").to_string(),
        identity_fallback: s.choice("identity_fallback", &["none", "tencent", "alibaba", "nciic"], "none").to_string(),
        ocr: s.choice("ocr", &CARD_ENGINES, "local").to_string(),
        face_compare: s.choice("face_compare", &CARD_ENGINES, "local").to_string(),
        timeout_s: s.integer("timeout_s", 8, 1, 60) as u32,
        models: path_in(s, "models", PathBuf::from("/usr/share/vbank/models")),
        mask_id_front: s.integer("mask_id_front", 6, 0, 6) as u32,
        mask_id_back: s.integer("mask_id_back", 4, 0, 4) as u32,
        tencent: read_vendor(s, "tencent", "faceid.tencentcloudapi.com"),
        alibaba: read_vendor(s, "alibaba", "cloudauth.aliyuncs.com"),
        nciic: read_vendor(s, "nciic", ""),
        baidu: read_vendor(s, "baidu", "aip.baidubce.com"),
    };
    let used = [
        ("identity", cfg.identity.as_str()),
        ("identity_fallback", cfg.identity_fallback.as_str()),
        ("ocr", card_vendor(&cfg.ocr).unwrap_or_default()),
        ("face_compare", card_vendor(&cfg.face_compare).unwrap_or_default()),
    ];
    for (key, vendor) in used {
        let v = match vendor {
            "tencent" => &cfg.tencent,
            "alibaba" => &cfg.alibaba,
            "nciic" => &cfg.nciic,
            "baidu" => &cfg.baidu,
            _ => continue,
        };
        if !v.has_credentials(vendor) {
            let (id, secret) = credential_keys(vendor);
            let needs = if id.is_empty() { secret.to_string() } else { format!("{id} and {secret}") };
            s.error(
                key,
                None,
                format!("\"{vendor}\" needs [kyc.{vendor}] {needs}"),
                &format!("add {needs} under [kyc.{vendor}] as credential:NAME, or choose another engine"),
            );
        }
        if vendor == "nciic" && (v.host.is_empty() || v.sbm.is_empty()) {
            s.error(
                key,
                None,
                "\"nciic\" needs [kyc.nciic] host and sbm".into(),
                "set the host and 识别码 PBoC gave the bank",
            );
        }
    }
    if cfg.identity_fallback == cfg.identity {
        s.error(
            "identity_fallback",
            None,
            "the fallback is the first vendor".into(),
            "name another vendor, or \"none\"",
        );
    }
    s.finish();
    cfg
}
