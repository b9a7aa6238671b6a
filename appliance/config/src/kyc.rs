//! `[kyc]` and `[kyc.tencent]`: the KYC proxy's listeners, log-token key, vendor, models and masking.

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
    /// Who checks a citizen's identity (联网核查): `tencent`, or `off` (the teller refers to manual review).
    pub identity: String,
    /// Tencent Cloud FaceID.
    pub tencent: TencentConfig,
    /// Seconds before a vendor call is abandoned.
    pub timeout_s: u32,
    /// Where the OCR models are (installed by `fetch-ocr.sh`, checked by SHA-256).
    pub models: PathBuf,
    /// Characters of an ID number tellers see at its start (the rest up to `mask_id_back` is `*`).
    pub mask_id_front: u32,
    /// Characters of an ID number tellers see at its end.
    pub mask_id_back: u32,
}

/// `[kyc.tencent]`
#[derive(Debug, Clone)]
pub struct TencentConfig {
    /// The API host, signed into each request.
    pub host: String,
    /// Where to connect instead of resolving `host` on port 443 (an egress proxy; the simulator).
    pub connect: Option<SocketAddr>,
    /// The CA bundle that vouches for the vendor's certificate.
    pub ca: PathBuf,
    /// The SecretId.
    pub secret_id: Option<SecretRef>,
    /// The SecretKey.
    pub secret_key: Option<SecretRef>,
}

pub(crate) fn read_kyc(s: &Section<'_, '_>) -> KycConfig {
    let t = s.section("tencent");
    let tencent = TencentConfig {
        host: t.string("host", "faceid.tencentcloudapi.com", "the API host, e.g. \"faceid.tencentcloudapi.com\""),
        connect: t.opt_str("connect", ADDR_HINT).and_then(|(v, line)| match v.parse() {
            Ok(a) => Some(a),
            Err(_) => {
                t.error("connect", line, format!("{v:?} is not an IP address and port"), ADDR_HINT);
                None
            }
        }),
        ca: path_in(&t, "ca", PathBuf::from("/etc/ssl/certs/ca-certificates.crt")),
        secret_id: secret(&t, "secret_id"),
        secret_key: secret(&t, "secret_key"),
    };
    t.finish();
    let cfg = KycConfig {
        listen: addr(s, "listen", "127.0.0.1:8470"),
        admin_listen: addr(s, "admin_listen", "127.0.0.1:9108"),
        token_key: secret(s, "token_key"),
        identity: s.choice("identity", &["tencent", "off"], "off").to_string(),
        timeout_s: s.integer("timeout_s", 8, 1, 60) as u32,
        models: path_in(s, "models", PathBuf::from("/usr/share/vbank/models")),
        mask_id_front: s.integer("mask_id_front", 6, 0, 6) as u32,
        mask_id_back: s.integer("mask_id_back", 4, 0, 4) as u32,
        tencent,
    };
    if cfg.identity == "tencent" && (cfg.tencent.secret_id.is_none() || cfg.tencent.secret_key.is_none()) {
        s.error(
            "identity",
            None,
            "\"tencent\" needs [kyc.tencent] secret_id and secret_key".into(),
            "add secret_id and secret_key under [kyc.tencent] as credential:NAME, or set identity = \"off\"",
        );
    }
    s.finish();
    cfg
}
