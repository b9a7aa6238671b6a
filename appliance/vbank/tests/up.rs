//! `vbank up` end to end: real processes, real HTTPS and mTLS, a real SoftHSM2 token, clean stop, no orphans.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{VBANK, free_ports, get, live_processes_mentioning};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use vbank_config::Service;
use vbank_service::client::StatusCode;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_serves_every_url_over_https_and_stops_cleanly() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let (public, base) = free_ports();
    let (mut child, urls) = common::spawn_up(&data, public, base, Stdio::piped());
    let stderr = child.stderr.take().unwrap();
    let log = std::thread::spawn(move || BufReader::new(stderr).lines().map_while(Result::ok).collect::<Vec<_>>());
    assert_eq!(urls["customer"], format!("https://localhost:{public}/"));
    assert_eq!(urls["dev"], true);

    let (cfg, _) = vbank_config::load(&data.join("vbank.toml")).unwrap();
    let anon = vbank_tls::anonymous_client_config(&cfg.tls).unwrap();
    let public_addr = format!("127.0.0.1:{public}").parse().unwrap();

    let (s, body) = get(&anon, public_addr, "localhost", "/").await;
    assert_eq!(s, StatusCode::OK);
    assert!(body.contains("视频银行"), "{body}");
    let (s, body) = get(&anon, public_addr, "localhost", "/teller").await;
    assert!(s.is_success() && body.contains("柜员工作台"));
    // Routing: one node, so the least-loaded healthy node is this one (after its first heartbeat).
    let (s, body) = get(&anon, public_addr, "localhost", "/api/route").await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let route: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (route["node"].as_str(), route["url"].as_str()),
        (Some("dev"), Some(urls["customer"].as_str().unwrap().trim_end_matches('/')))
    );
    let (_, body) = get(&anon, public_addr, "localhost", "/api/status").await;
    let status: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!((status["ready"].as_bool(), status["dev"].as_bool()), (Some(true), Some(true)), "{body}");

    for (svc, admin) in [("gateway", cfg.gateway.admin_listen), ("keyd", cfg.keyd.admin_listen)] {
        assert_eq!(get(&anon, admin, "localhost", "/healthz").await.0, StatusCode::OK, "{svc}");
        let (s, body) = get(&anon, admin, "localhost", "/readyz").await;
        assert_eq!(s, StatusCode::OK, "{svc}: {body}");
        let (_, metrics) = get(&anon, admin, "localhost", "/metrics").await;
        assert!(metrics.contains(&format!("vbank_build_info{{service=\"{svc}\"")), "{metrics}");
    }

    // The operator's view of the same: `vbank status` asks every admin listener with the operator certificate.
    let out = std::process::Command::new(common::VBANK)
        .args(["--json", "status", "--wait", "30", "--config"])
        .arg(data.join("vbank.toml"))
        .output()
        .unwrap();
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(0), "{status}");
    let services: Vec<&str> =
        status["services"].as_array().unwrap().iter().map(|s| s["service"].as_str().unwrap()).collect();
    assert_eq!(services, ["gateway", "keyd", "recorder", "kyc"]);
    assert_eq!(status["ready"], true, "{status}");

    // keyd's internal API: mTLS, and only permitted services.
    let keyd_name = vbank_tls::service_dns_name(Service::Keyd);
    let as_cli = vbank_tls::service_client_config(&cfg.tls, Service::Cli).unwrap();
    let (s, body) = get(&as_cli, cfg.keyd.listen, &keyd_name, "/v1/hsm/status").await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let hsm: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(hsm["token"], "vbank-dev");
    assert!(hsm["library"].as_str().unwrap().contains("SoftHSM"));
    let as_keyd = vbank_tls::service_client_config(&cfg.tls, Service::Keyd).unwrap();
    assert_eq!(get(&as_keyd, cfg.keyd.listen, &keyd_name, "/v1/hsm/status").await.0, StatusCode::FORBIDDEN);
    let anon_call = vbank_service::client::call(
        anon.clone(),
        cfg.keyd.listen,
        &keyd_name,
        vbank_service::client::Method::GET,
        "/v1/hsm/status",
        None,
        Duration::from_secs(5),
    )
    .await;
    assert!(anon_call.is_err(), "keyd's API refuses callers without a certificate");

    // A crashed service is restarted with back-off and becomes ready again.
    let gateway_pid = || {
        live_processes_mentioning(&data)
            .into_iter()
            .find(|p| p.contains(" gateway --config"))
            .and_then(|p| p.split(':').next().map(str::to_string))
            .and_then(|p| p.parse::<i32>().ok())
    };
    let first = gateway_pid().expect("gateway child running");
    kill(Pid::from_raw(first), Signal::SIGKILL).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        assert!(Instant::now() < deadline, "gateway was not restarted within 30 s");
        tokio::time::sleep(Duration::from_millis(200)).await;
        let Some(pid) = gateway_pid() else { continue };
        if pid == first {
            continue;
        }
        if common::is_ready(&anon, cfg.gateway.admin_listen).await {
            break;
        }
    }

    kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        assert!(Instant::now() < deadline, "vbank up did not stop within 20 s of SIGTERM");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "{status:?}");
    let log = log.join().unwrap().join("\n");
    assert!(log.contains("gateway stopped") && log.contains("keyd stopped"), "{log}");
    assert!(log.contains("gateway exited (killed by a signal); restarting in"), "{log}");
    assert!(log.contains("[DEV]"), "development mode is labelled in every line");
    // The PIN never appears in the log.
    let pin = std::fs::read_to_string(data.join("credentials/hsm-pin")).unwrap();
    assert!(!log.contains(pin.trim()));
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(live_processes_mentioning(&data), Vec::<String>::new());

    // The gateway left its heartbeat with its load in the store (read now that the node is stopped).
    let store = vbank_store::RedbStore::open(&data.join("store/gateway.redb")).unwrap();
    let node = vbank_store::Store::get(&store, vbank_store::Table::Nodes, "dev").await.unwrap().expect("heartbeat");
    let node: serde_json::Value = serde_json::from_slice(&node.value).unwrap();
    for field in ["calls", "participants", "egress_bps", "cpu_percent", "heartbeat_unix", "public_url"] {
        assert!(node.get(field).is_some(), "{field} missing from {node}");
    }

    // A second start reuses the token, CA and configuration.
    let pin_again = std::fs::read_to_string(data.join("credentials/hsm-pin")).unwrap();
    assert_eq!(pin, pin_again);
}

#[test]
fn a_busy_port_stops_everything_before_it_starts() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let (public, base) = free_ports();
    let _squatter = std::net::TcpListener::bind(("0.0.0.0", public)).unwrap();
    let out = Command::new(VBANK)
        .args(["up", "--data-dir"])
        .arg(&data)
        .args(["--port", &public.to_string(), "--internal-port-base", &base.to_string()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("gateway.listen") && err.contains("another process"), "{err}");
    assert_eq!(live_processes_mentioning(&data), Vec::<String>::new());
}

#[test]
fn a_service_without_its_credential_exits_with_one_clear_line() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("vbank.toml");
    std::fs::write(
        &cfg,
        format!(
            "[tls]\ndir = \"{}\"\n[hsm]\npin = \"file:{}/missing-pin\"\n",
            tmp.path().display(),
            tmp.path().display()
        ),
    )
    .unwrap();
    let out = Command::new(VBANK).args(["keyd", "--config"]).arg(&cfg).output().unwrap();
    assert_eq!(out.status.code(), Some(vbank_service::exit::CONFIG));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("missing-pin") && err.contains("create the file"), "{err}");
}

#[test]
fn a_service_with_a_broken_config_exits_78() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("vbank.toml");
    std::fs::write(&cfg, "[gateway]\nlisten = \"nowhere\"\n").unwrap();
    let out = Command::new(VBANK).args(["gateway", "--config"]).arg(&cfg).output().unwrap();
    assert_eq!(out.status.code(), Some(vbank_service::exit::CONFIG));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("line 2") && err.contains("gateway.listen"), "{err}");
}

#[test]
fn an_unreachable_database_exits_with_one_clear_line() {
    let tmp = tempfile::tempdir().unwrap();
    let (public, base) = free_ports();
    let extra = format!(
        "[store]\nbackend = \"postgres\"\n[store.postgres]\nhost = \"{}/no-such-socket-dir\"\nconnect_timeout_s = 2\n",
        tmp.path().display()
    );
    let (cfg, _) = common::node_config(tmp.path(), public, base, &extra);
    let out = Command::new(VBANK).args(["gateway", "--config"]).arg(&cfg).output().unwrap();
    assert_eq!(out.status.code(), Some(vbank_service::exit::UNAVAILABLE));
    let err = String::from_utf8_lossy(&out.stderr);
    let last = err.lines().last().unwrap_or_default();
    assert!(last.contains("PostgreSQL") && last.contains("[store.postgres]"), "{err}");
    // Nothing was left listening.
    assert!(std::net::TcpListener::bind(("127.0.0.1", public)).is_ok());
}
