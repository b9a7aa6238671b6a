//! The recorder end to end on `vbank up`: after the key ceremony, a recording opened for a call joins it through the
//! gateway as the hidden recorder, captures a str0m publisher's audio, and when closed is sealed by keyd; the
//! recording verifies with `vbank recordings verify` and its seal with stock OpenSSL. A recording that cannot join
//! is refused with a message that says the call must not start.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use common::{VBANK, drive, free_ports, negotiate};
use serde_json::{Value, json};
use str0m::media::Direction;
use vbank_config::{Config, Service};
use vbank_service::client::{self, Connection, Method, StatusCode};

fn vbank(cfg: &Path, args: &[&str]) -> Output {
    Command::new(VBANK).args(args).arg("--config").arg(cfg).output().unwrap()
}

fn ok_json(cfg: &Path, args: &[&str]) -> Value {
    let mut a = args.to_vec();
    a.push("--json");
    let out = vbank(cfg, &a);
    assert!(out.status.success(), "vbank {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
}

/// Two officers hold the ceremony (2 of 2), which creates the recording KEK and the evidence-seal key.
fn ceremony(cfg: &Path, data: &Path) {
    let dir = data.join("officers");
    let mut args: Vec<String> = vec!["hsm".into(), "ceremony".into()];
    for name in ["alice", "bob"] {
        ok_json(cfg, &["hsm", "officer-keygen", "--name", name, "--out", dir.to_str().unwrap()]);
        args.extend(["--officer".into(), format!("{name}={}", dir.join(format!("{name}.pub.pem")).display())]);
        args.extend(["--witness".into(), format!("{name}={}", dir.join(format!("{name}.key")).display())]);
    }
    ok_json(cfg, &args.iter().map(String::as_str).collect::<Vec<_>>());
}

/// Stop a `vbank up` node with SIGTERM; it must exit cleanly.
fn stop_node(child: &mut std::process::Child) {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGTERM).unwrap();
    assert!(child.wait().unwrap().success());
}

/// A connection to the node's public listener, as a browser or WHIP client makes it.
async fn connect_public(cfg: &Config, public: u16) -> Connection {
    let tls = vbank_tls::anonymous_client_config(&cfg.tls).unwrap();
    Connection::open(tls, format!("127.0.0.1:{public}").parse().unwrap(), "localhost", Duration::from_secs(10))
        .await
        .unwrap()
}

/// Publish over WHIP at `path` once calls can be recorded: after the ceremony the gateway learns the new call-token
/// key within seconds, and until then joins that need 双录 are refused. A recordable call gets past recording to the
/// SDP check, which refuses the empty probe offer with 400.
async fn join_once_recordable(
    conn: &mut Connection,
    path: &str,
) -> (str0m::Rtc, std::net::UdpSocket, String, str0m::media::Mid) {
    let offer = "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n";
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (s, _, _) = conn
            .request_with(Method::POST, "/whip/probe", &[("content-type", "application/sdp")], Some(offer.into()))
            .await
            .unwrap();
        if s == StatusCode::BAD_REQUEST {
            return negotiate(conn, path, Direction::SendOnly).await;
        }
        assert!(std::time::Instant::now() < deadline, "joins still refused 20 s after the ceremony");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Publish audio on `mid` from a thread until the returned flag is set.
fn publish(
    rtc: str0m::Rtc,
    sock: std::net::UdpSocket,
    mid: str0m::media::Mid,
) -> (Arc<AtomicBool>, std::thread::JoinHandle<()>) {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    (stop, std::thread::spawn(move || drive(rtc, sock, Some(mid), Arc::new(AtomicUsize::new(0)), flag)))
}

async fn recorder_api(c: &Config, path: &str, body: Value) -> (StatusCode, Value) {
    let tls = vbank_tls::service_client_config(&c.tls, Service::Gateway).unwrap();
    let name = vbank_tls::service_dns_name(Service::Recorder);
    let (s, b) = client::call(
        tls,
        c.recorder.listen,
        &name,
        Method::POST,
        path,
        Some(body.to_string().into()),
        Duration::from_secs(20),
    )
    .await
    .unwrap();
    (s, serde_json::from_slice(&b).unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_is_recorded_sealed_and_verifies_offline() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let (public, base) = free_ports();
    let (mut child, _) = common::spawn_up(&data, public, base, Stdio::null());
    let cfg_path: PathBuf = data.join("vbank.toml");
    let (cfg, _) = vbank_config::load(&cfg_path).unwrap();

    // Before the ceremony there is no recording key: the recording, and so the call, is refused.
    let (s, v) = recorder_api(&cfg, "/v1/recordings", json!({"call": "call-rec", "token": "x"})).await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{v}");
    assert!(
        v["error"].as_str().unwrap().contains("must not start") && v["error"].as_str().unwrap().contains("ceremony"),
        "{v}"
    );

    ceremony(&cfg_path, &data);

    // A customer publishes audio over WHIP.
    let mut conn = connect_public(&cfg, public).await;
    let (rtc, sock, _, mid) = negotiate(&mut conn, "/whip/call-rec", Direction::SendOnly).await;
    let (stop, publisher) = publish(rtc, sock, mid);

    // A bad token: the gateway refuses the recorder, so the recording is refused.
    let (s, v) = recorder_api(&cfg, "/v1/recordings", json!({"call": "call-rec", "token": "not-a-token"})).await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{v}");
    assert!(v["error"].as_str().unwrap().contains("refused the recorder"), "{v}");

    let token = ok_json(&cfg_path, &["token", "--room", "call-rec", "--role", "recorder", "--ttl", "10m"]);
    // The gateway learns the ceremony's call-token key within seconds.
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let (s, v) = loop {
        let (s, v) = recorder_api(&cfg, "/v1/recordings", json!({"call": "call-rec", "token": token["token"]})).await;
        if s == StatusCode::CREATED || std::time::Instant::now() > deadline || !v.to_string().contains("unknown key") {
            break (s, v);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let id = v["id"].as_str().unwrap().to_string();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (s, v) = recorder_api(&cfg, &format!("/v1/recordings/{id}/finish"), json!({})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["tracks"], 1, "{v}");
    stop.store(true, Ordering::Relaxed);
    publisher.join().unwrap();

    let dir = data.join("recordings").join(&id);
    let pem = tmp.path().join("evidence-seal.pem");
    ok_json(
        &cfg_path,
        &["hsm", "keys", "export-public", v["seal_key"].as_str().unwrap(), "--out", pem.to_str().unwrap()],
    );
    let report = verified(&dir, &pem);
    assert_eq!(report["seal"], "verified (SM2, vbank-evidence)");
    let manifest: Value = serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap();
    let records: u64 = manifest["segments"].as_array().unwrap().iter().map(|s| s["records"].as_u64().unwrap()).sum();
    assert!(records >= 50, "{records} audio packets recorded in 3 s: {manifest}");
    assert!(common::openssl_sm2_verifies(
        &pem,
        &dir.join("manifest.sig"),
        &dir.join("manifest.json"),
        "vbank-evidence"
    ));
    // No plaintext media on disk: the publisher's Opus frames (F8 FF FE) never appear in a segment.
    for seg in std::fs::read_dir(dir.join("tracks/0")).unwrap() {
        let bytes = std::fs::read(seg.unwrap().path()).unwrap();
        assert!(!bytes.windows(3).any(|w| w == [0xF8, 0xFF, 0xFE]));
    }

    stop_node(&mut child);
}

/// With `[gateway] recording = "required"` a call that cannot be recorded does not start; once keys exist, the
/// gateway opens the recording before the first participant joins and closes and seals it when the last one leaves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_refuses_an_unrecordable_call_and_records_the_rest() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let (public, base) = free_ports();
    // A first start writes the development configuration; make recording required, as in production, and restart.
    let (mut child, _) = common::spawn_up(&data, public, base, Stdio::null());
    stop_node(&mut child);
    let cfg_path = data.join("vbank.toml");
    let text = std::fs::read_to_string(&cfg_path)
        .unwrap()
        .replace("recording = \"when-available\"", "recording = \"required\"");
    std::fs::write(&cfg_path, text).unwrap();
    let (mut child, _) = common::spawn_up(&data, public, base, Stdio::null());

    let (cfg, _) = vbank_config::load(&cfg_path).unwrap();
    let mut conn = connect_public(&cfg, public).await;
    let offer = "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n";
    let (s, _, body) = conn
        .request_with(Method::POST, "/whip/call-9", &[("content-type", "application/sdp")], Some(offer.into()))
        .await
        .unwrap();
    let why = String::from_utf8_lossy(&body);
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{why}");
    assert!(why.contains("cannot be recorded") && why.contains("cannot start"), "{why}");

    ceremony(&cfg_path, &data);
    let (rtc, sock, location, mid) = join_once_recordable(&mut conn, "/whip/call-9").await;
    let (stop, publisher) = publish(rtc, sock, mid);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (s, _, _) = conn.request_with(Method::DELETE, &location, &[], None).await.unwrap();
    assert_eq!(s, StatusCode::OK);
    stop.store(true, Ordering::Relaxed);
    publisher.join().unwrap();

    // The call is over: its recording is closed and sealed.
    let recordings = data.join("recordings");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let sealed = loop {
        let found: Vec<PathBuf> = std::fs::read_dir(&recordings)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| std::fs::read_to_string(p.join("recording.json")).unwrap_or_default().contains("\"call-9\""))
            .filter(|p| p.join("manifest.sig").exists())
            .collect();
        if let Some(p) = found.first() {
            break p.clone();
        }
        assert!(std::time::Instant::now() < deadline, "call-9's recording was not sealed after the call ended");
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let out = Command::new(VBANK).args(["--json", "recordings", "verify", sealed.to_str().unwrap()]).output().unwrap();
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(report["tracks"], 2, "the microphone and the call's events: {report}");
    stop_node(&mut child);

    // A recordings disk short of space refuses new recordings, and so the calls that need them; /readyz says why.
    let text = std::fs::read_to_string(&cfg_path).unwrap().replace("min_free_mb = 256", "min_free_mb = 1000000000000");
    std::fs::write(&cfg_path, text).unwrap();
    let (mut child, _) = common::spawn_up(&data, public, base, Stdio::null());
    let tls = vbank_tls::anonymous_client_config(&cfg.tls).unwrap();
    let mut conn = connect_public(&cfg, public).await;
    let (s, _, body) = conn
        .request_with(Method::POST, "/whip/call-10", &[("content-type", "application/sdp")], Some(offer.into()))
        .await
        .unwrap();
    let why = String::from_utf8_lossy(&body);
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{why}");
    assert!(why.contains("recordings disk") && why.contains("min_free_mb"), "{why}");
    let (s, ready) = common::get(&tls, cfg.recorder.admin_listen, "localhost", "/readyz").await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{ready}");
    assert!(ready.contains("min_free_mb"), "{ready}");
    stop_node(&mut child);
}

/// `vbank recordings verify` of the recording in `dir` against the seal key in `pem`: its report, which must be ok.
fn verified(dir: &Path, pem: &Path) -> Value {
    let out = Command::new(VBANK)
        .args(["--json", "recordings", "verify", dir.to_str().unwrap(), "--public-key", pem.to_str().unwrap()])
        .output()
        .unwrap();
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["ok"], true, "{report}");
    report
}

/// Recordings of `call` under `recordings`, oldest first.
fn recordings_of(recordings: &Path, call: &str) -> Vec<PathBuf> {
    let mut found: Vec<(u64, PathBuf)> = std::fs::read_dir(recordings)
        .map(|d| d.map(|e| e.unwrap().path()).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .filter_map(|p| {
            let h: Value = serde_json::from_slice(&std::fs::read(p.join("recording.json")).ok()?).ok()?;
            (h["call"] == call).then(|| (h["started_us"].as_u64().unwrap_or(0), p))
        })
        .collect();
    found.sort();
    found.into_iter().map(|(_, p)| p).collect()
}

/// A call with a WHIP publisher on a fresh node whose recorder suffers `fault` (given its pid) mid-call; the call
/// goes on until the recording has been continued, then ends. Returns the sealed recording's verify report, when the
/// fault began and when the continuation was seen (Unix µs). There must be exactly one recording of the call.
async fn recorder_fault_mid_call(fault: impl FnOnce(nix::unistd::Pid)) -> (Value, u64, u64) {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let (public, base) = free_ports();
    let (mut child, _) = common::spawn_up(&data, public, base, Stdio::null());
    let cfg_path = data.join("vbank.toml");
    let (cfg, _) = vbank_config::load(&cfg_path).unwrap();
    ceremony(&cfg_path, &data);
    let mut conn = connect_public(&cfg, public).await;
    let recordings = data.join("recordings");
    // Join once the gateway knows the ceremony's token key (until then this development node records nothing).
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let (rtc, sock, location, mid) = loop {
        let joined = negotiate(&mut conn, "/whip/call-k", Direction::SendOnly).await;
        if !recordings_of(&recordings, "call-k").is_empty() {
            break joined;
        }
        conn.request_with(Method::DELETE, &joined.2, &[], None).await.unwrap();
        assert!(std::time::Instant::now() < deadline, "no recording 20 s after the ceremony");
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let (stop, publisher) = publish(rtc, sock, mid);
    tokio::time::sleep(Duration::from_secs(3)).await;

    let recorder = common::live_processes_mentioning(&cfg_path)
        .into_iter()
        .find(|p| p.contains(" recorder "))
        .expect("vbank up runs a recorder");
    let pid: i32 = recorder.split(':').next().unwrap().parse().unwrap();
    let unix_us = || std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_micros() as u64;
    let fault_at = unix_us();
    fault(nix::unistd::Pid::from_raw(pid));

    // The call goes on: the recorder continues the recording once the gateway asks.
    let header =
        |dir: &Path| -> Value { serde_json::from_slice(&std::fs::read(dir.join("recording.json")).unwrap()).unwrap() };
    let dir = recordings_of(&recordings, "call-k").remove(0);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while header(&dir)["gaps"].as_array().is_none_or(Vec::is_empty) {
        assert!(std::time::Instant::now() < deadline, "the recording was not continued within 60 s");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let continued_at = unix_us();
    tokio::time::sleep(Duration::from_secs(3)).await;
    conn.request_with(Method::DELETE, &location, &[], None).await.unwrap();
    stop.store(true, Ordering::Relaxed);
    publisher.join().unwrap();

    let pem = tmp.path().join("evidence-seal.pem");
    ok_json(&cfg_path, &["hsm", "keys", "export-public", "vbank/evidence-seal/v1", "--out", pem.to_str().unwrap()]);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !dir.join("manifest.sig").exists() {
        assert!(std::time::Instant::now() < deadline, "the continued recording was not sealed");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(recordings_of(&recordings, "call-k"), std::slice::from_ref(&dir), "one recording, continued");
    let report = verified(&dir, &pem);
    stop_node(&mut child);
    (report, fault_at, continued_at)
}

/// The microphone's one gap in `report`: (from, to, reason), checked to be under a second that the backlog closed
/// (before the continuation was seen), starting less than a second before the fault.
fn one_short_gap(report: &Value, fault_at: u64, continued_at: u64) -> String {
    let gaps = report["gaps"].as_array().unwrap();
    assert_eq!(gaps.len(), 1, "the microphone's one gap: {report}");
    let (from, to) = (gaps[0]["from_us"].as_u64().unwrap(), gaps[0]["to_us"].as_u64().unwrap());
    assert!(fault_at.saturating_sub(from) < 1_000_000, "{} µs before the fault lost: {report}", fault_at - from);
    assert!(to - from <= 1_000_000, "{} µs of media missing across the fault: {report}", to - from);
    assert!(to < continued_at, "the backlog, not the live media after the rejoin, closed the gap: {report}");
    gaps[0]["reason"].as_str().unwrap().to_string()
}

/// `kill -9` of the recorder mid-call: `vbank up` restarts it, the gateway drops its silent session and asks the new
/// one to continue the same recording, and the media of the time it was away comes from the gateway's backlog: the
/// one gap noted is under a second, and the recording goes on and is sealed when the call ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recorder_killed_mid_call_continues_the_same_recording_losing_under_a_second() {
    let (report, fault_at, continued_at) =
        recorder_fault_mid_call(|pid| nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL).unwrap()).await;
    let reason = one_short_gap(&report, fault_at, continued_at);
    assert!(reason.contains("restarted") && reason.contains("backlog"), "{report}");
}

/// A recorder that stalls for 8 s (SIGSTOP, then SIGCONT) keeps running but its session is dropped as silent; when
/// the gateway asks, the same process stops that capture and rejoins into the same recording, the backlog first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recorder_that_stalls_mid_call_rejoins_into_the_same_recording() {
    let (report, fault_at, continued_at) = recorder_fault_mid_call(|pid| {
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGSTOP).unwrap();
        std::thread::sleep(Duration::from_secs(8));
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGCONT).unwrap();
    })
    .await;
    let reason = one_short_gap(&report, fault_at, continued_at);
    assert!(reason.contains("session was lost") && reason.contains("backlog"), "{report}");
}

/// Fill the filesystem holding `dir` until it refuses, then give back `leave` bytes: another writer filled the disk.
fn fill(dir: &Path, leave: u64) -> PathBuf {
    use std::io::Write;
    let path = dir.join("filler");
    let mut f = std::fs::File::create(&path).unwrap();
    let chunk = vec![0x5a; 64 * 1024];
    let mut written = 0u64;
    loop {
        match f.write(&chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => written += n as u64,
        }
    }
    f.set_len(written.saturating_sub(leave)).unwrap();
    path
}

/// A recordings disk that fills up mid-call: the recorder stops writing, keeps every whole record, and (once space is
/// back) closes and seals the recording with the gap and its reason; meanwhile new recordings, and so new calls that
/// need them, are refused with a reason, and /readyz says why. Needs root for its own small tmpfs (CI runs as root).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disk_that_fills_mid_call_corrupts_nothing_and_refuses_new_calls() {
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!("skipped: mounting a tmpfs needs root");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let disk = tmp.path().join("recdisk");
    std::fs::create_dir(&disk).unwrap();
    let mounted = Command::new("mount").args(["-t", "tmpfs", "-o", "size=8m,mode=0700", "tmpfs"]).arg(&disk).status();
    assert!(mounted.unwrap().success(), "mount tmpfs");
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
    let _unmount = Unmount(disk.clone());

    let (public, base) = free_ports();
    let (mut child, _) = common::spawn_up(&data, public, base, Stdio::null());
    stop_node(&mut child);
    let cfg_path = data.join("vbank.toml");
    let text = std::fs::read_to_string(&cfg_path)
        .unwrap()
        .replace(&format!("dir = \"{}/recordings\"", data.display()), &format!("dir = \"{}\"", disk.display()))
        .replace("min_free_mb = 256", "min_free_mb = 1")
        .replace("recording = \"when-available\"", "recording = \"required\"");
    std::fs::write(&cfg_path, text).unwrap();
    let (child, _) = common::spawn_up(&data, public, base, Stdio::null());
    // Stopped even when an assertion fails, so no node outlives the test.
    struct Node(std::process::Child);
    impl Drop for Node {
        fn drop(&mut self) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(self.0.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
            let _ = self.0.wait();
        }
    }
    let _node = Node(child);
    let (cfg, _) = vbank_config::load(&cfg_path).unwrap();
    assert_eq!(cfg.recorder.dir, disk);
    ceremony(&cfg_path, &data);

    let mut conn = connect_public(&cfg, public).await;
    let (rtc, sock, _location, mid) = join_once_recordable(&mut conn, "/whip/call-full").await;
    let (stop, publisher) = publish(rtc, sock, mid);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rec = recordings_of(&disk, "call-full").pop().expect("the call is recorded");

    // Another writer fills the disk; the recorder's next writes fail.
    let filler = fill(&disk, 0);
    let (admin_tls, ready) = (vbank_tls::anonymous_client_config(&cfg.tls).unwrap(), cfg.recorder.admin_listen);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (s, why) = common::get(&admin_tls, ready, "localhost", "/readyz").await;
        if s == StatusCode::SERVICE_UNAVAILABLE && why.contains("min_free_mb") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "/readyz did not report the full disk: {s} {why}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // A new call that needs 双录 is refused, and says why.
    let offer = "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n";
    let (s, _, body) = conn
        .request_with(Method::POST, "/whip/call-new", &[("content-type", "application/sdp")], Some(offer.into()))
        .await
        .unwrap();
    let why = String::from_utf8_lossy(&body);
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{why}");
    assert!(why.contains("recordings disk"), "{why}");

    // Space comes back: the stopped recording is closed, sealed, and verifies, with the gap and its reason.
    std::fs::remove_file(&filler).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !rec.join("manifest.sig").exists() {
        assert!(std::time::Instant::now() < deadline, "the recording was not closed and sealed once space was back");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    stop.store(true, Ordering::Relaxed);
    publisher.join().unwrap();
    let out = Command::new(VBANK).args(["--json", "recordings", "verify", rec.to_str().unwrap()]).output().unwrap();
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["ok"], true, "{report}");
    let gap = &report["gaps"][0];
    assert!(gap["reason"].as_str().unwrap().contains("No space left"), "{report}");
    let manifest: Value = serde_json::from_slice(&std::fs::read(rec.join("manifest.json")).unwrap()).unwrap();
    let records: u64 = manifest["segments"].as_array().unwrap().iter().map(|s| s["records"].as_u64().unwrap()).sum();
    assert!(records >= 50, "the packets before the disk filled are kept: {records}");
}
