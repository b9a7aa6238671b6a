//! The gateway tier of the HA topology, built on this machine for a drill. A bridge (the bank's LAN) lives in the
//! drill's own network namespace, where the client sits ([`CLIENT`]). Two appliance nodes each have a network
//! namespace of their own, with every service (`vbank up`) and keepalived. The VIP ([`VIP`]) is where clients
//! connect; keepalived keeps it on a node that is alive and whose gateway answers /healthz. Shared between the
//! nodes, as in the bank's topology:
//! - one PostgreSQL, the state store (its own failover is the `db-failover` drill);
//! - the recordings storage: a directory here, NFS, CephFS or S3 there;
//! - the HSM's key material: a copy of the token, as an HSM cluster replicates its keys.
//!
//! Everything is torn down when the cluster is dropped.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};

use super::db_failover::{BIN_DIR, Procs};
use super::scratch::{INTERNAL_BASE, PUBLIC_PORT, Scratch, bind_to_parent};

/// The address clients connect to.
pub const VIP: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 100);
/// The client's address on the LAN.
pub const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 10);
const PG_PORT: u16 = 25440;

/// One appliance node.
pub struct Node {
    /// Its name (`[node] name`).
    pub name: String,
    /// Its network namespace (`ip netns`).
    pub netns: String,
    /// Its address on the LAN.
    pub addr: Ipv4Addr,
    /// Its appliance.
    pub scratch: Scratch,
}

/// Two nodes, the shared database and storage, and keepalived.
pub struct Cluster {
    /// node-a (keepalived's preferred holder of the VIP), node-b.
    pub nodes: Vec<Node>,
    /// The shared recordings storage.
    pub recordings: PathBuf,
    keepalived: Procs,
    postgres: Procs,
    netns: Vec<String>,
}

/// Run `ip` with `args`; its error names the command.
fn ip(args: &[&str]) -> Result<String> {
    let out = Command::new("ip").args(args).output().context("running ip (iproute2)")?;
    if !out.status.success() {
        bail!("ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn installed(tool: &str, hint: &str) -> Result<()> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    if !std::env::split_paths(&path).any(|d| d.join(tool).is_file()) {
        bail!("{tool} is not installed (hint: {hint})");
    }
    Ok(())
}

/// `text` with `from` replaced by `to`, which must be there.
fn replace(text: String, from: &str, to: &str) -> Result<String> {
    if !text.contains(from) {
        bail!("the development configuration has no {from:?} to change");
    }
    Ok(text.replacen(from, to, 1))
}

impl Cluster {
    /// Build it in `work` (the drill's directory) and wait until the VIP is on node-a.
    pub fn build(work: &Path) -> Result<Cluster> {
        installed("keepalived", "apt-get install keepalived")?;
        installed("curl", "apt-get install curl")?;
        if !Path::new(BIN_DIR).join("postgres").exists() {
            bail!("PostgreSQL 15 is not installed ({BIN_DIR}) (hint: apt-get install postgresql-15)");
        }
        let tag = std::process::id();
        let mut c = Cluster {
            nodes: Vec::new(),
            recordings: work.join("shared-recordings"),
            keepalived: Procs(Vec::new()),
            postgres: Procs(Vec::new()),
            netns: Vec::new(),
        };
        let socket = c.start_postgres(work)?;
        std::fs::create_dir_all(&c.recordings)?;
        ip(&["link", "add", "br0", "type", "bridge"])?;
        ip(&["link", "set", "br0", "up"])?;
        ip(&["addr", "add", &format!("{CLIENT}/24"), "dev", "br0"])?;
        for (i, name) in ["node-a", "node-b"].into_iter().enumerate() {
            let ns = format!("vbank-drill-{tag}-{}", &name[5..]);
            ip(&["netns", "add", &ns])?;
            c.netns.push(ns.clone());
            let veth = format!("veth-{}", &name[5..]);
            ip(&["link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &ns])?;
            ip(&["link", "set", &veth, "master", "br0", "up"])?;
            let addr = Ipv4Addr::new(10, 99, 0, i as u8 + 1);
            ip(&["-n", &ns, "link", "set", "lo", "up"])?;
            ip(&["-n", &ns, "link", "set", "eth0", "up"])?;
            ip(&["-n", &ns, "addr", "add", &format!("{addr}/24"), "dev", "eth0"])?;
            let data = work.join(name);
            if i == 1 {
                share_keys(&work.join("node-a"), &data)?;
            }
            std::fs::create_dir_all(&data)?;
            std::fs::write(data.join("vbank.toml"), node_config(&data, name, addr, &socket, &c.recordings)?)?;
            let scratch = Scratch::start_in(&data, Some(&ns), Duration::from_secs(240))
                .with_context(|| format!("starting {name}"))?;
            if i == 0 {
                // The key ceremony before node-b copies the token: both nodes then hold the same keys.
                scratch.ceremony(work, 2).with_context(|| format!("{name}'s log ends:\n{}", scratch.log_tail(20)))?;
            }
            c.nodes.push(Node { name: name.into(), netns: ns, addr, scratch });
        }
        for (i, node) in c.nodes.iter().enumerate() {
            let conf = work.join(format!("keepalived-{}.conf", node.name));
            std::fs::write(&conf, keepalived_config(&node.name, if i == 0 { 150 } else { 100 }))?;
            let log = std::fs::File::create(work.join(format!("keepalived-{}.log", node.name)))?;
            let mut cmd = Command::new("ip");
            cmd.args(["netns", "exec", &node.netns, "keepalived", "-n", "-l", "-P", "-f"])
                .arg(&conf)
                .arg("-p")
                .arg(work.join(format!("keepalived-{}.pid", node.name)))
                .arg("-r")
                .arg(work.join(format!("keepalived-{}-vrrp.pid", node.name)))
                .stdin(Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(log);
            bind_to_parent(&mut cmd);
            c.keepalived.0.push(cmd.spawn().context("starting keepalived")?);
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        while c.vip_holder() != Some(0) {
            if Instant::now() > deadline {
                let log = std::fs::read_to_string(work.join("keepalived-node-a.log")).unwrap_or_default();
                bail!("the VIP did not come up on node-a within 20 s; keepalived said:\n{log}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(c)
    }

    /// The node holding the VIP.
    pub fn vip_holder(&self) -> Option<usize> {
        let vip = format!(" {VIP}/");
        self.nodes
            .iter()
            .position(|n| ip(&["-n", &n.netns, "-o", "addr", "show", "dev", "eth0"]).is_ok_and(|a| a.contains(&vip)))
    }

    /// Node `i` dies as a machine does when it loses power: its link goes down, then every process on it is killed
    /// (no connection is closed, nothing says goodbye). Returns when that happened.
    pub fn kill_node(&mut self, i: usize) -> Result<Instant> {
        let ns = self.nodes[i].netns.clone();
        ip(&["-n", &ns, "link", "set", "eth0", "down"])?;
        let at = Instant::now();
        for pid in ip(&["netns", "pids", &ns])?.split_whitespace().filter_map(|p| p.parse::<i32>().ok()) {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
        }
        Ok(at)
    }

    /// PostgreSQL on a Unix socket in `work` (reachable from every namespace through the file system): its socket
    /// directory, with the database `vbank` made.
    fn start_postgres(&mut self, work: &Path) -> Result<PathBuf> {
        let pg = nix::unistd::User::from_name("postgres")?.context("no postgres user (Debian's postgresql)")?;
        std::fs::set_permissions(work, std::os::unix::fs::PermissionsExt::from_mode(0o711))?;
        let (dir, socket) = (work.join("pg"), work.join("pg-socket"));
        for d in [&dir, &socket] {
            std::fs::create_dir_all(d)?;
            nix::unistd::chown(d, Some(pg.uid), Some(pg.gid))?;
        }
        let as_postgres = |tool: &str| {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(Path::new(BIN_DIR).join(tool)).current_dir(&dir);
            c
        };
        let out = as_postgres("initdb")
            .args(["-U", "vbank", "--auth=trust", "-E", "UTF8", "--locale=C", "-D"])
            .arg(dir.join("data"))
            .output()?;
        if !out.status.success() {
            bail!("initdb failed: {}", String::from_utf8_lossy(&out.stderr).trim());
        }
        let log = std::fs::File::create(work.join("postgres.log"))?;
        let mut cmd = as_postgres("postgres");
        cmd.arg("-D").arg(dir.join("data")).arg("-k").arg(&socket);
        cmd.args(["-p", &PG_PORT.to_string(), "-c", "listen_addresses="]);
        cmd.stdin(Stdio::null()).stdout(log.try_clone()?).stderr(log);
        bind_to_parent(&mut cmd);
        self.postgres.0.push(cmd.spawn().context("starting postgres")?);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let made = as_postgres("createdb")
                .arg("-h")
                .arg(&socket)
                .args(["-p", &PG_PORT.to_string(), "-U", "vbank", "vbank"])
                .output()?;
            if made.status.success() {
                return Ok(socket);
            }
            if Instant::now() > deadline {
                let log = std::fs::read_to_string(work.join("postgres.log")).unwrap_or_default();
                bail!("PostgreSQL did not start within 30 s: {}\n{log}", String::from_utf8_lossy(&made.stderr).trim());
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.nodes.clear();
        drop(std::mem::replace(&mut self.keepalived, Procs(Vec::new())));
        drop(std::mem::replace(&mut self.postgres, Procs(Vec::new())));
        for ns in &self.netns {
            let _ = ip(&["netns", "del", ns]);
        }
    }
}

/// Node-b gets node-a's token (its keys, after the ceremony), credentials and certificates.
fn share_keys(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to.join("softhsm"))?;
    for (what, into) in [("softhsm/tokens", "softhsm"), ("credentials", ""), ("tls", "")] {
        let out = Command::new("cp").arg("-a").arg(from.join(what)).arg(to.join(into)).output()?;
        if !out.status.success() {
            bail!("copying {what} to node-b: {}", String::from_utf8_lossy(&out.stderr).trim());
        }
    }
    Ok(())
}

/// A node's configuration: the development one, on the shared database and recordings storage, media advertised
/// on its own address, every call recorded or refused.
fn node_config(data: &Path, name: &str, addr: Ipv4Addr, socket: &Path, recordings: &Path) -> Result<String> {
    let ports = crate::up::Ports {
        public: PUBLIC_PORT,
        internal_base: INTERNAL_BASE,
        media_advertise: Some((addr, INTERNAL_BASE + 4).into()),
        media_tcp: false,
        e2ee_direct: false,
        e2ee_sm4: false,
    };
    let text = crate::up::config_text(data, ports);
    let text = replace(text, "name = \"dev\"", &format!("name = \"{name}\""))?;
    let store = format!(
        "backend = \"postgres\"\n\n[store.postgres]\nhost = \"{}\"\nport = {PG_PORT}\ndbname = \"vbank\"\nuser = \"vbank\"",
        socket.display()
    );
    let text = replace(text, "backend = \"redb\"", &store)?;
    let text = replace(
        text,
        &format!("dir = \"{}/recordings\"", data.display()),
        &format!("dir = \"{}\"", recordings.display()),
    )?;
    replace(text, "recording = \"when-available\"", "recording = \"required\"")
}

/// keepalived on a node: VRRP on its LAN link every 0.1 s, the VIP only while the local gateway answers /healthz.
fn keepalived_config(name: &str, priority: u8) -> String {
    let admin = INTERNAL_BASE + 1;
    format!(
        "global_defs {{\n  router_id {name}\n  vrrp_version 3\n  vrrp_garp_master_delay 0\n  vrrp_garp_master_repeat 3\n  \
         script_user root\n}}\nvrrp_script gateway_healthy {{\n  script \"/usr/bin/curl -skf -m 1 -o /dev/null \
         https://127.0.0.1:{admin}/healthz\"\n  interval 1\n  fall 2\n  rise 1\n}}\nvrrp_instance vbank {{\n  state BACKUP\n  \
         interface eth0\n  virtual_router_id 51\n  priority {priority}\n  advert_int 0.1\n  nopreempt\n  \
         virtual_ipaddress {{\n    {VIP}/24 dev eth0\n  }}\n  track_script {{\n    gateway_healthy\n  }}\n}}\n"
    )
}
