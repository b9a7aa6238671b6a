//! The peer SFU: Janus (Debian's `janus`, videoroom plugin) in a temporary configuration — ICE-lite, UDP host
//! candidates on one interface, the REST transport on loopback, every other plugin and transport off — driven through
//! its HTTP API. A leg is a videoroom with one publisher and one subscriber to it.
//!
//! libnice never offers loopback candidates, so Janus's media uses this host's first IPv4 interface address and the
//! generator's Janus peers bind to the same address: the kernel delivers such traffic locally, over `lo`, exactly as
//! it does vbank's 127.0.0.1 traffic. Nothing leaves the machine.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use serde_json::{Value, json};
use str0m::change::{SdpAnswer, SdpOffer};
use str0m::media::Direction;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::load::{Peer, offer, peer};
use crate::bench::node::pinned;

/// A running Janus; stopped and its configuration removed when dropped.
pub struct Janus {
    child: Child,
    dir: PathBuf,
    port: u16,
    ip: IpAddr,
    /// Where rooms record to, when recording.
    record: Option<PathBuf>,
    session: u64,
    transaction: u64,
}

impl Drop for Janus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

const PLUGINS_OFF: &str = "libjanus_audiobridge.so,libjanus_duktape.so,libjanus_echotest.so,libjanus_lua.so,\
                           libjanus_nosip.so,libjanus_recordplay.so,libjanus_sip.so,libjanus_streaming.so,\
                           libjanus_textroom.so,libjanus_videocall.so,libjanus_voicemail.so";
const TRANSPORTS_OFF: &str =
    "libjanus_websockets.so,libjanus_mqtt.so,libjanus_nanomsg.so,libjanus_pfunix.so,libjanus_rabbitmq.so";

/// This host's first up, non-loopback IPv4 interface: (name, address).
fn media_interface() -> Result<(String, IpAddr)> {
    use nix::net::if_::InterfaceFlags;
    nix::ifaddrs::getifaddrs()?
        .filter(|i| i.flags.contains(InterfaceFlags::IFF_UP) && !i.flags.contains(InterfaceFlags::IFF_LOOPBACK))
        .find_map(|i| {
            let v4 = i.address?.as_sockaddr_in()?.ip();
            Some((i.interface_name, IpAddr::V4(v4)))
        })
        .context("Janus (libnice) needs a non-loopback IPv4 interface for its media candidates, and there is none")
}

fn free_tcp_port() -> Result<u16> {
    (46_000u16..47_000)
        .find(|p| std::net::TcpListener::bind(("127.0.0.1", *p)).is_ok())
        .context("no free TCP port in 46000-47000 for Janus's HTTP API")
}

impl Janus {
    /// Start `bin` (normally /usr/bin/janus), pinned to `cpu` if given, and open an API session; its rooms record
    /// every publisher (.mjr files) when `record`.
    pub async fn start(bin: &Path, cpu: Option<usize>, record: bool) -> Result<Janus> {
        if !bin.exists() {
            bail!("{} not found: install Debian's janus package (tests/setup.sh does), or pass --janus", bin.display());
        }
        let lib = Path::new("/usr/lib/x86_64-linux-gnu/janus");
        let dir = std::env::temp_dir().join(format!("vbank-bench-janus-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        let port = free_tcp_port()?;
        let (ifname, ip) = media_interface()?;
        let d = dir.display();
        let l = lib.display();
        std::fs::write(
            dir.join("janus.jcfg"),
            format!(
                "general: {{ configs_folder = \"{d}\" plugins_folder = \"{l}/plugins\" transports_folder = \"{l}/transports\"\n\
                 events_folder = \"{l}/events\" loggers_folder = \"{l}/loggers\" debug_level = 3 session_timeout = 0 }}\n\
                 certificates: {{}}\nmedia: {{ rtp_port_range = \"33000-39000\" }}\n\
                 nat: {{ ice_lite = true ice_tcp = false ice_enforce_list = \"{ifname}\" ice_ipv6 = false }}\n\
                 plugins: {{ disable = \"{PLUGINS_OFF}\" }}\ntransports: {{ disable = \"{TRANSPORTS_OFF}\" }}\n\
                 events: {{ broadcast = false }}\nloggers: {{ disable = \"libjanus_jsonlog.so\" }}\n"
            ),
        )?;
        std::fs::write(
            dir.join("janus.transport.http.jcfg"),
            format!(
                "general: {{ json = \"compact\" base_path = \"/janus\" http = true port = {port} interface = \"lo\" https = false }}\n\
                 admin: {{ admin_http = false }}\n"
            ),
        )?;
        std::fs::write(dir.join("janus.plugin.videoroom.jcfg"), "general: { }\n")?;
        let log = std::fs::File::create(dir.join("janus.log"))?;
        let child = pinned(bin, cpu)
            .arg("-F")
            .arg(&dir)
            .arg("-C")
            .arg(dir.join("janus.jcfg"))
            .stdout(log.try_clone()?)
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let record = record.then(|| dir.join("recordings"));
        if let Some(r) = &record {
            std::fs::create_dir_all(r)?;
        }
        let mut janus = Janus { child, dir, port, ip, record, session: 0, transaction: 0 };
        let deadline = Instant::now() + Duration::from_secs(15);
        let created = loop {
            match janus.post("/janus", json!({"janus": "create"})).await {
                Ok(v) => break v,
                Err(e) if Instant::now() > deadline => {
                    let log = std::fs::read_to_string(janus.dir.join("janus.log")).unwrap_or_default();
                    let tail: Vec<&str> = log.lines().rev().take(5).collect();
                    bail!("Janus did not answer on port {port}: {e}; its log ends: {}", tail.join(" | "));
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        };
        janus.session = created["data"]["id"].as_u64().context("Janus created no session")?;
        Ok(janus)
    }

    /// Janus's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Janus's own version string, from `/janus/info`.
    pub async fn version(&mut self) -> Result<String> {
        let info = self.http("GET", "/janus/info", None).await?;
        Ok(info["version_string"].as_str().unwrap_or("unknown").to_string())
    }

    async fn http(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Value> {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await?;
        let body = body.map(Value::to_string).unwrap_or_default();
        let req = format!(
            "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        s.write_all(req.as_bytes()).await?;
        let mut resp = Vec::new();
        tokio::time::timeout(Duration::from_secs(40), s.read_to_end(&mut resp)).await.context("Janus timed out")??;
        let text = String::from_utf8_lossy(&resp);
        let (head, body) = text.split_once("\r\n\r\n").context("Janus sent no HTTP response")?;
        if !head.starts_with("HTTP/1.1 200") && !head.starts_with("HTTP/1.0 200") {
            bail!("{method} {path}: {}", head.lines().next().unwrap_or_default());
        }
        Ok(serde_json::from_str(body)?)
    }

    /// POST a request with a fresh transaction; an `error` answer is an error.
    async fn post(&mut self, path: &str, mut body: Value) -> Result<Value> {
        self.transaction += 1;
        body["transaction"] = json!(self.transaction.to_string());
        let v = self.http("POST", path, Some(&body)).await?;
        if v["janus"] == "error" {
            bail!("Janus: {}", v["error"]["reason"]);
        }
        Ok(v)
    }

    /// Send a plugin message on `handle` and wait for its asynchronous event (long-polling the session).
    async fn message(&mut self, handle: u64, body: Value, jsep: Option<Value>) -> Result<Value> {
        let mut req = json!({"janus": "message", "body": body});
        if let Some(j) = jsep {
            req["jsep"] = j;
        }
        let path = format!("/janus/{}/{handle}", self.session);
        let ack = self.post(&path, req).await?;
        if ack["janus"] == "success" {
            return Ok(ack);
        }
        let want = ack["transaction"].clone();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            let ev = self.http("GET", &format!("/janus/{}?maxev=1", self.session), None).await?;
            if ev["transaction"] == want && ev["janus"] == "event" {
                if let Some(e) = ev["plugindata"]["data"]["error"].as_str() {
                    bail!("videoroom: {e}");
                }
                return Ok(ev);
            }
        }
        bail!("no answer from Janus's videoroom within 20 s")
    }

    async fn attach(&mut self) -> Result<u64> {
        let v = self
            .post(&format!("/janus/{}", self.session), json!({"janus": "attach", "plugin": "janus.plugin.videoroom"}))
            .await?;
        v["data"]["id"].as_u64().context("Janus attached no handle")
    }

    /// Destroy the API session (Janus hangs up every handle and peer connection in it) and open a fresh one.
    pub async fn new_session(&mut self) -> Result<()> {
        self.post(&format!("/janus/{}", self.session), json!({"janus": "destroy"})).await?;
        let created = self.post("/janus", json!({"janus": "create"})).await?;
        self.session = created["data"]["id"].as_u64().context("Janus created no session")?;
        Ok(())
    }

    /// Videoroom `room` for `leg` and a str0m publisher in it; returns the publisher and its feed id.
    pub async fn publish(&mut self, room: u64, leg: u32) -> Result<(Peer, u64)> {
        let handle = self.attach().await?;
        let mut create = json!({"request": "create", "room": room, "publishers": 1, "audiocodec": "opus",
                            "videocodec": "vp8", "bitrate": 0, "notify_joining": false});
        if let Some(dir) = &self.record {
            create["record"] = json!(true);
            create["rec_dir"] = json!(dir);
        }
        self.message(handle, create, None).await?;
        let (mut rtc, sock) = peer(self.ip)?;
        let (audio, video, sdp, pending) = offer(&mut rtc, Direction::SendOnly)?;
        let join =
            json!({"request": "joinandconfigure", "room": room, "ptype": "publisher", "display": format!("leg {leg}")});
        let ev = self.message(handle, join, Some(json!({"type": "offer", "sdp": sdp.to_sdp_string()}))).await?;
        let feed = ev["plugindata"]["data"]["id"].as_u64().context("the publisher got no feed id")?;
        let answer = ev["jsep"]["sdp"].as_str().context("Janus answered the publisher without SDP")?;
        rtc.sdp_api().accept_answer(pending, SdpAnswer::from_sdp_string(answer)?)?;
        Ok((Peer::publisher(rtc, sock, leg, audio, video), feed))
    }

    /// A str0m subscriber to `feed` in `room`, once the publisher's media is up (retried for 20 s).
    pub async fn subscribe(&mut self, room: u64, leg: u32, feed: u64) -> Result<Peer> {
        let handle = self.attach().await?;
        let join = json!({"request": "join", "room": room, "ptype": "subscriber", "streams": [{"feed": feed}]});
        let deadline = Instant::now() + Duration::from_secs(20);
        let ev = loop {
            match self.message(handle, join.clone(), None).await {
                Ok(ev) => break ev,
                Err(e) if Instant::now() < deadline && e.to_string().contains("No such feed") => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => return Err(e),
            }
        };
        let offer_sdp = ev["jsep"]["sdp"].as_str().context("Janus offered the subscriber no SDP")?;
        let (mut rtc, sock) = peer(self.ip)?;
        let answer = rtc.sdp_api().accept_offer(SdpOffer::from_sdp_string(offer_sdp)?)?;
        let start = json!({"type": "answer", "sdp": answer.to_sdp_string()});
        self.message(handle, json!({"request": "start"}), Some(start)).await?;
        Ok(Peer::subscriber(rtc, sock, leg))
    }
}
