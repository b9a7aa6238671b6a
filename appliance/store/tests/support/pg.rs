//! A private PostgreSQL server for one test: initdb into a temp dir, listen only on a Unix socket in that dir,
//! stopped (immediate) on drop. Uses Debian's server binaries; as root it runs them as the `postgres` user, since
//! PostgreSQL refuses to run as root.

use std::path::{Path, PathBuf};
use std::process::Command;

pub struct PgServer {
    pub dir: PathBuf,
    pub port: u16,
    bin: PathBuf,
    as_postgres: bool,
    _keep: tempfile::TempDir,
}

fn find_bin() -> PathBuf {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL server is not installed: tests/run.sh installs Debian's postgresql")
        .filter_map(|e| e.ok())
        .map(|e| e.path().join("bin"))
        .filter(|p| p.join("initdb").exists())
        .collect();
    found.sort();
    found.pop().expect("no /usr/lib/postgresql/*/bin/initdb")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl PgServer {
    pub fn start() -> PgServer {
        let keep = tempfile::Builder::new().prefix("vbank-pg-").tempdir().unwrap();
        let dir = keep.path().to_path_buf();
        let as_postgres = nix::unistd::geteuid().is_root();
        if as_postgres {
            let pg = nix::unistd::User::from_name("postgres").unwrap().expect("user postgres (Debian postgresql)");
            nix::unistd::chown(&dir, Some(pg.uid), Some(pg.gid)).unwrap();
        }
        let server = PgServer { dir: dir.clone(), port: free_port(), bin: find_bin(), as_postgres, _keep: keep };
        let data = dir.join("data");
        server.run("initdb", &["-A", "trust", "-U", "vbank", "--no-sync", "-D", data.to_str().unwrap()]);
        let opts = format!("-k {} -p {} -c listen_addresses='' -c fsync=off", dir.display(), server.port);
        server.run(
            "pg_ctl",
            &["-D", data.to_str().unwrap(), "-o", &opts, "-l", dir.join("log").to_str().unwrap(), "-w", "start"],
        );
        server.run("createdb", &["-h", dir.to_str().unwrap(), "-p", &server.port.to_string(), "-U", "vbank", "vbank"]);
        server
    }

    #[allow(dead_code)] // not every test binary uses it
    pub fn create_db(&self, name: &str) {
        let (dir, port) = (self.dir.to_str().unwrap(), self.port.to_string());
        self.run("createdb", &["-h", dir, "-p", &port, "-U", "vbank", name]);
    }

    fn run(&self, tool: &str, args: &[&str]) {
        let exe = self.bin.join(tool);
        let out = if self.as_postgres {
            Command::new("runuser").args(["-u", "postgres", "--"]).arg(&exe).args(args).output()
        } else {
            Command::new(&exe).args(args).output()
        }
        .unwrap_or_else(|e| panic!("{}: {e}", exe.display()));
        assert!(
            out.status.success(),
            "{tool} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub fn socket_dir(&self) -> &Path {
        &self.dir
    }

    pub fn stop(&self) {
        let data = self.dir.join("data");
        self.run("pg_ctl", &["-D", data.to_str().unwrap(), "-m", "immediate", "-w", "stop"]);
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        if self.dir.join("data/postmaster.pid").exists() {
            let data = self.dir.join("data");
            let exe = self.bin.join("pg_ctl");
            let args = ["-D", data.to_str().unwrap(), "-m", "immediate", "stop"];
            let _ = if self.as_postgres {
                Command::new("runuser").args(["-u", "postgres", "--"]).arg(&exe).args(args).output()
            } else {
                Command::new(&exe).args(args).output()
            };
        }
    }
}
