//! Helpers shared by the binary's end-to-end tests.
#![allow(dead_code)]

use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use str0m::change::SdpAnswer;
use str0m::media::{Direction, Frequency, MediaKind, MediaTime, Mid};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, Input, Output, Rtc};
use vbank_service::client::{self, ClientConfig, Connection, Method, StatusCode};

pub const VBANK: &str = env!("CARGO_BIN_EXE_vbank");

/// A public port and an internal base whose next six ports (five TCP listeners, one UDP media socket) are free.
///
/// Ports come from a per-process counter in 20000–32000, below Linux's ephemeral range, so tests running in parallel
/// never get the same port and outgoing connections never take one from under a test.
pub fn free_ports() -> (u16, u16) {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    // Different test binaries start at different places (they run one after another, but a port in TIME_WAIT or a
    // leftover listener from an earlier binary is skipped by the bind check anyway).
    let _ =
        NEXT.compare_exchange(0, 20_000 + (std::process::id() % 1000) as u16 * 12, Ordering::SeqCst, Ordering::SeqCst);
    for _ in 0..200 {
        let mut base = NEXT.fetch_add(12, Ordering::SeqCst);
        if base > 32_000 {
            NEXT.store(20_000, Ordering::SeqCst);
            base = NEXT.fetch_add(12, Ordering::SeqCst);
        }
        let all_free = (base..=base + 11)
            .all(|p| TcpListener::bind(("0.0.0.0", p)).is_ok() && std::net::UdpSocket::bind(("0.0.0.0", p)).is_ok());
        if all_free {
            return (base + 11, base);
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
/// `extra` TOML (sections other than [tls], [gateway], [keyd], [recorder]); make its development certificates; load it.
pub fn node_config(dir: &Path, public: u16, base: u16, extra: &str) -> (std::path::PathBuf, vbank_config::Config) {
    let path = dir.join("vbank.toml");
    let text = format!(
        "{extra}\n[tls]\ndir = \"{d}/tls\"\n[gateway]\nlisten = \"127.0.0.1:{public}\"\nadmin_listen = \"127.0.0.1:{a}\"\nmedia_listen = \"127.0.0.1:{m}\"\n\
         [keyd]\nlisten = \"127.0.0.1:{k}\"\nadmin_listen = \"127.0.0.1:{ka}\"\n\
         [recorder]\nlisten = \"127.0.0.1:{r}\"\nadmin_listen = \"127.0.0.1:{ra}\"\n",
        d = dir.display(),
        a = base + 1,
        k = base + 2,
        ka = base + 3,
        m = base + 4,
        r = base + 5,
        ra = base + 6,
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

/// Make an offer with one audio m-line in `dir`, POST it to `path`, apply the answer. Returns the peer and Location.
pub async fn negotiate(conn: &mut Connection, path: &str, dir: Direction) -> (Rtc, UdpSocket, String, Mid) {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut rtc = Rtc::builder().build(Instant::now());
    rtc.add_local_candidate(Candidate::host(sock.local_addr().unwrap(), "udp").unwrap());
    let mut api = rtc.sdp_api();
    let mid = api.add_media(MediaKind::Audio, dir, Some("s".into()), None, None);
    let (offer, pending) = api.apply().unwrap();
    let (status, headers, body) = conn
        .request_with(Method::POST, path, &[("content-type", "application/sdp")], Some(offer.to_sdp_string().into()))
        .await
        .unwrap();
    assert_eq!(status, StatusCode::CREATED, "{}", String::from_utf8_lossy(&body));
    assert_eq!(headers["content-type"], "application/sdp");
    let location = headers["location"].to_str().unwrap().to_string();
    let answer = SdpAnswer::from_sdp_string(std::str::from_utf8(&body).unwrap()).unwrap();
    rtc.sdp_api().accept_answer(pending, answer).unwrap();
    (rtc, sock, location, mid)
}

/// Run a peer until `stop`: publish a 20 ms Opus frame every 20 ms once connected (if `publish`), count media received.
pub fn drive(mut rtc: Rtc, sock: UdpSocket, publish: Option<Mid>, received: Arc<AtomicUsize>, stop: Arc<AtomicBool>) {
    let local = sock.local_addr().unwrap();
    let mut buf = vec![0u8; 2000];
    let mut connected = false;
    let mut next_frame = Instant::now();
    let mut rtp = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let timeout = loop {
            match rtc.poll_output().unwrap() {
                Output::Transmit(t) => {
                    sock.send_to(&t.contents, t.destination).unwrap();
                }
                Output::Timeout(t) => break t,
                Output::Event(Event::Connected) => connected = true,
                Output::Event(Event::MediaData(_)) => {
                    received.fetch_add(1, Ordering::Relaxed);
                }
                Output::Event(_) => {}
            }
        };
        let now = Instant::now();
        if publish.is_some() && connected && now >= next_frame {
            if let Some(w) = publish.and_then(|m| rtc.writer(m)) {
                let pt = w.payload_params().next().unwrap().pt();
                w.write(pt, now, MediaTime::new(rtp, Frequency::FORTY_EIGHT_KHZ), vec![0xF8, 0xFF, 0xFE]).unwrap();
                rtp += 960;
            }
            next_frame = now + Duration::from_millis(20);
            continue;
        }
        let wait = timeout
            .min(next_frame)
            .saturating_duration_since(now)
            .clamp(Duration::from_millis(1), Duration::from_millis(20));
        sock.set_read_timeout(Some(wait)).unwrap();
        match sock.recv_from(&mut buf) {
            Ok((n, source)) => {
                let contents = buf[..n].try_into().unwrap();
                rtc.handle_input(Input::Receive(
                    Instant::now(),
                    Receive { proto: Protocol::Udp, source, destination: local, contents },
                ))
                .unwrap();
            }
            Err(_) => rtc.handle_input(Input::Timeout(Instant::now())).unwrap(),
        }
    }
}

/// A child process (`vbank up`, a lone service) stopped with SIGTERM when the test ends, passed or not.
pub struct StopOnDrop(pub std::process::Child);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        let _ =
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.0.id() as i32), nix::sys::signal::Signal::SIGTERM);
        let _ = self.0.wait();
    }
}

/// `vbank --config <config> <args>`, its output.
pub fn vbank_at(config: &Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new(VBANK)
        .arg("--config")
        .arg(config)
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap()
}

/// The same with `--json`, required to succeed; its JSON.
pub fn ok_json_at(config: &Path, args: &[&str]) -> serde_json::Value {
    let out = vbank_at(config, &[&["--json"], args].concat());
    assert!(out.status.success(), "vbank {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
}
