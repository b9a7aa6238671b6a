//! Drill `recorder-crash`: the recorder is killed (`kill -9`) in the middle of a recorded call carrying audio and
//! video (the gateway benchmark's load generator publishes over WHIP). Objectives: the supervisor restarts it, the
//! gateway has it continue the same recording, the media of the time it was away comes from the gateway's backlog
//! so at most 1 s of media is missing on any track, nothing before the kill beyond the last second is lost, and the
//! recording closes sealed and verifies.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, Result, bail};
use serde_json::Value;
use str0m::media::Direction;
use vbank_service::client::{Connection, Method};

use super::report::{Recorder, Report};
use super::scratch::{PUBLIC_PORT, Scratch};
use crate::bench::gateway::load::{self, Generator, Peer, Window};

const LOST_GOAL_US: u64 = 1_000_000;
/// Within the gateway's default backlog (`[gateway] recorder_backlog_s`), so nothing is lost.
const CONTINUE_GOAL: Duration = Duration::from_secs(15);
const CALL: &str = "drill-recorder-crash";

fn now_us() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros() as u64)
}

/// The recordings of `call` in `dir`.
pub(super) fn recordings_of(dir: &Path, call: &str) -> Vec<PathBuf> {
    let header =
        |p: &Path| -> Option<Value> { serde_json::from_slice(&std::fs::read(p.join("recording.json")).ok()?).ok() };
    let entries = std::fs::read_dir(dir).into_iter().flatten().flatten().map(|e| e.path());
    entries.filter(|p| header(p).is_some_and(|h| h["call"] == call)).collect()
}

/// Run it in `work`.
pub fn run(work: &Path, signer: &str) -> Result<Report> {
    let mut r = Recorder::new(
        "recorder-crash",
        "A scratch appliance records a call in which a publisher sends audio and video. The recorder process is \
         killed with SIGKILL mid-call; its supervisor restarts it. Nobody else does anything.",
        signer,
    );
    let data = work.join("node");
    let mut node = Scratch::start(&data, Duration::from_secs(240))?;
    node.ceremony(work, 2)?;
    let (cfg, _) = vbank_config::load(&node.config).map_err(|e| anyhow::anyhow!("{e}"))?;
    let recordings = cfg.recorder.dir.clone();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;

    let (tx, rx) = std::sync::mpsc::channel::<Peer>();
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let generator = std::thread::spawn(move || -> Result<()> {
        let mut g = Generator::new(rx)?;
        g.connect(Duration::from_secs(30)).context("the publisher's media did not flow")?;
        while !flag.load(Ordering::Relaxed) {
            g.run_until(Instant::now() + Duration::from_millis(200), &mut Window::default())?;
        }
        Ok(())
    });
    let tls = vbank_tls::anonymous_client_config(&cfg.tls)?;
    let mut conn =
        rt.block_on(Connection::open(tls, ([127, 0, 0, 1], PUBLIC_PORT).into(), "localhost", Duration::from_secs(10)))?;
    // Publish once the gateway records calls (it needs the ceremony's call-token key first).
    let deadline = Instant::now() + Duration::from_secs(30);
    let location = loop {
        let (mut rtc, sock) = load::peer(std::net::Ipv4Addr::LOCALHOST.into())?;
        let (audio, video, sdp, pending) = load::offer(&mut rtc, Direction::SendOnly)?;
        let (answer, location) =
            rt.block_on(crate::bench::gateway::exchange(&mut conn, &format!("/whip/{CALL}"), sdp.to_sdp_string()))?;
        if !recordings_of(&recordings, CALL).is_empty() {
            rtc.sdp_api().accept_answer(pending, answer)?;
            tx.send(Peer::publisher(rtc, sock, 0, audio, video))?;
            break location;
        }
        rt.block_on(conn.request_with(Method::DELETE, &location, &[], None))?;
        if Instant::now() > deadline {
            bail!("the scratch gateway did not record a call within 30 s of the ceremony");
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    drop(tx);
    let dir = recordings_of(&recordings, CALL).remove(0);
    std::thread::sleep(Duration::from_secs(5));
    let before = super::service_pid(&node.config, "recorder").context("cannot find the scratch recorder")?;
    r.step(format!("call on: audio and video recorded in {} (recorder pid {before})", dir.display()));

    nix::sys::signal::kill(nix::unistd::Pid::from_raw(before), nix::sys::signal::Signal::SIGKILL)?;
    let (fault, killed_us) = (Instant::now(), now_us());
    r.step("fault: the recorder killed (SIGKILL)");

    let gaps = |dir: &Path| -> Vec<Value> {
        let h: Option<Value> =
            std::fs::read(dir.join("recording.json")).ok().and_then(|b| serde_json::from_slice(&b).ok());
        h.and_then(|h| h["gaps"].as_array().cloned()).unwrap_or_default()
    };
    let mut continued = None;
    while fault.elapsed() < CONTINUE_GOAL * 2 {
        if !gaps(&dir).is_empty() {
            continued = Some(fault.elapsed());
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    r.timed("the same recording continued", CONTINUE_GOAL, "after the kill", continued, "not continued");
    let after = super::service_pid(&node.config, "recorder");
    r.objective(
        "the recorder restarted by its supervisor",
        "a new recorder process",
        after.map_or("no recorder running".into(), |p| format!("pid {before} → {p}")),
        f64::from(after.unwrap_or(0)),
        "pid",
        after.is_some_and(|p| p != before),
    );
    std::thread::sleep(Duration::from_secs(4));
    rt.block_on(conn.request_with(Method::DELETE, &location, &[], None))?;
    stop.store(true, Ordering::Relaxed);
    generator.join().map_err(|_| anyhow::anyhow!("the load generator panicked"))??;

    let sealed = Instant::now();
    while !dir.join("manifest.sig").exists() && sealed.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(200));
    }
    let all = recordings_of(&recordings, CALL);
    r.objective(
        "the call stays in one recording",
        "1 recording of the call",
        format!("{} recording(s)", all.len()),
        all.len() as f64,
        "recordings",
        all == [dir.clone()],
    );
    let report = recording_verifies(&mut r, &node, work, &dir);
    let gaps = report["gaps"].as_array().cloned().unwrap_or_default();
    let worst = gaps.iter().map(gap_span).max();
    r.objective(
        "media lost on a recorder crash",
        "≤ 1 s on every track",
        match worst {
            Some(us) => format!("{:.3} s at most, over {} track(s)", us as f64 / 1e6, gaps.len()),
            None => "no gap noted (the restart was not seen)".into(),
        },
        worst.map_or(-1.0, |us| us as f64 / 1000.0),
        "ms",
        worst.is_some_and(|us| us <= LOST_GOAL_US) && gaps.len() >= 2,
    );
    let kept_until = gaps.iter().filter_map(|g| g["from_us"].as_u64()).min();
    r.objective(
        "what was received before the kill is kept",
        "all but the last second",
        kept_until
            .map_or("unknown".into(), |k| format!("{:.3} s before the kill", killed_us.saturating_sub(k) as f64 / 1e6)),
        kept_until.map_or(-1.0, |k| killed_us.saturating_sub(k) as f64 / 1000.0),
        "ms",
        kept_until.is_some_and(|k| killed_us.saturating_sub(k) < LOST_GOAL_US),
    );
    node.stop();
    Ok(r.finish())
}

/// The objective that the recording in `dir` is sealed and verifies (`vbank recordings verify --json`, against
/// `node`'s evidence-seal public key); what the verification said (its gaps), Null when it failed.
pub(super) fn recording_verifies(r: &mut Recorder, node: &Scratch, work: &Path, dir: &Path) -> Value {
    let verified = (|| -> Result<Value> {
        let pem = work.join("evidence-seal.pem");
        let pem = pem.to_str().context("a drill path is not UTF-8")?;
        node.run(&["hsm", "keys", "export-public", "vbank/evidence-seal/v1", "--out", pem], None)?;
        let dir = dir.to_str().context("a drill path is not UTF-8")?;
        let out = node.run(&["--json", "recordings", "verify", dir, "--public-key", pem], None)?;
        Ok(serde_json::from_str(&out)?)
    })();
    let report = verified.as_ref().cloned().unwrap_or(Value::Null);
    r.objective(
        "the recording is sealed and verifies",
        "seal and chain verify",
        if report["ok"] == true { "verified".into() } else { format!("{verified:?}") },
        f64::from(u8::from(report["ok"] == true)),
        "ok",
        report["ok"] == true,
    );
    report
}

/// How long a gap of a verified recording lasts, in µs.
pub(super) fn gap_span(g: &Value) -> u64 {
    g["to_us"].as_u64().unwrap_or(u64::MAX).saturating_sub(g["from_us"].as_u64().unwrap_or(0))
}
