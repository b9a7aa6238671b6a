//! The drill's own appliance: `vbank up` (all services, a SoftHSM2 token, a development CA) in a scratch directory,
//! inside the drill's network namespace, so a drill on a production machine never touches the production node.

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};

/// The public port of the scratch appliance (free: the namespace is the drill's own).
pub const PUBLIC_PORT: u16 = 8443;
/// Its internal listeners use the ports after this one.
pub const INTERNAL_BASE: u16 = 9100;

/// A running scratch appliance; stopped when dropped.
pub struct Scratch {
    /// Its configuration file.
    pub config: PathBuf,
    child: Option<Child>,
    /// The network namespace it runs in (`ip netns`), when not the drill's own.
    netns: Option<String>,
}

/// `vbank`, run in the network namespace `netns` (when given).
fn vbank_in(netns: Option<&str>) -> Command {
    let exe = std::env::current_exe().expect("the running executable");
    match netns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns]).arg(exe);
            c
        }
        None => Command::new(exe),
    }
}

impl Scratch {
    /// Start `vbank up` on `data` (made on first start, reused after) and wait until every service is ready.
    pub fn start(data: &Path, ready_within: Duration) -> Result<Scratch> {
        Scratch::start_in(data, None, ready_within)
    }

    /// [`Scratch::start`] in the network namespace `netns`.
    pub fn start_in(data: &Path, netns: Option<&str>, ready_within: Duration) -> Result<Scratch> {
        let mut cmd = vbank_in(netns);
        cmd.args(["up", "--json", "--ready-timeout", &ready_within.as_secs().to_string(), "--data-dir"])
            .arg(data)
            .args(["--port", &PUBLIC_PORT.to_string(), "--internal-port-base", &INTERNAL_BASE.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(data.with_extension("log")).context("creating the appliance's log")?);
        bind_to_parent(&mut cmd);
        let mut child = cmd.spawn().context("starting vbank up")?;
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("piped")).read_line(&mut line)?;
        let mut s = Scratch { config: data.join("vbank.toml"), child: Some(child), netns: netns.map(str::to_string) };
        if serde_json::from_str::<serde_json::Value>(&line).is_err() {
            s.stop();
            bail!("the scratch appliance did not start (vbank up printed {line:?})");
        }
        s.wait_ready(ready_within)?;
        Ok(s)
    }

    /// The last `n` lines of the appliance's log (every service's, as `vbank up` prints them).
    pub fn log_tail(&self, n: usize) -> String {
        let text = self.config.parent().map(|d| std::fs::read_to_string(d.with_extension("log"))).and_then(Result::ok);
        let text = text.unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// Wait until `vbank status` reports every service ready.
    pub fn wait_ready(&self, within: Duration) -> Result<Duration> {
        let started = Instant::now();
        let out = self.vbank(&["status", "--wait", &within.as_secs().to_string()]).output()?;
        if !out.status.success() {
            bail!("the scratch appliance is not ready after {within:?}: {}", String::from_utf8_lossy(&out.stdout));
        }
        Ok(started.elapsed())
    }

    /// A `vbank` command against this appliance.
    pub fn vbank(&self, args: &[&str]) -> Command {
        let mut c = vbank_in(self.netns.as_deref());
        c.arg("--config").arg(&self.config).args(args).stdin(Stdio::null());
        c
    }

    /// Run a `vbank` command and require success; returns its standard output.
    pub fn run(&self, args: &[&str], stdin: Option<&str>) -> Result<String> {
        let mut c = self.vbank(args);
        c.stdout(Stdio::piped()).stderr(Stdio::piped());
        if stdin.is_some() {
            c.stdin(Stdio::piped());
        }
        let mut child = c.spawn()?;
        if let Some(text) = stdin {
            use std::io::Write as _;
            child.stdin.take().expect("piped").write_all(text.as_bytes())?;
        }
        let out = child.wait_with_output()?;
        if !out.status.success() {
            bail!("vbank {} failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// The key ceremony with `n` officers made in `dir` (all present as witnesses); returns their key files.
    pub fn ceremony(&self, dir: &Path, n: usize) -> Result<Vec<(String, PathBuf, PathBuf)>> {
        let mut officers = Vec::new();
        let mut args: Vec<String> = vec!["hsm".into(), "ceremony".into()];
        for i in 0..n {
            let name = format!("drill-officer-{}", (b'a' + i as u8) as char);
            let (key, public) = (dir.join(format!("{name}.key")), dir.join(format!("{name}.pub.pem")));
            self.run(&["hsm", "officer-keygen", "--name", &name, "--out", &dir.display().to_string()], None)?;
            args.extend(["--officer".into(), format!("{name}={}", public.display())]);
            args.extend(["--witness".into(), format!("{name}={}", key.display())]);
            officers.push((name, key, public));
        }
        self.run(&args.iter().map(String::as_str).collect::<Vec<_>>(), None)?;
        Ok(officers)
    }

    /// Stop every service (SIGTERM to `vbank up`, which stops its children) and wait.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let pid = nix::unistd::Pid::from_raw(c.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        self.stop();
    }
}

/// POST to keyd's API as `who` (the drill holds its scratch appliance's development certificates); the status and
/// the JSON answer.
pub async fn keyd_api(
    cfg: &vbank_config::Config,
    who: vbank_config::Service,
    path: &str,
    body: serde_json::Value,
) -> Result<(u16, serde_json::Value)> {
    use vbank_service::client::{self, Method};
    let tls = vbank_tls::service_client_config(&cfg.tls, who)?;
    let name = vbank_tls::service_dns_name(vbank_config::Service::Keyd);
    let body = Some(body.to_string().into());
    let (s, b) = client::call(tls, cfg.keyd.listen, &name, Method::POST, path, body, Duration::from_secs(20)).await?;
    Ok((s.as_u16(), serde_json::from_slice(&b).unwrap_or(serde_json::Value::Null)))
}

/// Have the kernel stop the appliance if the drill dies.
#[allow(unsafe_code)]
pub(crate) fn bind_to_parent(cmd: &mut Command) {
    use std::os::unix::process::CommandExt as _;
    // SAFETY: the closure runs in the forked child before exec and only calls prctl(2), which is
    // async-signal-safe; it touches no memory shared with the parent.
    unsafe {
        cmd.pre_exec(|| {
            nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGTERM).map_err(std::io::Error::from)?;
            Ok(())
        });
    }
}
