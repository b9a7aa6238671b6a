//! Drill `gateway-failover`: a gateway node dies in the middle of a recorded call. Two nodes run behind a keepalived
//! VIP on a shared database and recordings storage (`cluster`). A client on the LAN (the gateway benchmark's load
//! generator) publishes audio and video through the VIP and plays them back. Node-a, which holds the VIP and the
//! call, then loses power: its link goes down and every process on it is killed. The client notices the silence,
//! rejoins through the VIP (now on node-b) and publishes again. Node-b sees that node-a's lease has stopped and has
//! its recorder continue the call's recording. Objectives:
//! - the VIP on node-b;
//! - the interruption, as the client saw it, under 3 s (last media before the fault → audio and a picture again);
//! - the call in one recording, which notes the gap on each track (each under 3 s) and verifies;
//! - keyd's audit log, written by both nodes, still one chain that verifies offline.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, Sender};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use serde_json::Value;
use str0m::media::Direction;
use vbank_service::client::{Connection, Method};

use super::cluster::{CLIENT, Cluster, VIP};
use super::recorder_crash::{gap_span, recording_verifies, recordings_of};
use super::report::{Recorder, Report};
use super::scratch::PUBLIC_PORT;
use crate::bench::gateway::load::{self, Arrivals, Generator, Peer, Window};

const CALL: &str = "drill-gateway-failover";
const INTERRUPTION_GOAL: Duration = Duration::from_secs(3);
/// The client's rule: no media for this long and the gateway is gone; rejoin through the VIP. The pages' rule for
/// their gateway's silence (no answer to their pings for 1.2 s, appliance/web/assets/call.js).
const SILENCE: Duration = Duration::from_millis(1200);

/// What the client's media thread saw of leg `n` (one session: a publisher and a player).
enum Seen {
    Flowing(u32),
    Silent(u32, Arrivals),
}

/// The client's media: drive the peers, say when a leg's media flows and when it falls silent (then retire it).
fn media(peers: Receiver<Peer>, seen: Sender<Seen>, stop: Arc<AtomicBool>) -> Result<Arrivals> {
    let mut g = Generator::new(peers)?;
    let (mut leg, mut flowing) = (0, false);
    while !stop.load(Ordering::Relaxed) {
        g.run_until(Instant::now() + Duration::from_millis(20), &mut Window::default())?;
        let Some(a) = g.arrivals(leg) else { continue };
        if !flowing {
            if a.flowing().is_some() {
                flowing = true;
                let _ = seen.send(Seen::Flowing(leg));
            }
        } else if a.last().is_some_and(|t| t.elapsed() > SILENCE) {
            g.retire(leg);
            let _ = seen.send(Seen::Silent(leg, a));
            (leg, flowing) = (leg + 1, false);
        }
    }
    g.arrivals(leg).context("the client's last session has no player")
}

/// Join the call through the VIP as leg `leg`: publish over WHIP and play over WHEP, on a fresh connection. The
/// sessions' locations.
fn join(
    rt: &tokio::runtime::Runtime,
    tls: &Arc<rustls::ClientConfig>,
    peers: &Sender<Peer>,
    leg: u32,
) -> Result<Vec<String>> {
    rt.block_on(async {
        let addr = (VIP, PUBLIC_PORT).into();
        let mut conn = Connection::open(tls.clone(), addr, "localhost", Duration::from_secs(2)).await?;
        let (mut rtc, sock) = load::peer(CLIENT.into())?;
        let (audio, video, sdp, pending) = load::offer(&mut rtc, Direction::SendOnly)?;
        let (answer, publishing) =
            crate::bench::gateway::exchange(&mut conn, &format!("/whip/{CALL}"), sdp.to_sdp_string()).await?;
        rtc.sdp_api().accept_answer(pending, answer)?;
        peers.send(Peer::publisher(rtc, sock, leg, audio, video))?;
        let (mut rtc, sock) = load::peer(CLIENT.into())?;
        let (_, _, sdp, pending) = load::offer(&mut rtc, Direction::RecvOnly)?;
        let (answer, playing) =
            crate::bench::gateway::exchange(&mut conn, &format!("/whep/{CALL}"), sdp.to_sdp_string()).await?;
        rtc.sdp_api().accept_answer(pending, answer)?;
        peers.send(Peer::subscriber(rtc, sock, leg))?;
        Ok(vec![publishing, playing])
    })
}

fn seconds(d: Duration) -> String {
    format!("{:.3} s", d.as_secs_f64())
}

/// Run it in `work`.
pub fn run(work: &Path, signer: &str) -> Result<Report> {
    let mut r = Recorder::new(
        "gateway-failover",
        "Two appliance nodes in network namespaces on a LAN bridge, keepalived holding the VIP on node-a (VRRP every \
         0.1 s, tracking the gateway's /healthz), one shared PostgreSQL and recordings storage. A client on the LAN \
         publishes audio and video through the VIP and plays them back; node-a records the call. Then node-a loses \
         power (its link down, every process on it SIGKILLed). The client rejoins through the VIP when its media \
         has been silent for 1.2 s, as the pages do when their gateway stops answering.",
        signer,
    );
    let mut cluster = Cluster::build(work)?;
    let (a, b) = (&cluster.nodes[0], &cluster.nodes[1]);
    r.step(format!(
        "{} ({}) and {} ({}) ready on the shared database and storage; the VIP {VIP} on {}",
        a.name, a.addr, b.name, b.addr, a.name
    ));
    let (cfg, _) = vbank_config::load(&cluster.nodes[0].scratch.config).map_err(|e| anyhow::anyhow!("{e}"))?;
    let tls = vbank_tls::anonymous_client_config(&cfg.tls)?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;

    let (peers, incoming) = std::sync::mpsc::channel();
    let (seen_tx, seen) = std::sync::mpsc::channel();
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let client = std::thread::spawn(move || media(incoming, seen_tx, flag));
    let stop_client = |client: std::thread::JoinHandle<Result<Arrivals>>| -> Result<Arrivals> {
        stop.store(true, Ordering::Relaxed);
        client.join().map_err(|_| anyhow::anyhow!("the client's media thread panicked"))?
    };

    // The gateway refuses calls it cannot record: node-a records once its recorder has the ceremony's keys.
    let deadline = Instant::now() + Duration::from_secs(60);
    let first = loop {
        match join(&rt, &tls, &peers, 0) {
            Ok(sessions) => break sessions,
            Err(e) if Instant::now() > deadline => bail!(
                "the call could not start on node-a within 60 s: {e}\nnode-a's log ends:\n{}",
                cluster.nodes[0].scratch.log_tail(30)
            ),
            Err(_) => std::thread::sleep(Duration::from_millis(500)),
        }
    };
    match seen.recv_timeout(Duration::from_secs(30)) {
        Ok(Seen::Flowing(0)) => {}
        _ => bail!("the call's media did not flow through node-a within 30 s ({first:?})"),
    }
    std::thread::sleep(Duration::from_secs(5));
    let recorded = recordings_of(&cluster.recordings, CALL);
    let Some(dir) = recorded.first().cloned() else { bail!("node-a did not record the call") };
    r.step(format!("call on through node-a: audio and video both ways, recorded in {}", dir.display()));

    let fault = cluster.kill_node(0)?;
    r.step("fault: node-a lost power (its link down, every process on it SIGKILLed)");
    let before = match seen.recv_timeout(Duration::from_secs(10)) {
        Ok(Seen::Silent(0, a)) => a,
        _ => bail!("the client did not notice that node-a was gone within 10 s"),
    };
    let noticed = fault.elapsed();
    r.step(format!("the client noticed the silence {} after the fault and rejoins through the VIP", seconds(noticed)));
    let mut attempts = 0;
    let second = loop {
        attempts += 1;
        match join(&rt, &tls, &peers, 1) {
            Ok(sessions) => break sessions,
            Err(e) if fault.elapsed() > Duration::from_secs(20) => bail!(
                "the client could not rejoin within 20 s: {e}\nnode-b's log ends:\n{}",
                cluster.nodes[1].scratch.log_tail(30)
            ),
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    };
    r.step(format!("rejoined {} after the fault ({attempts} attempt(s))", seconds(fault.elapsed())));
    let flowing = matches!(seen.recv_timeout(Duration::from_secs(15)), Ok(Seen::Flowing(1)));
    let holder = cluster.vip_holder().map(|i| cluster.nodes[i].name.clone());
    r.objective(
        "the VIP moved to the surviving node",
        "on node-b",
        holder.clone().unwrap_or_else(|| "on no node".into()),
        f64::from(u8::from(holder.as_deref() == Some("node-b"))),
        "ok",
        holder.as_deref() == Some("node-b"),
    );
    std::thread::sleep(Duration::from_secs(4));
    rt.block_on(async {
        let mut conn =
            Connection::open(tls.clone(), (VIP, PUBLIC_PORT).into(), "localhost", Duration::from_secs(5)).await?;
        for location in &second {
            conn.request_with(Method::DELETE, location, &[], None).await?;
        }
        anyhow::Ok(())
    })?;
    let after = stop_client(client)?;

    let interruption = match (before.last(), after.flowing()) {
        (Some(last), Some(back)) if flowing => Some(back.saturating_duration_since(last)),
        _ => None,
    };
    r.objective(
        "interruption of the call",
        "< 3 s (the client's last media before the fault → audio and a picture again)",
        interruption.map_or("the media did not come back".into(), |d| {
            format!(
                "{} (audio after {}, a picture after {})",
                seconds(d),
                gap(&before, after.first_audio),
                gap(&before, after.first_keyframe)
            )
        }),
        interruption.map_or(-1.0, |d| d.as_secs_f64() * 1000.0),
        "ms",
        interruption.is_some_and(|d| d < INTERRUPTION_GOAL),
    );

    let sealed = Instant::now();
    while !dir.join("manifest.sig").exists() && sealed.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(200));
    }
    let all = recordings_of(&cluster.recordings, CALL);
    r.objective(
        "the call stays in one recording",
        "1 recording of the call, continued by node-b",
        format!("{} recording(s)", all.len()),
        all.len() as f64,
        "recordings",
        all == [dir.clone()],
    );
    let node_b = &cluster.nodes[1].scratch;
    let report = recording_verifies(&mut r, node_b, work, &dir);
    // The manifest's gaps, as `recordings verify` reads them.
    let gaps = report["gaps"].as_array().cloned().unwrap_or_default();
    let moved = gaps.iter().filter(|g| g["reason"].as_str().is_some_and(|r| r.contains("rejoined on another node")));
    let spans: Vec<u64> = moved.map(gap_span).collect();
    let worst = spans.iter().max().copied();
    r.objective(
        "the recording notes the failover's gap",
        "a gap on each track, each < 3 s",
        match worst {
            Some(us) => format!("{:.3} s at most, over {} track(s)", us as f64 / 1e6, spans.len()),
            None => format!("no failover gap noted; the gaps: {gaps:?}"),
        },
        worst.map_or(-1.0, |us| us as f64 / 1000.0),
        "ms",
        worst.is_some_and(|us| us < INTERRUPTION_GOAL.as_micros() as u64) && spans.len() >= 2,
    );
    let chain = audit_chain(node_b, work);
    let ok = chain.as_ref().is_ok_and(|c| c["first_bad"].is_null());
    r.objective(
        "the audit log stays one chain across both nodes' keyd",
        "the hash chain and its seals verify offline",
        match &chain {
            Ok(c) if ok => format!("{} entries, {} seal(s) verified", c["entries"], c["seals"]),
            Ok(c) => format!("broken: {}", c["first_bad"]),
            Err(e) => format!("{e:#}"),
        },
        chain.as_ref().ok().and_then(|c| c["entries"].as_f64()).unwrap_or(-1.0),
        "entries",
        ok,
    );
    drop(cluster);
    Ok(r.finish())
}

/// The audit log both nodes' keyd wrote, exported through `node` and verified offline (`vbank audit verify`).
fn audit_chain(node: &super::scratch::Scratch, work: &Path) -> Result<Value> {
    let (log, pem) = (work.join("audit.jsonl"), work.join("audit-seal.pem"));
    let (log, pem) = (log.to_str().context("a drill path is not UTF-8")?, pem.to_str().unwrap_or_default());
    node.run(&["hsm", "audit", "export", "--out", log], None)?;
    node.run(&["hsm", "keys", "export-public", "vbank/audit-seal/v1", "--out", pem], None)?;
    let key = format!("vbank/audit-seal/v1={pem}");
    Ok(serde_json::from_str(&node.run(&["--json", "audit", "verify", log, "--public-key", &key], None)?)?)
}

/// How long after the last media before the fault `back` came.
fn gap(before: &Arrivals, back: Option<Instant>) -> String {
    match (before.last(), back) {
        (Some(last), Some(back)) => seconds(back.saturating_duration_since(last)),
        _ => "never".into(),
    }
}
