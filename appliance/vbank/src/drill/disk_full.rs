//! Drill `disk-full`: the recordings disk fills up under a working node, then space is freed. The drill mounts a
//! tmpfs of its own (in its own mount namespace) as the scratch appliance's recordings directory and fills it below
//! `[recorder] min_free_mb`. Objectives: the recorder reports it within 10 s (`/readyz`, and the metric the
//! VbankRecordingStorageLow alert reads), a new recording is refused with a message naming the disk and the fix,
//! and the recorder is ready again within 10 s of space returning, without a restart.

use std::io::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use serde_json::{Value, json};
use vbank_config::{Config, Service};
use vbank_service::client::{self, Method};

use super::report::{Recorder, Report};
use super::scratch::Scratch;

const DETECT_GOAL: Duration = Duration::from_secs(10);
const RECOVER_GOAL: Duration = Duration::from_secs(10);
/// The scratch recordings disk: its floor (`[recorder] min_free_mb`) and this much more.
const HEADROOM_MIB: u64 = 64;
/// What the "incident" writes: enough to go below the floor.
const FILLER_MIB: u64 = 96;

/// Run it in `work`; the caller has entered a private mount namespace.
pub fn run(work: &Path, signer: &str) -> Result<Report> {
    let mut r = Recorder::new(
        "disk-full",
        "A scratch appliance records to its own disk (a tmpfs) with 64 MiB more than [recorder] min_free_mb. \
         Something writes 96 MiB to it, taking it below the floor; later the file is removed.",
        signer,
    );
    let data = work.join("node");
    // A first start writes the scratch configuration, which says where recordings go and the floor.
    let (cfg, _) = {
        let first = Scratch::start(&data, Duration::from_secs(240))?;
        vbank_config::load(&first.config).map_err(|e| anyhow::anyhow!("{e}"))?
    };
    let recordings = cfg.recorder.dir.clone();
    let disk_mib = cfg.recorder.min_free_mb + HEADROOM_MIB;
    let _disk = Tmpfs::mount(&recordings, disk_mib)?;
    let mut node = Scratch::start(&data, Duration::from_secs(240))?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let pid = super::service_pid(&node.config, "recorder").context("cannot find the scratch recorder")?;
    r.step(format!(
        "scratch appliance ready; recordings on a {disk_mib} MiB disk, floor {} MiB",
        cfg.recorder.min_free_mb
    ));

    let filler = recordings.join("filler.bin");
    let mut f = std::fs::File::create(&filler)?;
    let chunk = vec![0x5au8; 1 << 20];
    for _ in 0..FILLER_MIB {
        f.write_all(&chunk)?;
    }
    f.sync_all()?;
    drop(f);
    let fault = Instant::now();
    r.step(format!("fault: {FILLER_MIB} MiB written to the recordings disk"));

    let detected = poll(&rt, &cfg, false, DETECT_GOAL * 3).map(|_| fault.elapsed());
    let metric = rt.block_on(metric_value(&cfg));
    r.objective(
        "full disk detected (recorder's storage check; the metric VbankRecordingStorageLow reads)",
        &format!("≤ {} s, vbank_check_ok{{check=\"storage\"}} 0", DETECT_GOAL.as_secs()),
        format!(
            "{}, metric {}",
            detected.map_or("not detected".to_string(), |d| format!("{:.1} s", d.as_secs_f64())),
            metric.map_or("absent".to_string(), |v| v.to_string())
        ),
        detected.map_or(-1.0, |d| d.as_millis() as f64),
        "ms",
        detected.is_some_and(|d| d <= DETECT_GOAL) && metric == Some(0),
    );

    let (status, answer) = rt.block_on(open_recording(&cfg))?;
    let message = answer["error"].as_str().unwrap_or_default().to_string();
    let clear = status == 503 && message.contains("min_free_mb") && message.contains("must not start");
    r.objective(
        "new calls refused, naming the disk and the fix",
        "503 \"cannot record this call, so it must not start: … min_free_mb …\"",
        format!("{status} {message}"),
        f64::from(status),
        "HTTP status",
        clear,
    );

    std::fs::remove_file(&filler)?;
    let freed = Instant::now();
    r.step("space freed: the file is removed");
    let recovered = poll(&rt, &cfg, true, RECOVER_GOAL * 3).map(|_| freed.elapsed());
    r.timed("recovered by itself", RECOVER_GOAL, "after space returns, recorder ready", recovered, "not recovered");
    r.same_process("recorder", pid, super::service_pid(&node.config, "recorder"));
    node.stop();
    r.step("scratch appliance stopped");
    Ok(r.finish())
}

/// A tmpfs mounted for the drill, unmounted when dropped (so the drill's directory can be removed).
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(at: &Path, mib: u64) -> Result<Tmpfs> {
        nix::mount::mount(
            Some("tmpfs"),
            at,
            Some("tmpfs"),
            nix::mount::MsFlags::MS_NOSUID | nix::mount::MsFlags::MS_NODEV,
            Some(format!("size={mib}m,mode=0700").as_str()),
        )
        .context("mounting the scratch recordings disk (tmpfs)")?;
        Ok(Tmpfs(at.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH);
    }
}

/// Poll the recorder's /readyz until its `storage` check is ok (`ok`) or not; None when `within` passes first.
fn poll(rt: &tokio::runtime::Runtime, cfg: &Config, ok: bool, within: Duration) -> Option<()> {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if let Ok(v) = rt.block_on(admin(cfg, "/readyz"))
            && let Ok(v) = serde_json::from_slice::<Value>(&v)
            && (v["checks"]["storage"]["state"] == "ok") == ok
        {
            return Some(());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    None
}

async fn admin(cfg: &Config, path: &str) -> Result<Vec<u8>> {
    let tls = vbank_tls::internal_client_config(&cfg.tls, Service::Cli)?;
    let name = vbank_tls::service_dns_name(Service::Recorder);
    let (_, body) =
        client::call(tls, cfg.recorder.admin_listen, &name, Method::GET, path, None, Duration::from_secs(3)).await?;
    Ok(body.to_vec())
}

async fn metric_value(cfg: &Config) -> Option<i64> {
    let text = String::from_utf8(admin(cfg, "/metrics").await.ok()?).ok()?;
    text.lines().find_map(|l| l.strip_prefix("vbank_check_ok{check=\"storage\"} ")).and_then(|v| v.trim().parse().ok())
}

/// Ask the recorder to record a call, as the gateway does before a call starts.
async fn open_recording(cfg: &Config) -> Result<(u16, Value)> {
    let tls = vbank_tls::service_client_config(&cfg.tls, Service::Gateway)?;
    let name = vbank_tls::service_dns_name(Service::Recorder);
    let body = json!({"call": "drill-disk-full", "token": "not-needed-the-disk-is-checked-first"}).to_string();
    let (s, b) = client::call(
        tls,
        cfg.recorder.listen,
        &name,
        Method::POST,
        "/v1/recordings",
        Some(body.into()),
        Duration::from_secs(10),
    )
    .await?;
    Ok((s.as_u16(), serde_json::from_slice(&b).unwrap_or(Value::Null)))
}
