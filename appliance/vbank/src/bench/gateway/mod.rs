//! `vbank bench gateway`: the same media load through vbank's gateway and through Janus 1.1.2 in one run.
//!
//! A 1:1 call is two legs, one per direction; a leg is a publisher sending VP8 (30 frames/s) and Opus (50 packets/s)
//! and a subscriber receiving it through the SFU. vbank's legs are WHIP and WHEP sessions on a development node; Janus's
//! are videoroom publishers and subscribers. Both SFUs are up side by side, pinned to CPU 1, the generator to CPU 0 (on
//! a machine with two or more). Rounds alternate between them, each setting up its legs, measuring, and tearing them
//! down, so a noisy neighbour on a shared machine weighs on both alike while the idle SFU carries no sessions at all.
//! Per round the generator counts packets forwarded to
//! subscribers and the SFU process's CPU time from /proc; latency is publisher write → subscriber receipt of the same
//! numbered frame or audio packet, which includes the generator's own SRTP work on both sides, so it bounds the SFU's
//! added latency from above.

mod janus;
pub(crate) mod load;
mod payload;

use std::path::PathBuf;
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use serde_json::json;
use str0m::change::SdpAnswer;
use str0m::media::Direction;
use vbank_service::client::{ClientConfig, Connection, Method, StatusCode};

use self::janus::Janus;
use self::load::{Generator, Peer, Window, offer, peer};
use super::median;
use super::node::{cpu_seconds, descendants_running, rss_mib, start_node};

/// How much load and how long.
#[derive(Debug, Clone)]
pub struct Options {
    /// 1:1 calls (two legs each).
    pub calls: u32,
    /// Seconds per measured round.
    pub seconds: f64,
    /// Rounds; medians are reported.
    pub rounds: usize,
    /// The Janus binary.
    pub janus: PathBuf,
    /// Record every call: vbank's recorder (its CPU counted with the gateway's) against Janus's videoroom recording.
    pub record: bool,
}

/// One SFU's figures: of one round, or medians of all rounds (loss summed).
#[derive(Debug, Default)]
struct Figures {
    name: String,
    forwarded_pps: f64,
    packets_per_cpu_second: f64,
    cpu_share: f64,
    generator_cpu_share: f64,
    p50_ms: f64,
    p99_ms: f64,
    sent: u64,
    lost: u64,
    rss_mib: f64,
    setup_s: f64,
}

/// The CPUs to pin the SFUs and the generator to, when there are at least two.
fn cpus() -> (Option<usize>, Option<usize>) {
    match std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1) {
        n if n >= 2 => (Some(1), Some(0)),
        _ => (None, None),
    }
}

/// Start a generator thread (pinned) for one round against the processes `pids` (their CPU is summed): it takes peers from the returned sender
/// as they are negotiated; once the sender is dropped and media flows on every leg, it warms up, measures one window
/// of `seconds`, stops publishing and counts what was lost.
fn round(pids: Vec<u32>, seconds: f64) -> (mpsc::Sender<Peer>, tokio::task::JoinHandle<Result<Figures>>) {
    let (tx, rx) = mpsc::channel();
    let gen_cpu = cpus().1;
    let run = tokio::task::spawn_blocking(move || -> Result<Figures> {
        if let Some(c) = gen_cpu {
            let mut set = nix::sched::CpuSet::new();
            set.set(c)?;
            nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set)?;
        }
        let mut g = Generator::new(rx)?;
        g.connect(Duration::from_secs(30)).context("media did not flow")?;
        g.start_counting();
        g.run_until(Instant::now() + Duration::from_secs(2), &mut Window::default())?;
        let me = std::process::id();
        let mut w = Window::default();
        let cpu_of = |pids: &[u32]| pids.iter().map(|p| cpu_seconds(*p)).sum::<Result<f64>>();
        let (t0, c0, g0) = (Instant::now(), cpu_of(&pids)?, cpu_seconds(me)?);
        g.run_until(t0 + Duration::from_secs_f64(seconds), &mut w)?;
        let (wall, cpu) = (t0.elapsed().as_secs_f64(), cpu_of(&pids)? - c0);
        let gen_cpu = cpu_seconds(me)? - g0;
        let rss_mib = pids.iter().map(|p| rss_mib(*p)).sum();
        g.only(0..0);
        g.run_until(Instant::now() + Duration::from_secs(1), &mut Window::default())?;
        let (sent, lost) = g.loss(0..u32::MAX);
        w.latencies_us.sort_by(|a, b| a.total_cmp(b));
        Ok(Figures {
            forwarded_pps: w.packets as f64 / wall,
            packets_per_cpu_second: w.packets as f64 / cpu.max(0.01),
            cpu_share: cpu / wall,
            generator_cpu_share: gen_cpu / wall,
            p50_ms: percentile(&w.latencies_us, 0.50) / 1000.0,
            p99_ms: percentile(&w.latencies_us, 0.99) / 1000.0,
            sent,
            lost,
            rss_mib,
            ..Figures::default()
        })
    });
    (tx, run)
}

/// Medians of the rounds, loss summed.
fn summarize(name: String, rounds: &[Figures]) -> Figures {
    let m = |f: fn(&Figures) -> f64| median(rounds.iter().map(f).collect());
    Figures {
        name,
        forwarded_pps: m(|r| r.forwarded_pps),
        packets_per_cpu_second: m(|r| r.packets_per_cpu_second),
        cpu_share: m(|r| r.cpu_share),
        generator_cpu_share: m(|r| r.generator_cpu_share),
        p50_ms: m(|r| r.p50_ms),
        p99_ms: m(|r| r.p99_ms),
        sent: rounds.iter().map(|r| r.sent).sum(),
        lost: rounds.iter().map(|r| r.lost).sum(),
        rss_mib: m(|r| r.rss_mib),
        setup_s: m(|r| r.setup_s),
    }
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

/// POST an SDP offer to a WHIP/WHEP endpoint; the SDP answer and the session's Location.
pub(crate) async fn exchange(conn: &mut Connection, path: &str, sdp: String) -> Result<(SdpAnswer, String)> {
    let (status, headers, body) =
        conn.request_with(Method::POST, path, &[("content-type", "application/sdp")], Some(sdp.into())).await?;
    if status != StatusCode::CREATED {
        bail!("{path}: {status} {}", String::from_utf8_lossy(&body));
    }
    let location = headers.get("location").and_then(|l| l.to_str().ok()).context("no Location")?.to_string();
    Ok((SdpAnswer::from_sdp_string(std::str::from_utf8(&body)?)?, location))
}

/// One round through vbank's gateway: publish and play each leg over WHIP and WHEP, measure, then DELETE them all.
async fn vbank_round(conn: &mut Connection, pids: &[u32], r: usize, opts: &Options) -> Result<Figures> {
    let (tx, run) = round(pids.to_vec(), opts.seconds);
    let started = Instant::now();
    let mut sessions = Vec::new();
    for leg in 0..opts.calls * 2 {
        let room = format!("bench-{r}-{leg}");
        let (mut rtc, sock) = peer(std::net::Ipv4Addr::LOCALHOST.into())?;
        let (audio, video, sdp, pending) = offer(&mut rtc, Direction::SendOnly)?;
        let (answer, location) = exchange(conn, &format!("/whip/{room}"), sdp.to_sdp_string()).await?;
        rtc.sdp_api().accept_answer(pending, answer)?;
        tx.send(Peer::publisher(rtc, sock, leg, audio, video))?;
        sessions.push(location);
        let (mut rtc, sock) = peer(std::net::Ipv4Addr::LOCALHOST.into())?;
        let (_, _, sdp, pending) = offer(&mut rtc, Direction::RecvOnly)?;
        let (answer, location) = exchange(conn, &format!("/whep/{room}"), sdp.to_sdp_string()).await?;
        rtc.sdp_api().accept_answer(pending, answer)?;
        tx.send(Peer::subscriber(rtc, sock, leg))?;
        sessions.push(location);
    }
    let setup = started.elapsed();
    drop(tx);
    let measured = run.await?;
    for location in sessions {
        conn.request_with(Method::DELETE, &location, &[], None).await?;
    }
    Ok(Figures { setup_s: setup.as_secs_f64(), ..measured? })
}

/// One round through Janus: publish every leg in its own videoroom, then subscribe to each (Janus lists a feed only
/// once its publisher's media is up), measure, then destroy the API session with everything in it.
async fn janus_round(j: &mut Janus, r: usize, opts: &Options) -> Result<Figures> {
    let (tx, run) = round(vec![j.pid()], opts.seconds);
    let started = Instant::now();
    let room = |leg: u32| 100_000 * (r as u64 + 1) + u64::from(leg);
    let mut feeds = Vec::new();
    for leg in 0..opts.calls * 2 {
        let (publisher, feed) = j.publish(room(leg), leg).await.with_context(|| format!("Janus leg {leg}"))?;
        tx.send(publisher)?;
        feeds.push((leg, feed));
    }
    for (leg, feed) in feeds {
        tx.send(j.subscribe(room(leg), leg, feed).await.with_context(|| format!("Janus leg {leg}"))?)?;
    }
    let setup = started.elapsed();
    drop(tx);
    let measured = run.await?;
    j.new_session().await?;
    Ok(Figures { setup_s: setup.as_secs_f64(), ..measured? })
}

/// Both SFUs up side by side (pinned to one CPU), measured in alternating rounds with only one carrying the load at a
/// time; figures for vbank and for Janus.
async fn measure(opts: &Options) -> Result<(Figures, Figures)> {
    let (sfu_cpu, _) = cpus();
    let (node, cfg) = start_node(&["--no-media-tcp"], sfu_cpu)?;
    let mut pids = vec![*descendants_running(node.pid(), "gateway").first().context("vbank up started no gateway")?];
    if opts.record {
        // The key ceremony makes the recording keys; the gateway then records every call (and pays for forwarding
        // each track to the recorder too), the recorder's CPU counts with the gateway's.
        crate::bench::keyd::ceremony(&cfg).await.context("the key ceremony")?;
        pids.push(*descendants_running(node.pid(), "recorder").first().context("vbank up started no recorder")?);
        tokio::time::sleep(Duration::from_secs(4)).await;
    }
    let tls: Arc<ClientConfig> = vbank_tls::anonymous_client_config(&cfg.tls)?;
    let addr = format!("127.0.0.1:{}", node.public_port).parse()?;
    let mut conn = Connection::open(tls, addr, "localhost", Duration::from_secs(10)).await?;
    let mut j = Janus::start(&opts.janus, sfu_cpu, opts.record).await.context("Janus")?;
    let janus_name = format!("Janus {}{}", j.version().await?, if opts.record { " + record" } else { "" });

    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for r in 0..opts.rounds {
        // Alternate who goes first, so neither always follows the other.
        if r % 2 == 0 {
            ours.push(vbank_round(&mut conn, &pids, r, opts).await.context("vbank's gateway")?);
            theirs.push(janus_round(&mut j, r, opts).await.context("Janus")?);
        } else {
            theirs.push(janus_round(&mut j, r, opts).await.context("Janus")?);
            ours.push(vbank_round(&mut conn, &pids, r, opts).await.context("vbank's gateway")?);
        }
    }
    drop(node);
    let ours_name = format!("vbank {}{}", env!("CARGO_PKG_VERSION"), if opts.record { " + recorder" } else { "" });
    Ok((summarize(ours_name, &ours), summarize(janus_name, &theirs)))
}

/// Run the benchmark and print the figures and the ratio.
pub async fn run(opts: Options, json_out: bool) -> Result<()> {
    if opts.calls == 0 || opts.rounds == 0 || opts.seconds <= 0.0 {
        bail!("--calls, --rounds and --seconds must be positive");
    }
    let (ours, peer) = measure(&opts).await?;
    let ratio = ours.packets_per_cpu_second / peer.packets_per_cpu_second;
    if json_out {
        let f = |f: &Figures| {
            json!({"sfu": f.name, "forwarded_pps": f.forwarded_pps, "packets_per_cpu_second": f.packets_per_cpu_second,
                   "cpu_share": f.cpu_share, "generator_cpu_share": f.generator_cpu_share, "latency_p50_ms": f.p50_ms, "latency_p99_ms": f.p99_ms,
                   "units_sent": f.sent, "units_lost": f.lost, "rss_mib": f.rss_mib, "setup_s": f.setup_s})
        };
        let out = json!({"calls": opts.calls, "rounds": opts.rounds, "seconds": opts.seconds,
                         "results": [f(&ours), f(&peer)], "packets_per_cpu_second_ratio": ratio});
        println!("{out}");
        return Ok(());
    }
    let (sfu_cpu, gen_cpu) = cpus();
    println!(
        "{} 1:1 calls = {} legs (VP8 30 fps + Opus 50 pkt/s each), medians of {} alternating rounds × {} s each; SFUs on CPU {}, generator on CPU {}",
        opts.calls,
        opts.calls * 2,
        opts.rounds,
        opts.seconds,
        sfu_cpu.map_or("any".into(), |c| c.to_string()),
        gen_cpu.map_or("any".into(), |c| c.to_string()),
    );
    println!("{:<34}{:>24}{:>24}", "", ours.name, peer.name);
    let row = |label: &str, a: String, b: String| println!("{label:<34}{a:>24}{b:>24}");
    row("forwarded packets/s", format!("{:.0}", ours.forwarded_pps), format!("{:.0}", peer.forwarded_pps));
    row(
        "SFU CPU (share of one core)",
        format!("{:.1}%", ours.cpu_share * 100.0),
        format!("{:.1}%", peer.cpu_share * 100.0),
    );
    row(
        "generator CPU (share of one core)",
        format!("{:.1}%", ours.generator_cpu_share * 100.0),
        format!("{:.1}%", peer.generator_cpu_share * 100.0),
    );
    row(
        "forwarded packets per CPU-second",
        format!("{:.0}", ours.packets_per_cpu_second),
        format!("{:.0}", peer.packets_per_cpu_second),
    );
    row("latency p50 (ms)", format!("{:.3}", ours.p50_ms), format!("{:.3}", peer.p50_ms));
    row("latency p99 (ms)", format!("{:.3}", ours.p99_ms), format!("{:.3}", peer.p99_ms));
    let loss = |f: &Figures| format!("{}/{}", f.lost, f.sent);
    row("lost frames+audio packets", loss(&ours), loss(&peer));
    row("SFU resident memory (MiB)", format!("{:.1}", ours.rss_mib), format!("{:.1}", peer.rss_mib));
    row("signalling set-up of all legs (s)", format!("{:.2}", ours.setup_s), format!("{:.2}", peer.setup_s));
    println!("ratio, forwarded packets per CPU-second (vbank / Janus): {ratio:.2}×");
    Ok(())
}
