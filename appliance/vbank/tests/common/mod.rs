//! Helpers shared by the binary's end-to-end tests.
#![allow(dead_code)]

use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Duration;

use vbank_service::client::{self, ClientConfig, Method, StatusCode};

pub const VBANK: &str = env!("CARGO_BIN_EXE_vbank");

/// A public port and an internal base whose next four ports (three TCP listeners, one UDP media socket) are free.
///
/// Ports come from a per-process counter in 20000–32000, below Linux's ephemeral range, so tests running in parallel
/// never get the same port and outgoing connections never take one from under a test.
pub fn free_ports() -> (u16, u16) {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    // Different test binaries start at different places (they run one after another, but a port in TIME_WAIT or a
    // leftover listener from an earlier binary is skipped by the bind check anyway).
    let _ =
        NEXT.compare_exchange(0, 20_000 + (std::process::id() % 1000) as u16 * 10, Ordering::SeqCst, Ordering::SeqCst);
    for _ in 0..200 {
        let mut base = NEXT.fetch_add(6, Ordering::SeqCst);
        if base > 32_000 {
            NEXT.store(20_000, Ordering::SeqCst);
            base = NEXT.fetch_add(6, Ordering::SeqCst);
        }
        let all_free = (base..=base + 5)
            .all(|p| TcpListener::bind(("0.0.0.0", p)).is_ok() && std::net::UdpSocket::bind(("0.0.0.0", p)).is_ok());
        if all_free {
            return (base + 5, base);
        }
    }
    panic!("no free ports in 20000-32000");
}

pub async fn get(tls: &Arc<ClientConfig>, addr: SocketAddr, name: &str, path: &str) -> (StatusCode, String) {
    let (s, body) = client::call(tls.clone(), addr, name, Method::GET, path, None, Duration::from_secs(10))
        .await
        .unwrap_or_else(|e| panic!("GET {path} on {addr}: {e}"));
    (s, String::from_utf8_lossy(&body).into_owned())
}

/// Live (non-zombie) processes whose command line mentions `needle`.
pub fn live_processes_mentioning(needle: &Path) -> Vec<String> {
    let needle = needle.to_string_lossy().to_string();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let pid = entry.file_name().to_string_lossy().to_string();
        if !pid.chars().all(|c| c.is_ascii_digit()) || pid == std::process::id().to_string() {
            continue;
        }
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        let zombie = stat.rsplit(')').next().is_some_and(|rest| rest.trim_start().starts_with('Z'));
        if cmdline.contains(&needle) && !zombie {
            found.push(format!("{pid}: {cmdline}"));
        }
    }
    found
}

/// Whether the admin listener at `admin` answers `/readyz` with success.
pub async fn is_ready(tls: &Arc<ClientConfig>, admin: SocketAddr) -> bool {
    let r = client::call(tls.clone(), admin, "localhost", Method::GET, "/readyz", None, Duration::from_secs(2)).await;
    matches!(r, Ok((s, _)) if s.is_success())
}

/// Write a configuration for one node in `dir` with its listeners on loopback at `public` and `base`+1..3, plus
/// `extra` TOML (sections other than [tls], [gateway], [keyd]); make its development certificates; load it.
pub fn node_config(dir: &Path, public: u16, base: u16, extra: &str) -> (std::path::PathBuf, vbank_config::Config) {
    let path = dir.join("vbank.toml");
    let text = format!(
        "{extra}\n[tls]\ndir = \"{d}/tls\"\n[gateway]\nlisten = \"127.0.0.1:{public}\"\nadmin_listen = \"127.0.0.1:{a}\"\nmedia_listen = \"127.0.0.1:{m}\"\n\
         [keyd]\nlisten = \"127.0.0.1:{k}\"\nadmin_listen = \"127.0.0.1:{ka}\"\n",
        d = dir.display(),
        a = base + 1,
        k = base + 2,
        ka = base + 3,
        m = base + 4,
    );
    std::fs::write(&path, text).unwrap();
    let (cfg, _) = vbank_config::load(&path).unwrap();
    vbank_tls::devca::ensure_dev_pki(&cfg.tls, &["localhost".into()]).unwrap();
    (path, cfg)
}

/// `vbank up --json` on `public`/`base` in `data`, with stderr as given; returns once it printed its URLs.
pub fn spawn_up(
    data: &Path,
    public: u16,
    base: u16,
    stderr: std::process::Stdio,
) -> (std::process::Child, serde_json::Value) {
    use std::io::{BufRead, BufReader};
    let mut child = std::process::Command::new(VBANK)
        .args(["up", "--json", "--ready-timeout", "60", "--data-dir"])
        .arg(data)
        .args(["--port", &public.to_string(), "--internal-port-base", &base.to_string()])
        .stdout(std::process::Stdio::piped())
        .stderr(stderr)
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let urls = serde_json::from_str(&line).unwrap_or_else(|e| panic!("vbank up did not come up ({e}): {line:?}"));
    (child, urls)
}

/// Whether stock OpenSSL verifies `sig` (DER) over `msg` with the SM2 public key in `pem` and user ID `distid`, as
/// an auditor would without vbank.
pub fn openssl_sm2_verifies(pem: &Path, sig: &Path, msg: &Path, distid: &str) -> bool {
    let out = std::process::Command::new("openssl")
        .args([
            "pkeyutl",
            "-verify",
            "-rawin",
            "-digest",
            "sm3",
            "-pkeyopt",
            &format!("distid:{distid}"),
            "-pubin",
            "-inkey",
        ])
        .arg(pem)
        .arg("-sigfile")
        .arg(sig)
        .arg("-in")
        .arg(msg)
        .output()
        .expect("openssl runs");
    String::from_utf8_lossy(&out.stdout).contains("Signature Verified Successfully")
}
