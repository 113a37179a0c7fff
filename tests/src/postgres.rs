//! A PostgreSQL server of the test's own, in a temporary directory on a free port, so a test can restart
//! it (a database outage) without disturbing the shared server other tests use.
//!
//! Built from the installed server binaries (`pg_config --bindir`, else the newest
//! `/usr/lib/postgresql/*/bin`). PostgreSQL refuses to run as root, so as root the cluster belongs to the
//! `postgres` user and every server command runs through `runuser`.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;

use tempfile::TempDir;

/// A running private PostgreSQL server, stopped and removed on drop.
pub struct PrivatePostgres {
    dir: TempDir,
    bin: PathBuf,
    port: u16,
    as_root: bool,
}

impl PrivatePostgres {
    /// Creates a cluster (trust auth, user `postgres`) and starts it on a free loopback port.
    ///
    /// # Panics
    /// When the server binaries are missing or the server does not start.
    pub fn start() -> Self {
        let bin = server_bindir();
        let dir = tempfile::Builder::new()
            .prefix("sagad-pg-")
            .tempdir()
            .expect("temp dir");
        let as_root = is_root();
        if as_root {
            run(Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path()));
        }
        let port = free_port();
        let pg = Self {
            dir,
            bin,
            port,
            as_root,
        };
        pg.server_command("initdb", |c| {
            c.args(["--auth=trust", "--username=postgres", "--no-sync", "-D"])
                .arg(pg.data());
        });
        pg.pg_ctl(&["start", "-w"]);
        pg
    }

    /// Creates database `name` and returns its URL.
    pub async fn create_database(&self, name: &str) -> String {
        let admin = sqlx::PgPool::connect(&self.url("postgres"))
            .await
            .expect("connect to the private server");
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&admin)
            .await
            .expect("create database");
        admin.close().await;
        self.url(name)
    }

    /// URL of database `name` on this server.
    pub fn url(&self, name: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{name}", self.port)
    }

    /// Restarts the server (fast shutdown: every connection is cut), waiting until it accepts again.
    pub fn restart(&self) {
        self.pg_ctl(&["restart", "-w", "-m", "fast"]);
    }

    /// Stops the server (fast shutdown), as an outage would.
    pub fn stop(&self) {
        self.pg_ctl(&["stop", "-w", "-m", "fast"]);
    }

    /// Starts the server again after [`PrivatePostgres::stop`], waiting until it accepts connections.
    pub fn resume(&self) {
        self.pg_ctl(&["start", "-w"]);
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn pg_ctl(&self, args: &[&str]) {
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -k {} -c fsync=off -c max_connections=200",
            self.port,
            self.dir.path().display()
        );
        let log = self.dir.path().join("server.log");
        self.server_command("pg_ctl", |c| {
            c.args(args)
                .arg("-D")
                .arg(self.data())
                .arg("-l")
                .arg(&log)
                .args(["-o", &options]);
        });
    }

    fn server_command(&self, program: &str, configure: impl FnOnce(&mut Command)) {
        let path = self.bin.join(program);
        let mut command = if self.as_root {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(path);
            c
        } else {
            Command::new(path)
        };
        configure(&mut command);
        run(&mut command);
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let path = self.bin.join("pg_ctl");
        let mut command = if self.as_root {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(path);
            c
        } else {
            Command::new(path)
        };
        // Immediate: the test is over, nothing needs a clean checkpoint.
        let _ = command
            .args(["stop", "-m", "immediate", "-D"])
            .arg(self.data())
            .output();
    }
}

fn run(command: &mut Command) {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    assert!(
        output.status.success(),
        "{command:?} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

fn server_bindir() -> PathBuf {
    let from_pg_config = Command::new("pg_config")
        .arg("--bindir")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()))
        .filter(|dir| dir.join("initdb").is_file());
    if let Some(dir) = from_pg_config {
        return dir;
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.path().join("bin"))
                .filter(|bin| bin.join("initdb").is_file())
                .collect()
        })
        .unwrap_or_default();
    versions.sort_by_key(|p| version_of(p));
    versions
        .pop()
        .expect("PostgreSQL server binaries (initdb, pg_ctl): run scripts/ensure-postgres.sh")
}

fn version_of(bin: &Path) -> u32 {
    bin.parent()
        .and_then(Path::file_name)
        .and_then(|v| v.to_str())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("addr").port()
}
