//! `vbank hsm …`: the HSM console for security officers. It talks to keyd over mTLS with the operator (cli)
//! certificate; dual-control actions carry the officer's own SM2 signature, made here from the officer's key file.
//! `vbank hsm audit verify` works offline, from an exported log and the seal public key.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use clap::Subcommand;
use serde_json::{Value, json};
use vbank_config::{Config, Service};
use vbank_crypto::sm2sig::{Sm2PrivateKey, Sm2PublicKey};
use vbank_crypto::to_hex;
use vbank_keyd::approvals::{ceremony_message, message, sign_hex};
use vbank_keyd::audit;
use vbank_service::client::{self, ClientConfig, Method};

/// The console's commands.
#[derive(Debug, Subcommand)]
pub enum HsmCmd {
    /// Module, token, profile, mechanisms and health.
    Status,
    /// Key management.
    Keys {
        #[command(subcommand)]
        cmd: KeysCmd,
    },
    /// Move every data key of a purpose to its newest KEK version, inside the HSM.
    Rewrap {
        /// recording, media or backup.
        #[arg(long)]
        purpose: String,
    },
    /// Dual-control requests.
    Approvals {
        #[command(subcommand)]
        cmd: ApprovalsCmd,
    },
    /// The audit log.
    Audit {
        #[command(subcommand)]
        cmd: AuditCmd,
    },
    /// First set-up: register the officers, create the KEKs and seal keys, print check values and public keys.
    Ceremony {
        /// An officer and their SM2 public key: NAME=PUBLIC.pem (repeat for each).
        #[arg(long = "officer", required = true)]
        officers: Vec<String>,
        /// A present officer and their private key, to sign the ceremony record: NAME=KEY.pem (repeat).
        #[arg(long = "witness", required = true)]
        witnesses: Vec<String>,
    },
    /// Make an officer's SM2 key pair: DIR/NAME.key (0600) and DIR/NAME.pub.pem.
    OfficerKeygen {
        /// Officer name.
        #[arg(long)]
        name: String,
        /// Directory for the files.
        #[arg(long, default_value = ".")]
        out: PathBuf,
    },
}

/// `vbank hsm keys …`
#[derive(Debug, Subcommand)]
pub enum KeysCmd {
    /// Every key version with its state and HSM attributes.
    List,
    /// Create version 1 of a purpose.
    Create {
        /// recording, media, backup, signing, audit-seal, evidence-seal.
        #[arg(long)]
        purpose: String,
        /// aes256, sm4, sm2, p256.
        #[arg(long)]
        alg: String,
    },
    /// Request a new version (dual control).
    Rotate {
        /// Purpose.
        #[arg(long)]
        purpose: String,
        #[command(flatten)]
        officer: OfficerArgs,
    },
    /// Request that a version open nothing any more (dual control).
    Retire {
        /// Label, e.g. vbank/recording/v1.
        label: String,
        #[command(flatten)]
        officer: OfficerArgs,
    },
    /// Request that a version be destroyed in the HSM (dual control).
    Destroy {
        /// Label.
        label: String,
        #[command(flatten)]
        officer: OfficerArgs,
    },
    /// Print or write a signing key's public key (PEM).
    ExportPublic {
        /// Label, e.g. vbank/evidence-seal/v1.
        label: String,
        /// Write here instead of stdout.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

/// The officer acting, and their key.
#[derive(Debug, clap::Args)]
pub struct OfficerArgs {
    /// Officer name.
    #[arg(long)]
    officer: String,
    /// The officer's SM2 private key (PKCS#8 PEM).
    #[arg(long)]
    key: PathBuf,
}

/// `vbank hsm approvals …`
#[derive(Debug, Subcommand)]
pub enum ApprovalsCmd {
    /// Every request and its approvals.
    List,
    /// Approve a request.
    Approve {
        /// Request id.
        id: String,
        #[command(flatten)]
        officer: OfficerArgs,
    },
    /// Reject a request.
    Reject {
        /// Request id.
        id: String,
        #[command(flatten)]
        officer: OfficerArgs,
    },
}

/// `vbank hsm audit …`
#[derive(Debug, Subcommand)]
pub enum AuditCmd {
    /// Write the whole log as JSON lines.
    Export {
        /// File to write (default: stdout).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Check an exported log offline: chain and seals. Names the first bad entry.
    Verify {
        /// The exported log.
        log: PathBuf,
        /// Seal public key(s): LABEL=PUBLIC.pem, e.g. vbank/audit-seal/v1=audit.pem (repeat).
        #[arg(long = "public-key", required = true)]
        public_keys: Vec<String>,
    },
}

pub(crate) struct Keyd {
    tls: Arc<ClientConfig>,
    addr: std::net::SocketAddr,
}

impl Keyd {
    pub(crate) fn new(cfg: &Config, sm: bool) -> Result<Keyd> {
        let tls = if sm {
            if !cfg.tls.sm.enabled {
                bail!("--tls sm needs [tls] sm = true and SM2 certificates (sm-cli.crt/.key, sm-ca.crt)");
            }
            vbank_tls::service_client_config_sm(&cfg.tls, Service::Cli)
        } else {
            vbank_tls::internal_client_config(&cfg.tls, Service::Cli)
        }
        .context("loading the operator certificate (tls.cli)")?;
        Ok(Keyd { tls, addr: cfg.keyd.listen })
    }

    pub(crate) async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Result<Value> {
        let name = vbank_tls::service_dns_name(Service::Keyd);
        let body = body.map(|b| b.to_string().into());
        let (status, bytes) =
            client::call(self.tls.clone(), self.addr, &name, method, path, body, Duration::from_secs(60))
                .await
                .with_context(|| format!("keyd at {} (is it running? `vbank keyd`)", self.addr))?;
        let text = String::from_utf8_lossy(&bytes).into_owned();
        if !status.is_success() {
            let msg = serde_json::from_str::<Value>(&text)
                .ok()
                .and_then(|v| v["message"].as_str().map(str::to_string))
                .unwrap_or(text);
            bail!("keyd refused ({status}): {msg}");
        }
        Ok(serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }
}

/// `vbank token`: a call token for `room` and `role`, signed by keyd's call-token key in the HSM.
pub async fn token(cfg: &Config, room: &str, role: &str, ttl: &str, json: bool, sm: bool) -> Result<()> {
    let ttl_s = parse_ttl(ttl)?;
    let k = Keyd::new(cfg, sm)?;
    let v = k.call(Method::POST, "/v1/token/sign", Some(json!({"room": room, "role": role, "ttl_s": ttl_s}))).await?;
    if json {
        println!("{v}");
    } else {
        println!("{}", v["token"].as_str().unwrap_or_default());
    }
    Ok(())
}

/// `90s`, `10m`, `1h`, or plain seconds.
fn parse_ttl(s: &str) -> Result<u64> {
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num.parse().with_context(|| format!("--ttl {s:?}: write e.g. 90s, 10m or 1h"))?;
    let mult = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        other => bail!("--ttl unit {other:?}: use s, m or h"),
    };
    Ok(n * mult)
}

pub(crate) fn read_key(path: &Path) -> Result<Sm2PrivateKey> {
    let pem = std::fs::read_to_string(path).with_context(|| format!("reading officer key {}", path.display()))?;
    Sm2PrivateKey::from_pkcs8_pem(&pem).map_err(|e| anyhow::anyhow!("{}: not an SM2 private key: {e}", path.display()))
}

fn split_pair(s: &str, what: &str) -> Result<(String, PathBuf)> {
    let (a, b) = s.split_once('=').with_context(|| format!("{what} must be NAME=PATH, got {s:?}"))?;
    Ok((a.to_string(), PathBuf::from(b)))
}

fn show(json: bool, v: &Value, human: impl FnOnce(&Value)) {
    if json {
        println!("{v}");
    } else {
        human(v);
    }
}

/// Run one console command; `sm` makes its calls to keyd over 国密 TLS 1.3.
pub async fn run(cfg: &Config, cmd: HsmCmd, json: bool, sm: bool) -> Result<()> {
    match cmd {
        HsmCmd::OfficerKeygen { name, out } => officer_keygen(&name, &out, json),
        HsmCmd::Audit { cmd: AuditCmd::Verify { log, public_keys } } => audit_verify(&log, &public_keys, json),
        cmd => online(cfg, cmd, json, sm).await,
    }
}

async fn online(cfg: &Config, cmd: HsmCmd, json: bool, sm: bool) -> Result<()> {
    let k = Keyd::new(cfg, sm)?;
    match cmd {
        HsmCmd::Status => {
            let v = k.call(Method::GET, "/v1/hsm/status", None).await?;
            show(json, &v, |v| {
                println!("module     {}", v["module"].as_str().unwrap_or(""));
                println!("library    {}", v["library"].as_str().unwrap_or(""));
                println!("token      {} ({})", v["token"].as_str().unwrap_or(""), v["device"].as_str().unwrap_or(""));
                println!("profile    {}", v["profile"].as_str().unwrap_or(""));
                println!(
                    "mechanisms {}",
                    v["mechanisms"]
                        .as_array()
                        .map(|a| a.iter().filter_map(|m| m.as_str()).collect::<Vec<_>>().join(", "))
                        .unwrap_or_default()
                );
                println!("health     {}", if v["logged_in"] == true { "logged in" } else { "not logged in" });
            });
        }
        HsmCmd::Keys { cmd } => keys(&k, cmd, json).await?,
        HsmCmd::Rewrap { purpose } => {
            let v = k.call(Method::POST, "/v1/admin/rewrap", Some(json!({"purpose": purpose}))).await?;
            show(json, &v, |v| println!("moved {} data key(s) to the newest {purpose} KEK", v["moved"]));
        }
        HsmCmd::Approvals { cmd } => approvals(&k, cmd, json).await?,
        HsmCmd::Audit { cmd: AuditCmd::Export { out } } => {
            let v = k.call(Method::GET, "/v1/admin/audit/export", None).await?;
            let text = v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string());
            match out {
                Some(p) => {
                    std::fs::write(&p, &text).with_context(|| format!("writing {}", p.display()))?;
                    eprintln!("wrote {} entries to {}", text.lines().count(), p.display());
                }
                None => print!("{text}"),
            }
        }
        HsmCmd::Ceremony { officers, witnesses } => ceremony(&k, cfg, &officers, &witnesses, json).await?,
        HsmCmd::Audit { cmd: AuditCmd::Verify { .. } } | HsmCmd::OfficerKeygen { .. } => {
            unreachable!("handled offline")
        }
    }
    Ok(())
}

async fn keys(k: &Keyd, cmd: KeysCmd, json: bool) -> Result<()> {
    match cmd {
        KeysCmd::List => {
            let v = k.call(Method::GET, "/v1/admin/keys", None).await?;
            show(json, &v, |v| {
                println!(
                    "{:<26} {:<7} {:<9} {:<17} {:<9} {:<9} {:<9} CREATED",
                    "LABEL", "ALG", "STATE", "WHERE", "SENSITIVE", "EXTRACT", "NEVER-EXT"
                );
                let objects = v["hsm_objects"].as_array().cloned().unwrap_or_default();
                for r in v["keys"].as_array().into_iter().flatten() {
                    let label =
                        format!("vbank/{}/v{}", r["label"]["purpose"].as_str().unwrap_or(""), r["label"]["version"]);
                    let obj = objects.iter().find(|o| {
                        o["label"] == r["label"]
                            && (o["class"] == "secret-key" || o["class"] == "private-key" || o["class"] == "data")
                    });
                    let flag = |f: &str| obj.map(|o| if o[f] == true { "yes" } else { "no" }).unwrap_or("-");
                    println!(
                        "{:<26} {:<7} {:<9} {:<17} {:<9} {:<9} {:<9} {}",
                        label,
                        r["alg"].as_str().unwrap_or(""),
                        r["state"].as_str().unwrap_or(""),
                        r["location"].as_str().unwrap_or(""),
                        flag("sensitive"),
                        flag("extractable"),
                        flag("never_extractable"),
                        r["created"].as_str().unwrap_or("")
                    );
                }
            });
        }
        KeysCmd::Create { purpose, alg } => {
            let v =
                k.call(Method::POST, "/v1/admin/keys/create", Some(json!({"purpose": purpose, "alg": alg}))).await?;
            show(json, &v, |v| println!("created {}", label_of(v)));
        }
        KeysCmd::Rotate { purpose, officer } => request(k, "rotate", &purpose, &officer, json).await?,
        KeysCmd::Retire { label, officer } => request(k, "retire", &label, &officer, json).await?,
        KeysCmd::Destroy { label, officer } => request(k, "destroy", &label, &officer, json).await?,
        KeysCmd::ExportPublic { label, out } => {
            let l = vbank_hsm::KeyLabel::parse(&label)
                .with_context(|| format!("{label:?} is not a label such as vbank/evidence-seal/v1"))?;
            let v = k
                .call(Method::GET, &format!("/v1/admin/keys/{}/v{}/public", l.purpose.name(), l.version), None)
                .await?;
            let pem = v.as_str().unwrap_or_default().to_string();
            match out {
                Some(p) => std::fs::write(&p, &pem).with_context(|| format!("writing {}", p.display()))?,
                None => print!("{pem}"),
            }
        }
    }
    Ok(())
}

fn label_of(v: &Value) -> String {
    format!("vbank/{}/v{}", v["label"]["purpose"].as_str().unwrap_or(""), v["label"]["version"])
}

async fn request(k: &Keyd, action: &str, target: &str, o: &OfficerArgs, json: bool) -> Result<()> {
    let v = file_request(k, action, target, &o.officer, &o.key).await?;
    show(json, &v, print_request);
    Ok(())
}

/// File a dual-control request signed by `officer` (their approval counts); returns keyd's record of it.
pub(crate) async fn file_request(k: &Keyd, action: &str, target: &str, officer: &str, key: &Path) -> Result<Value> {
    let key = read_key(key)?;
    let mut idb = [0u8; 8];
    vbank_crypto::random(&mut idb)?;
    let id = to_hex(&idb);
    let expires = vbank_keyd::approvals::unix_now() + 24 * 3600;
    let sig = sign_hex(&key, officer, &message(&id, action, target, expires))?;
    let body = json!({"id": id, "action": action, "target": target, "expires_unix": expires, "officer": officer, "signature": sig});
    k.call(Method::POST, "/v1/admin/approvals", Some(body)).await
}

fn print_request(v: &Value) {
    let who: Vec<&str> =
        v["approvals"].as_array().into_iter().flatten().filter_map(|a| a["officer"].as_str()).collect();
    println!(
        "request {}: {} {} — {} (approved by {})",
        v["id"].as_str().unwrap_or(""),
        v["action"].as_str().unwrap_or(""),
        v["target"].as_str().unwrap_or(""),
        v["state"].as_str().unwrap_or(""),
        who.join(", ")
    );
    if let Some(r) = v["result"].as_str() {
        println!("  result: {r}");
    }
}

async fn approvals(k: &Keyd, cmd: ApprovalsCmd, json: bool) -> Result<()> {
    match cmd {
        ApprovalsCmd::List => {
            let v = k.call(Method::GET, "/v1/admin/approvals", None).await?;
            show(json, &v, |v| {
                println!("approvals required: {}", v["required"]);
                for r in v["requests"].as_array().into_iter().flatten() {
                    print_request(r);
                }
            });
        }
        ApprovalsCmd::Approve { id, officer } => decide(k, &id, &officer, false, json).await?,
        ApprovalsCmd::Reject { id, officer } => decide(k, &id, &officer, true, json).await?,
    }
    Ok(())
}

async fn decide(k: &Keyd, id: &str, o: &OfficerArgs, reject: bool, json: bool) -> Result<()> {
    let all = k.call(Method::GET, "/v1/admin/approvals", None).await?;
    let req = all["requests"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|r| r["id"] == id)
        .cloned()
        .with_context(|| format!("no request {id}"))?;
    let mut msg = message(
        id,
        req["action"].as_str().unwrap_or(""),
        req["target"].as_str().unwrap_or(""),
        req["expires_unix"].as_u64().unwrap_or(0),
    );
    if reject {
        msg = [b"reject\n".to_vec(), msg].concat();
    }
    let sig = sign_hex(&read_key(&o.key)?, &o.officer, &msg)?;
    let path = format!("/v1/admin/approvals/{id}/{}", if reject { "reject" } else { "approve" });
    let v = k.call(Method::POST, &path, Some(json!({"officer": o.officer, "signature": sig}))).await?;
    show(json, &v, print_request);
    Ok(())
}

async fn ceremony(k: &Keyd, cfg: &Config, officers: &[String], witnesses: &[String], json: bool) -> Result<()> {
    let mut list = Vec::new();
    for o in officers {
        let (name, path) = split_pair(o, "--officer")?;
        let pem = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        Sm2PublicKey::from_pem(&pem).map_err(|e| anyhow::anyhow!("{}: not an SM2 public key: {e}", path.display()))?;
        list.push(json!({"name": name, "public_pem": pem}));
    }
    let names: Vec<String> = list.iter().map(|o| o["name"].as_str().unwrap_or("").to_string()).collect();
    let msg = ceremony_message(&cfg.hsm.token_label, &names);
    let mut signed = Vec::new();
    for w in witnesses {
        let (name, path) = split_pair(w, "--witness")?;
        signed.push(json!({"officer": name, "signature": sign_hex(&read_key(&path)?, &name, &msg)?}));
    }
    let v = k.call(Method::POST, "/v1/admin/ceremony", Some(json!({"officers": list, "witnesses": signed}))).await?;
    show(json, &v, |v| {
        println!(
            "key ceremony on token {} — witnessed by {}",
            cfg.hsm.token_label,
            v["witnesses"].as_array().into_iter().flatten().filter_map(|w| w.as_str()).collect::<Vec<_>>().join(", ")
        );
        for key in v["keys"].as_array().into_iter().flatten() {
            println!(
                "  {:<26} {:<7} {:<17} KCV {}",
                label_of(key),
                key["alg"].as_str().unwrap_or(""),
                key["location"].as_str().unwrap_or(""),
                key["kcv"].as_str().unwrap_or("n/a")
            );
        }
        for pk in v["public_keys"].as_array().into_iter().flatten() {
            println!("\n{}\n{}", pk[0].as_str().unwrap_or(""), pk[1].as_str().unwrap_or("").trim_end());
        }
    });
    Ok(())
}

fn officer_keygen(name: &str, out: &Path, json: bool) -> Result<()> {
    std::fs::create_dir_all(out)?;
    let key_path = out.join(format!("{name}.key"));
    let pub_path = out.join(format!("{name}.pub.pem"));
    write_key_pair(&key_path, &pub_path)?;
    if json {
        println!("{}", json!({"key": key_path, "public": pub_path}));
    } else {
        println!("wrote {} (keep it secret) and {}", key_path.display(), pub_path.display());
    }
    Ok(())
}

/// Make an SM2 key pair: the private key as PKCS#8 PEM at `key_path` (0600, refusing to overwrite) and the public
/// key as PEM at `pub_path`. Officers' keys and the release key.
pub(crate) fn write_key_pair(key_path: &Path, pub_path: &Path) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let key = Sm2PrivateKey::generate()?;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(key_path)
        .with_context(|| format!("creating {} (it must not exist yet)", key_path.display()))?;
    f.write_all(key.to_pkcs8_pem()?.expose())?;
    std::fs::write(pub_path, key.public_key().to_pem()).with_context(|| format!("writing {}", pub_path.display()))?;
    Ok(())
}

fn audit_verify(log: &Path, public_keys: &[String], json: bool) -> Result<()> {
    let text = std::fs::read_to_string(log).with_context(|| format!("reading {}", log.display()))?;
    let mut keys = Vec::new();
    for pk in public_keys {
        let (label, path) = split_pair(pk, "--public-key")?;
        let pem = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        keys.push((label, Sm2PublicKey::from_pem(&pem).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?));
    }
    let r = audit::verify(&text, &keys);
    if json {
        println!("{}", serde_json::to_value(&r)?);
    } else if let Some((seq, why)) = &r.first_bad {
        println!("{}: FAILED at entry {seq}: {why}", log.display());
    } else {
        println!(
            "{}: OK — {} entries, {} seal(s) verified, {} entries after the last seal",
            log.display(),
            r.entries,
            r.seals,
            r.unsealed_tail
        );
    }
    if r.ok() { Ok(()) } else { std::process::exit(1) }
}
