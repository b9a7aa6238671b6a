//! A throw-away development node (`vbank up` in a temporary directory) for the benchmarks that need a running
//! appliance, optionally pinned to one CPU so its cost can be told apart from the load generator's.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};

use anyhow::{Context as _, Result, bail};

/// A public port and an internal base whose next six ports are free, from 45000–46000 (below the ephemeral range).
pub fn free_ports() -> Result<(u16, u16)> {
    let free = |p: u16| {
        std::net::TcpListener::bind(("0.0.0.0", p)).is_ok() && std::net::UdpSocket::bind(("0.0.0.0", p)).is_ok()
    };
    for base in (45_000u16..46_000).step_by(12) {
        if (base..=base + 11).all(free) {
            return Ok((base + 11, base));
        }
    }
    bail!("no twelve free ports in 45000-46000")
}

/// A running development node; stopped (SIGTERM) and its directory removed when dropped.
pub struct Node {
    child: std::process::Child,
    dir: PathBuf,
    /// The node's public HTTPS port.
    pub public_port: u16,
}

impl Node {
    /// The node's data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// The pid of `vbank up` itself.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A command that runs `program` on CPU `cpu` only (through util-linux `taskset`), or unpinned.
pub fn pinned(program: impl AsRef<std::ffi::OsStr>, cpu: Option<usize>) -> Command {
    match cpu {
        Some(c) => {
            let mut cmd = Command::new("taskset");
            cmd.args(["-c", &c.to_string()]).arg(program);
            cmd
        }
        None => Command::new(program),
    }
}

/// Start `vbank up` with `extra` arguments on a fresh configuration; returns once every service is ready.
pub fn start_node(extra: &[&str], cpu: Option<usize>) -> Result<(Node, vbank_config::Config)> {
    let dir = std::env::temp_dir().join(format!("vbank-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let data = dir.join("data");
    let (public, base) = free_ports()?;
    let mut child = pinned(std::env::current_exe()?, cpu)
        .args(["up", "--json", "--ready-timeout", "60", "--data-dir"])
        .arg(&data)
        .args(["--port", &public.to_string(), "--internal-port-base", &base.to_string()])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context("starting a development node (is util-linux's taskset installed?)")?;
    let mut line = String::new();
    BufReader::new(child.stdout.take().context("no stdout")?).read_line(&mut line)?;
    let node = Node { child, dir, public_port: public };
    if !line.starts_with('{') {
        bail!("the development node did not start: {line}");
    }
    let (cfg, _) = vbank_config::load(&data.join("vbank.toml")).map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok((node, cfg))
}

/// Live processes descended from `root` (children, grandchildren, …) whose command line contains `needle`.
pub fn descendants_running(root: u32, needle: &str) -> Vec<u32> {
    let mut found = Vec::new();
    let mut queue = vec![root];
    while let Some(pid) = queue.pop() {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { continue };
        for task in tasks.flatten() {
            let children = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
            for child in children.split_whitespace().filter_map(|c| c.parse::<u32>().ok()) {
                let cmdline = std::fs::read(format!("/proc/{child}/cmdline")).unwrap_or_default();
                if String::from_utf8_lossy(&cmdline).split('\0').any(|a| a == needle) {
                    found.push(child);
                }
                queue.push(child);
            }
        }
    }
    found
}

/// CPU time (user + system, all threads) a process has used so far, in seconds.
pub fn cpu_seconds(pid: u32) -> Result<f64> {
    let stat =
        std::fs::read_to_string(format!("/proc/{pid}/stat")).with_context(|| format!("process {pid} is gone"))?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15 of the whole line.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields.get(11).and_then(|f| f.parse().ok()).unwrap_or(0)
        + fields.get(12).and_then(|f| f.parse().ok()).unwrap_or(0);
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK).ok().flatten().unwrap_or(100) as f64;
    Ok(ticks as f64 / hz)
}

/// Resident memory of a process, in MiB.
pub fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

#[cfg(test)]
mod tests {
    #[test]
    fn own_cpu_time_and_memory_are_read() {
        let me = std::process::id();
        let t0 = super::cpu_seconds(me).unwrap();
        let start = std::time::Instant::now();
        let mut x = 0u64;
        while start.elapsed().as_millis() < 100 {
            x = x.wrapping_mul(31).wrapping_add(7);
        }
        std::hint::black_box(x);
        assert!(super::cpu_seconds(me).unwrap() > t0, "100 ms of spinning must show as CPU time");
        assert!(super::rss_mib(me) > 1.0);
        assert!(super::cpu_seconds(u32::MAX).is_err());
    }
}
