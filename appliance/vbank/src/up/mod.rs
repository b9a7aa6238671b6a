//! `vbank up`: the all-in-one development node. Prepares the data directory, checks that every port is free, starts
//! each service as a supervised child process, waits until all are ready, prints the URLs, and stops everything on
//! Ctrl-C or SIGTERM. A child that reports a configuration error stops the whole node; others restart with back-off.

mod devenv;
mod kyc_dev;
mod policy;
mod process;

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use tokio::sync::mpsc;
use vbank_config::Config;
use vbank_service::client::{self, ClientConfig, Method};

pub use devenv::Ports;
pub(crate) use devenv::config_text;
use policy::{Decision, RestartPolicy};
use process::{Exit, Running};

/// Options of `vbank up`.
#[derive(Debug, Clone)]
pub struct UpOptions {
    /// State directory.
    pub data_dir: PathBuf,
    /// Ports for a fresh configuration.
    pub ports: Ports,
    /// Names the public certificate covers.
    pub public_names: Vec<String>,
    /// Print the URLs as one JSON object.
    pub json: bool,
    /// Give up waiting for readiness after this long (the node keeps running).
    pub ready_timeout: Duration,
}

/// A service `vbank up` runs.
struct Service {
    name: &'static str,
    /// The command line after `vbank`.
    args: Vec<std::ffi::OsString>,
    admin: std::net::SocketAddr,
    /// The admin path that answers 2xx when it is ready; None: ready once it accepts connections.
    probe: Option<&'static str>,
    policy: RestartPolicy,
    running: Option<Running>,
    restart_at: Option<Instant>,
    generation: u64,
    tail: Arc<std::sync::Mutex<VecDeque<String>>>,
}

/// Run the development node until a signal or a fatal error.
pub async fn run(opts: UpOptions) -> Result<()> {
    let env = devenv::prepare(&opts.data_dir, opts.ports, &opts.public_names)?;
    let cfg = env.config.clone();
    preflight(&cfg).await?;

    let config = || vec!["--config".into(), env.config_path.clone().into_os_string()];
    let ready = Some("/readyz");
    let mut list: Vec<(&'static str, Vec<std::ffi::OsString>, std::net::SocketAddr, Option<&'static str>)> = vec![
        ("keyd", [vec!["keyd".into()], config()].concat(), cfg.keyd.admin_listen, ready),
        ("gateway", [vec!["gateway".into()], config()].concat(), cfg.gateway.admin_listen, ready),
        ("recorder", [vec!["recorder".into()], config()].concat(), cfg.recorder.admin_listen, ready),
        ("kyc", [vec!["kyc".into()], config()].concat(), cfg.kyc.admin_listen, ready),
    ];
    if let (Some(sim), Some(listen)) = (&env.kyc_simulator, cfg.kyc.tencent.connect) {
        let creds = &env.credentials;
        let args: Vec<std::ffi::OsString> = vec![
            "kyc".into(),
            "simulate".into(),
            "--listen".into(),
            listen.to_string().into(),
            "--cert".into(),
            sim.cert.clone().into(),
            "--key".into(),
            sim.key.clone().into(),
            "--credentials".into(),
            creds.clone().into(),
            "--tencent-encryption-key".into(),
            sim.encryption_key.clone().into(),
            "--people".into(),
            sim.people.clone().into(),
        ];
        // Its certificate is the vendor's (from its own CA), so readiness is an accepted connection.
        list.push(("kyc-simulator", args, listen, None));
    }
    let mut services: Vec<Service> = list
        .into_iter()
        .map(|(name, args, admin, probe)| Service {
            name,
            args,
            admin,
            probe,
            policy: RestartPolicy::default(),
            running: None,
            restart_at: None,
            generation: 0,
            tail: Arc::default(),
        })
        .collect();

    let (tx, mut rx) = mpsc::unbounded_channel::<Exit>();
    let spawn_env = process::SpawnEnv::new(&env)?;
    for (i, s) in services.iter_mut().enumerate() {
        start(i, s, &spawn_env, &tx)?;
    }

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let probe_tls = vbank_tls::anonymous_client_config(&cfg.tls)?;
    let started = Instant::now();
    let mut announced = false;
    let mut tick = tokio::time::interval(Duration::from_millis(300));
    let outcome: Result<()> = loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break Ok(()),
            _ = term.recv() => break Ok(()),
            Some(exit) = rx.recv() => {
                let s = &mut services[exit.index];
                if exit.generation != s.generation {
                    continue;
                }
                s.running = None;
                match s.policy.exited(Instant::now(), exit.code) {
                    Decision::RestartAfter(d) => {
                        log::warn!("{} exited ({}); restarting in {:?}", s.name, describe(exit.code), d);
                        s.restart_at = Some(Instant::now() + d);
                    }
                    Decision::GiveUp(why) => {
                        let tail: Vec<String> = s.tail.lock().map(|t| t.iter().cloned().collect()).unwrap_or_default();
                        let last = tail.iter().rev().find(|l| !l.trim().is_empty()).cloned().unwrap_or_default();
                        break Err(anyhow::anyhow!("{} stopped ({}): {why}\n  its last words: {}", s.name, describe(exit.code), last.trim()));
                    }
                }
            }
            _ = tick.tick() => {
                let mut failed = None;
                for (i, s) in services.iter_mut().enumerate() {
                    if s.restart_at.is_some_and(|t| t <= Instant::now()) {
                        s.restart_at = None;
                        if let Err(e) = start(i, s, &spawn_env, &tx) {
                            failed = Some(e.context(format!("cannot restart {}", s.name)));
                        }
                    }
                }
                if let Some(e) = failed {
                    break Err(e);
                }
                if !announced {
                    let mut ready = true;
                    for s in &services {
                        ready &= s.running.is_some() && probe(&probe_tls, s.admin, s.probe).await;
                    }
                    if ready {
                        announce(&cfg, &env, opts.json);
                        announced = true;
                    } else if started.elapsed() > opts.ready_timeout {
                        log::warn!("not every service is ready after {:?}; see the log above, still waiting", opts.ready_timeout);
                        announced = true;
                    }
                }
            }
        }
    };
    log::info!("stopping");
    stop_all(&mut services, &mut rx).await;
    match outcome {
        Ok(()) => {
            eprintln!("vbank stopped.");
            Ok(())
        }
        Err(e) => {
            bail!("{e}\n  every other service was stopped; fix the cause and run `vbank up` again")
        }
    }
}

fn describe(code: Option<i32>) -> String {
    match code {
        Some(c) => format!("exit code {c}"),
        None => "killed by a signal".to_string(),
    }
}

fn start(index: usize, s: &mut Service, env: &process::SpawnEnv, tx: &mpsc::UnboundedSender<Exit>) -> Result<()> {
    s.generation += 1;
    let running = process::spawn(index, s.generation, s.name, &s.args, env, s.tail.clone(), tx.clone())?;
    s.policy.started(Instant::now());
    s.running = Some(running);
    Ok(())
}

/// Refuse to start anything if a listener's port is taken: nothing half-started.
async fn preflight(cfg: &Config) -> Result<()> {
    let mut errors = Vec::new();
    for (key, addr) in cfg.listeners() {
        if let Err(e) = vbank_service::bind(addr, key).await {
            errors.push(e.to_string());
        }
    }
    if let Err(e) = std::net::UdpSocket::bind(cfg.gateway.media_listen) {
        errors.push(format!(
            "cannot use UDP {} (gateway.media_listen): {e} (hint: stop the process using it or change gateway.media_listen)",
            cfg.gateway.media_listen
        ));
    }
    if !errors.is_empty() {
        bail!("{}", errors.join("\n"));
    }
    Ok(())
}

async fn probe(tls: &Arc<ClientConfig>, admin: std::net::SocketAddr, path: Option<&str>) -> bool {
    let Some(path) = path else {
        return tokio::net::TcpStream::connect(admin).await.is_ok();
    };
    matches!(
        client::call(tls.clone(), admin, "localhost", Method::GET, path, None, Duration::from_secs(2)).await,
        Ok((s, _)) if s.is_success()
    )
}

fn announce(cfg: &Config, env: &devenv::DevEnv, json: bool) {
    let public = cfg.gateway.public_url.trim_end_matches('/');
    let ca = cfg.tls.internal_ca.display().to_string();
    let admin = |a: std::net::SocketAddr| format!("https://{a}");
    if json {
        let v = serde_json::json!({
            "dev": true,
            "customer": format!("{public}/"),
            "teller": format!("{public}/teller"),
            "supervisor": format!("{public}/supervisor"),
            "admin": {"gateway": admin(cfg.gateway.admin_listen), "keyd": admin(cfg.keyd.admin_listen),
                      "recorder": admin(cfg.recorder.admin_listen), "kyc": admin(cfg.kyc.admin_listen)},
            "kyc_simulator": cfg.kyc.tencent.connect.filter(|_| env.kyc_simulator.is_some()).map(|a| format!("https://{a}")),
            "ca": ca,
            "data_dir": env.dir,
            "config": env.config_path,
        });
        println!("{v}");
    } else {
        println!(
            "\nvbank is up — DEVELOPMENT MODE (SoftHSM2 token, development CA; not for customers)\n\
             \n  customer page    {public}/\
             \n  teller console   {public}/teller\
             \n  supervisor       {public}/supervisor\
             \n  gateway admin    {gw}/healthz  /readyz  /metrics\
             \n  keyd admin       {kd}/healthz  /readyz  /metrics\
             \n  recorder admin   {rc}/healthz  /readyz  /metrics\
             \n  kyc admin        {ky}/healthz  /readyz  /metrics\
             \n  development CA   {ca}\
             \n  data directory   {dir}\
             \n\n  try: curl --cacert {ca} {public}/api/status\
             \n\nPress Ctrl-C to stop.",
            gw = admin(cfg.gateway.admin_listen),
            kd = admin(cfg.keyd.admin_listen),
            rc = admin(cfg.recorder.admin_listen),
            ky = admin(cfg.kyc.admin_listen),
            dir = env.dir.display(),
        );
    }
}

/// SIGTERM every child, wait for them, SIGKILL stragglers.
async fn stop_all(services: &mut [Service], rx: &mut mpsc::UnboundedReceiver<Exit>) {
    for s in services.iter() {
        if let Some(r) = &s.running {
            r.terminate();
        }
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while services.iter().any(|s| s.running.is_some()) {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(exit)) => {
                let s = &mut services[exit.index];
                if exit.generation == s.generation {
                    s.running = None;
                }
            }
            _ => {
                for s in services.iter_mut() {
                    if let Some(r) = s.running.take() {
                        log::warn!("{} did not stop within 10s; killing it", s.name);
                        r.kill();
                    }
                }
            }
        }
    }
}
