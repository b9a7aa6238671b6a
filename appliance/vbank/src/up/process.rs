//! Child processes of `vbank up`: spawned with the node's environment, stderr forwarded line by line (the last lines
//! kept to explain a failure), exit reported on a channel, and bound to the supervisor's life (PR_SET_PDEATHSIG) so
//! that no child outlives it, even if the supervisor is killed with SIGKILL.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};

use anyhow::{Context as _, Result};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::mpsc;

use super::devenv::DevEnv;

/// Lines of a child's stderr kept for error reports.
const TAIL_LINES: usize = 20;

/// A child exited.
#[derive(Debug)]
pub struct Exit {
    /// Index of the service.
    pub index: usize,
    /// Which start of it (stale exits of earlier generations are ignored).
    pub generation: u64,
    /// Exit code; None when killed by a signal.
    pub code: Option<i32>,
}

/// What every child gets.
#[derive(Debug)]
pub struct SpawnEnv {
    exe: PathBuf,
    env: Vec<(String, OsString)>,
}

impl SpawnEnv {
    /// The environment for the children of `dev`.
    pub fn new(dev: &DevEnv) -> Result<SpawnEnv> {
        let exe = std::env::current_exe().context("cannot find the vbank executable")?;
        let mut env = vec![("CREDENTIALS_DIRECTORY".to_string(), dev.credentials.clone().into_os_string())];
        if let Some(conf) = &dev.softhsm_conf {
            env.push(("SOFTHSM2_CONF".to_string(), conf.clone().into_os_string()));
        }
        Ok(SpawnEnv { exe, env })
    }
}

/// A running child.
#[derive(Debug)]
pub struct Running {
    pid: Pid,
}

impl Running {
    /// Ask it to stop.
    pub fn terminate(&self) {
        let _ = kill(self.pid, Signal::SIGTERM);
    }

    /// Stop it now.
    pub fn kill(&self) {
        let _ = kill(self.pid, Signal::SIGKILL);
    }
}

/// Start `vbank <args>` (e.g. `gateway --config <path>`).
pub fn spawn(
    index: usize,
    generation: u64,
    service: &'static str,
    args: &[OsString],
    env: &SpawnEnv,
    tail: Arc<Mutex<VecDeque<String>>>,
    exits: mpsc::UnboundedSender<Exit>,
) -> Result<Running> {
    let mut cmd = tokio::process::Command::new(&env.exe);
    cmd.args(args)
        .envs(env.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::inherit())
        .stderr(Stdio::piped());
    bind_to_parent(&mut cmd);
    let mut child = cmd.spawn().with_context(|| format!("cannot start {service}"))?;
    let pid = Pid::from_raw(child.id().context("child has no pid")? as i32);
    if let Some(stderr) = child.stderr.take() {
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                eprintln!("{line}");
                if let Ok(mut t) = tail.lock() {
                    if t.len() == TAIL_LINES {
                        t.pop_front();
                    }
                    t.push_back(line);
                }
            }
        });
    }
    tokio::spawn(async move {
        let code = child.wait().await.ok().and_then(|s| s.code());
        let _ = exits.send(Exit { index, generation, code });
    });
    Ok(Running { pid })
}

/// Have the kernel send SIGTERM to the child when the supervisor dies.
#[allow(unsafe_code)]
fn bind_to_parent(cmd: &mut tokio::process::Command) {
    // SAFETY: the closure runs in the forked child before exec and only calls prctl(2), which is
    // async-signal-safe; it touches no memory shared with the parent.
    unsafe {
        cmd.pre_exec(|| {
            nix::sys::prctl::set_pdeathsig(Signal::SIGTERM).map_err(std::io::Error::from)?;
            Ok(())
        });
    }
}
