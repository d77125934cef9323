//! A private PostgreSQL for tests (feature `testing`): `initdb` into a temporary
//! directory and `postgres` listening only on a Unix socket there (as root both run as the
//! `postgres` user, since initdb refuses root), killed when the test process ends
//! (`setpriv --pdeathsig`). Never the system's cluster. Without PostgreSQL's binaries a test
//! fails, unless `LMTPD_TEST_SKIP` names `postgresql` outside CI
//! ([`lmtpd_store::testing::require`]).

#![allow(clippy::unwrap_used, clippy::missing_panics_doc)] // a failed unwrap is a failed test

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use lmtpd_store::testing;

/// A private PostgreSQL server for this test binary.
pub struct Cluster {
    socket_dir: PathBuf,
    port: u16,
    server: PathBuf,
    data: PathBuf,
    settings: Vec<String>,
    /// The running server's process id.
    pid: Mutex<u32>,
}

/// The directory of `initdb` and `postgres`: Debian's versioned directories, else `PATH`.
fn bin_dir() -> Option<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|b| b.join("postgres").exists() && b.join("initdb").exists())
        .collect();
    found.sort();
    if let Some(b) = found.pop() {
        return Some(b);
    }
    let out = Command::new("pg_config").arg("--bindir").output().ok()?;
    let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    dir.join("postgres").exists().then_some(dir)
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// `program` run as the `postgres` user when we are root (initdb refuses root), killed
/// when the thread that started it ends (`--pdeathsig`).
fn as_server_user(program: &Path) -> Command {
    let mut c = Command::new("setpriv");
    if is_root() {
        c.args(["--reuid=postgres", "--regid=postgres", "--clear-groups"]);
    }
    c.args(["--pdeathsig", "KILL", "--"]).arg(program);
    c
}

/// Removes the directories of clusters whose test process is gone (their servers died with
/// it).
fn remove_stale() {
    for e in std::fs::read_dir(std::env::temp_dir())
        .into_iter()
        .flatten()
        .flatten()
    {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix("lmtpd-pg-")
            .and_then(|r| r.rsplit_once('.'))
            .map(|(_, p)| p.to_string())
        else {
            continue;
        };
        if pid.parse::<u32>().is_ok() && !Path::new("/proc").join(&pid).exists() {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

impl Cluster {
    /// Starts a cluster with the extra server settings `settings` (`name=value`).
    pub fn start(tag: &str, port: u16, settings: &[&str]) -> Option<Cluster> {
        let bin = bin_dir();
        if !testing::require("postgresql", bin.is_some()) {
            return None;
        }
        let bin = bin?;
        remove_stale();
        let dir = std::env::temp_dir().join(format!("lmtpd-pg-{tag}.{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        if is_root() {
            let ok = Command::new("chown")
                .args(["-R", "postgres"])
                .arg(&dir)
                .status()
                .is_ok_and(|s| s.success());
            assert!(ok, "chown postgres {}", dir.display());
        }
        let data = dir.join("data");
        let out = as_server_user(&bin.join("initdb"))
            .args(["-D"])
            .arg(&data)
            .args(["-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"])
            .stdout(Stdio::null())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let c = Cluster {
            socket_dir: dir,
            port,
            server: bin.join("postgres"),
            data,
            settings: settings.iter().map(|s| s.to_string()).collect(),
            pid: Mutex::new(0),
        };
        c.run();
        Some(c)
    }

    /// Starts the server on the cluster's data directory and waits until it answers.
    fn run(&self) {
        let mut cmd = as_server_user(&self.server);
        cmd.arg("-D")
            .arg(&self.data)
            .arg("-k")
            .arg(&self.socket_dir)
            .args([
                "-p",
                &self.port.to_string(),
                "-c",
                "listen_addresses=",
                "-c",
                "max_connections=300",
            ]);
        for s in &self.settings {
            cmd.args(["-c", s]);
        }
        cmd.stdout(Stdio::null()).stderr(Stdio::null());
        // The server lives as long as this thread, which waits for it: it goes when the test
        // process does, or when `restart` stops it.
        let (tx, rx) = std::sync::mpsc::channel();
        thread::spawn(move || {
            let mut child = cmd.spawn().unwrap();
            tx.send(child.id()).unwrap();
            let _ = child.wait();
        });
        *self.pid.lock().unwrap() = rx.recv().unwrap();
        let t0 = Instant::now();
        loop {
            if postgres::Client::connect(&self.conninfo("postgres"), postgres::NoTls).is_ok() {
                return;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(60),
                "postgres never started"
            );
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Restarts the server (a fast shutdown: open transactions are rolled back, clients
    /// disconnected), as an admin's restart or a failover would.
    pub fn restart(&self) {
        let pid = *self.pid.lock().unwrap();
        let _ = Command::new("kill")
            .args(["-INT", &pid.to_string()])
            .status();
        let t0 = Instant::now();
        while Path::new("/proc").join(pid.to_string()).exists() {
            assert!(
                t0.elapsed() < Duration::from_secs(60),
                "postgres did not stop"
            );
            thread::sleep(Duration::from_millis(20));
        }
        self.run();
    }

    /// The connection string of database `db` on this cluster.
    pub fn conninfo(&self, db: &str) -> String {
        format!(
            "host={} port={} user=postgres dbname={db}",
            self.socket_dir.display(),
            self.port
        )
    }

    /// A fresh database; its connection string.
    pub fn database(&self) -> String {
        static N: AtomicUsize = AtomicUsize::new(0);
        let name = format!("t{}", N.fetch_add(1, Ordering::SeqCst));
        let mut c = postgres::Client::connect(&self.conninfo("postgres"), postgres::NoTls).unwrap();
        c.batch_execute(&format!("CREATE DATABASE {name}")).unwrap();
        self.conninfo(&name)
    }
}

/// The shared cluster of this test binary (`None`: PostgreSQL missing, skipping allowed).
pub fn cluster() -> Option<&'static Cluster> {
    static C: OnceLock<Option<Cluster>> = OnceLock::new();
    C.get_or_init(|| Cluster::start("main", 54_321, &["fsync=on"]))
        .as_ref()
}
