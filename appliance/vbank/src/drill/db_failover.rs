//! Drill `db-failover`: the shared database's primary dies under load. The drill builds the HA topology's state tier
//! on this machine, in its own namespaces: etcd with three members (the two appliance nodes and the witness) and
//! PostgreSQL 15 under Patroni on two nodes with synchronous replication, every member on loopback. A writer commits
//! through vbank's own store (`vbank-store`'s PostgreSQL backend, given both members so it follows the primary) and
//! notes every commit that was confirmed. Then the primary node is killed (Patroni and PostgreSQL, SIGKILL).
//! Objectives: not one confirmed commit lost (RPO 0), the former synchronous standby promoted and writes accepted
//! again within 30 s, one leader only.

use std::io::{Read as _, Write as _};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use serde_json::Value;
use vbank_store::{PgStore, Store as _};

use super::report::{Recorder, Report};

const RTO_GOAL: Duration = Duration::from_secs(30);
const ETCD: [(u16, u16); 3] = [(23791, 23801), (23792, 23802), (23793, 23803)];
/// (PostgreSQL port, Patroni REST port) per database node.
const NODES: [(u16, u16); 2] = [(25431, 28001), (25432, 28002)];
pub(super) const BIN_DIR: &str = "/usr/lib/postgresql/15/bin";

/// Processes stopped when dropped.
pub(super) struct Procs(pub(super) Vec<Child>);

impl Drop for Procs {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ =
                nix::sys::signal::kill(nix::unistd::Pid::from_raw(c.id() as i32), nix::sys::signal::Signal::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(15);
        for c in &mut self.0 {
            while Instant::now() < deadline && matches!(c.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Run it in `work`.
pub fn run(work: &Path, signer: &str) -> Result<Report> {
    let mut r = Recorder::new(
        "db-failover",
        "etcd (three members) and PostgreSQL 15 under Patroni on two nodes, synchronous replication, all on the \
         drill's loopback. A writer commits through vbank's PostgreSQL store, listing both members, for 3 s; then the \
         primary node is killed (Patroni and PostgreSQL, SIGKILL) while the writer keeps going.",
        signer,
    );
    for tool in ["etcd", "patroni", "runuser"] {
        which(tool)?;
    }
    if !Path::new(BIN_DIR).join("postgres").exists() {
        bail!("PostgreSQL 15 is not installed ({BIN_DIR}) (hint: apt-get install postgresql-15 patroni etcd-server)");
    }
    let pg_user = nix::unistd::User::from_name("postgres")?.context("no postgres user (Debian's postgresql)")?;
    // PostgreSQL runs as postgres and must reach its directories.
    std::fs::set_permissions(work, std::os::unix::fs::PermissionsExt::from_mode(0o711))?;
    let mut procs = Procs(Vec::new());
    let cluster: Vec<String> =
        ETCD.iter().enumerate().map(|(i, (_, peer))| format!("e{}=http://127.0.0.1:{peer}", i + 1)).collect();
    for (i, (client, peer)) in ETCD.iter().enumerate() {
        let log = std::fs::File::create(work.join(format!("etcd{}.log", i + 1)))?;
        let mut c = Command::new("etcd");
        c.args(["--name", &format!("e{}", i + 1), "--data-dir"])
            .arg(work.join(format!("etcd{}", i + 1)))
            .args(["--listen-client-urls", &format!("http://127.0.0.1:{client}")])
            .args(["--advertise-client-urls", &format!("http://127.0.0.1:{client}")])
            .args(["--listen-peer-urls", &format!("http://127.0.0.1:{peer}")])
            .args(["--initial-advertise-peer-urls", &format!("http://127.0.0.1:{peer}")])
            .args(["--initial-cluster", &cluster.join(","), "--initial-cluster-state", "new"])
            .args(["--initial-cluster-token", "vbank-drill"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        super::scratch::bind_to_parent(&mut c);
        procs.0.push(c.spawn().context("starting etcd")?);
    }
    // Patroni starts against a formed etcd cluster: started together, both members can be left waiting for a
    // bootstrap that never happens.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !ETCD.iter().all(|(client, _)| http_get(*client, "/health").is_ok_and(|v| v["health"] == "true")) {
        if Instant::now() > deadline {
            bail!("etcd did not form a healthy cluster in 60 s\n{}", log_tails(work));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let hosts: Vec<String> = ETCD.iter().map(|(c, _)| format!("127.0.0.1:{c}")).collect();
    let mut nodes = Vec::new();
    for (i, (pg_port, rest)) in NODES.iter().enumerate() {
        let dir = work.join(format!("pg{}", i + 1));
        std::fs::create_dir_all(&dir)?;
        nix::unistd::chown(&dir, Some(pg_user.uid), Some(pg_user.gid))?;
        std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))?;
        let yml = dir.join("patroni.yml");
        std::fs::write(&yml, patroni_config(i + 1, *pg_port, *rest, &hosts, &dir))?;
        nix::unistd::chown(&yml, Some(pg_user.uid), Some(pg_user.gid))?;
        let log = std::fs::File::create(work.join(format!("patroni{}.log", i + 1)))?;
        let mut c = Command::new("runuser");
        // PostgreSQL's tools need a working directory they can enter: never inherit one postgres cannot read.
        c.args(["-u", "postgres", "--", "patroni"])
            .arg(&yml)
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        super::scratch::bind_to_parent(&mut c);
        procs.0.push(c.spawn().context("starting patroni")?);
        nodes.push((format!("pg{}", i + 1), dir, *rest));
    }
    let (leader, standby) = wait_healthy(NODES[0].1, Duration::from_secs(120)).map_err(|e| {
        anyhow::anyhow!(
            "the Patroni cluster did not come up with a leader and a synchronous standby in 120 s: {e}\n{}",
            log_tails(work)
        )
    })?;
    r.step(format!("etcd (3 members) and Patroni up: leader {leader}, synchronous standby {standby}"));

    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let cfg = vbank_config::PostgresConfig {
        host: NODES.iter().map(|(p, _)| format!("127.0.0.1:{p}")).collect::<Vec<_>>().join(","),
        port: NODES[0].0,
        dbname: "postgres".into(),
        user: "postgres".into(),
        password: None,
        pool_size: 4,
        connect_timeout_s: 2,
    };
    let store = rt.block_on(PgStore::connect(&cfg, None)).context("connecting vbank's store to the cluster")?;
    let mut confirmed: Vec<(u64, Vec<u8>)> = Vec::new();
    let mut failed = 0u64;
    let mut n = 0;
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(3) {
        n += 1;
        commit(&rt, &store, n, &mut confirmed, &mut failed);
    }
    let before = confirmed.len();
    r.step(format!("{before} commits confirmed through vbank's store before the fault"));

    let (_, leader_dir, _) =
        nodes.iter().find(|(name, _, _)| *name == leader).context("the leader is not a drill node")?;
    let (_, _, survivor) = nodes.iter().find(|(name, _, _)| *name != leader).context("no second node")?;
    kill_node(leader_dir)?;
    let fault = Instant::now();
    r.step(format!("fault: node {leader} killed (Patroni and PostgreSQL, SIGKILL)"));
    let mut back = None;
    while fault.elapsed() < RTO_GOAL * 3 {
        n += 1;
        if commit(&rt, &store, n, &mut confirmed, &mut failed) {
            back = Some(fault.elapsed());
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let t = Instant::now();
    while back.is_some() && t.elapsed() < Duration::from_secs(2) {
        n += 1;
        commit(&rt, &store, n, &mut confirmed, &mut failed);
    }
    let after = sole_leader(*survivor);
    r.objective(
        "writes accepted again (RTO)",
        &format!("≤ {} s after the primary's loss", RTO_GOAL.as_secs()),
        back.map_or("never".to_string(), |d| format!("{:.1} s ({failed} attempts refused meanwhile)", d.as_secs_f64())),
        back.map_or(-1.0, |d| d.as_millis() as f64),
        "ms",
        back.is_some_and(|d| d <= RTO_GOAL),
    );

    // Read back from the new primary (the pool may first hand out connections the failover broke).
    let mut stored = Err(anyhow::anyhow!("not read"));
    for _ in 0..40 {
        stored = rt.block_on(store.read_stream("drill-ledger", 1, usize::MAX)).map_err(anyhow::Error::from);
        if stored.is_ok() {
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    let stored = stored.context("reading the ledger back")?;
    let lost: Vec<u64> =
        confirmed.iter().filter(|(seq, v)| !stored.iter().any(|(s, w)| s == seq && w == v)).map(|(s, _)| *s).collect();
    r.objective(
        "confirmed commits lost (RPO)",
        "0",
        format!("{} of {} confirmed commits lost ({} before the fault)", lost.len(), confirmed.len(), before),
        lost.len() as f64,
        "commits",
        lost.is_empty() && !confirmed.is_empty(),
    );
    let promoted = after.as_deref() == Some(standby.as_str());
    r.objective(
        "the synchronous standby took over, one leader",
        &format!("{standby} leader"),
        after.as_ref().map_or("no single leader".to_string(), |l| format!("{l} leader")),
        if promoted { 1.0 } else { 0.0 },
        "bool",
        promoted,
    );
    drop(store);
    drop(rt);
    drop(procs);
    r.step("cluster stopped");
    Ok(r.finish())
}

/// One commit through vbank's store: a ledger entry. Confirmed when `append` returned its sequence number.
fn commit(
    rt: &tokio::runtime::Runtime,
    store: &PgStore,
    n: u64,
    confirmed: &mut Vec<(u64, Vec<u8>)>,
    failed: &mut u64,
) -> bool {
    let value = format!("drill-commit-{n}").into_bytes();
    let appended =
        rt.block_on(async { tokio::time::timeout(Duration::from_secs(3), store.append("drill-ledger", &value)).await });
    match appended {
        Ok(Ok(seq)) => {
            confirmed.push((seq, value));
            true
        }
        _ => {
            *failed += 1;
            false
        }
    }
}

/// The last lines of every member's log, to say why a cluster did not form.
fn log_tails(work: &Path) -> String {
    let mut out = String::new();
    for name in ["etcd1", "etcd2", "etcd3", "patroni1", "patroni2"] {
        let text = std::fs::read_to_string(work.join(format!("{name}.log"))).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        out.push_str(&format!("--- {name}.log (last lines)\n{}\n", lines[lines.len().saturating_sub(8)..].join("\n")));
    }
    out
}

fn which(tool: &str) -> Result<()> {
    let found =
        std::env::var_os("PATH").map(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file())).unwrap_or(false);
    if !found {
        bail!("{tool} is not installed (hint: apt-get install patroni etcd-server postgresql-15)");
    }
    Ok(())
}

fn patroni_config(i: usize, pg_port: u16, rest: u16, etcd: &[String], dir: &Path) -> String {
    format!(
        "scope: vbank-drill\nname: pg{i}\nrestapi:\n  listen: 127.0.0.1:{rest}\n  connect_address: 127.0.0.1:{rest}\n\
         etcd3:\n  hosts: [{hosts}]\nbootstrap:\n  dcs:\n    ttl: 10\n    loop_wait: 1\n    retry_timeout: 5\n    \
         maximum_lag_on_failover: 0\n    synchronous_mode: true\n    postgresql:\n      use_pg_rewind: true\n      \
         parameters:\n        wal_log_hints: \"on\"\n  initdb:\n    - encoding: UTF8\n    - locale: C\n  pg_hba:\n    \
         - local all all trust\n    - host replication replicator 127.0.0.1/32 trust\n    - host all all 127.0.0.1/32 trust\n\
         postgresql:\n  listen: 127.0.0.1:{pg_port}\n  connect_address: 127.0.0.1:{pg_port}\n  data_dir: {d}/data\n  \
         bin_dir: {BIN_DIR}\n  pgpass: {d}/pgpass\n  authentication:\n    replication: {{username: replicator, password: drill}}\n    \
         superuser: {{username: postgres, password: drill}}\n  parameters:\n    unix_socket_directories: {d}\n",
        hosts = etcd.join(", "),
        d = dir.display()
    )
}

/// GET a JSON path from Patroni's REST API or etcd's (plain HTTP on the drill's loopback).
fn http_get(port: u16, path: &str) -> Result<Value> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(2)))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")?;
    let mut text = String::new();
    s.read_to_string(&mut text)?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or_default();
    Ok(serde_json::from_str(body)?)
}

/// Wait until the cluster (asked through `rest`) has one leader and a synchronous standby, both running; their names.
fn wait_healthy(rest: u16, within: Duration) -> Result<(String, String)> {
    let deadline = Instant::now() + within;
    let mut last = Value::Null;
    while Instant::now() < deadline {
        if let Ok(c) = http_get(rest, "/cluster") {
            if let (Some(l), Some(s)) = (sole_role(&c, "leader"), sole_role(&c, "sync_standby")) {
                return Ok((l, s));
            }
            last = c;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    bail!("cluster state: {last}")
}

/// The name of the only running member with `role`, if exactly one has it.
fn sole_role(cluster: &Value, role: &str) -> Option<String> {
    let with: Vec<&Value> =
        cluster["members"].as_array()?.iter().filter(|m| m["role"] == role && m["state"] == "running").collect();
    match with.as_slice() {
        [m] => m["name"].as_str().map(str::to_string),
        _ => None,
    }
}

/// The cluster's leader as `rest` sees it, when there is exactly one.
fn sole_leader(rest: u16) -> Option<String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Some(l) = http_get(rest, "/cluster").ok().and_then(|c| sole_role(&c, "leader")) {
            return Some(l);
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    None
}

/// Kill a database node: its Patroni and its PostgreSQL postmaster, without warning.
fn kill_node(dir: &Path) -> Result<()> {
    let postmaster: i32 = std::fs::read_to_string(dir.join("data/postmaster.pid"))?
        .lines()
        .next()
        .and_then(|l| l.trim().parse().ok())
        .context("no postmaster.pid")?;
    // Patroni is the process (python3 …/patroni <yml>) whose command line names this node's configuration.
    let yml = dir.join("patroni.yml");
    let patroni = std::fs::read_dir("/proc")?.flatten().find_map(|e| {
        let pid: i32 = e.file_name().to_str()?.parse().ok()?;
        let cmd = std::fs::read(e.path().join("cmdline")).ok()?;
        let mut args = cmd.split(|b| *b == 0);
        let first = args.next()?;
        let names_yml = cmd.split(|b| *b == 0).any(|a| a == yml.as_os_str().as_encoded_bytes());
        (names_yml && !first.ends_with(b"runuser")).then_some(pid)
    });
    let kill = |pid: i32| nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
    if let Some(p) = patroni {
        kill(p)?;
    }
    // The postmaster and every backend it forked: a dead machine serves nothing more.
    let children: Vec<i32> = std::fs::read_dir("/proc")?
        .flatten()
        .filter_map(|e| {
            let pid: i32 = e.file_name().to_str()?.parse().ok()?;
            let status = std::fs::read_to_string(e.path().join("status")).ok()?;
            let ppid: i32 = status.lines().find_map(|l| l.strip_prefix("PPid:"))?.trim().parse().ok()?;
            (ppid == postmaster).then_some(pid)
        })
        .collect();
    kill(postmaster)?;
    for c in children {
        let _ = kill(c);
    }
    Ok(())
}
