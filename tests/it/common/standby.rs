//! A throwaway PostgreSQL primary and a streaming standby made from it with
//! `pg_basebackup -R`, each on a port of its own, for the read-replica
//! tests. Built from the installed server binaries the way
//! `scripts/lib/postgres.sh` builds its cluster (found the same way; as root
//! they run as `postgres`), on ports from [`free_port`].
//!
//! Both servers are children of the test process: dropping the pair (at the
//! end of a test, or while a failed test unwinds) stops them and deletes
//! their directory; a runner that kills the test stops them with it (same
//! process group). A directory whose test process died without unwinding is
//! deleted by the next pair made: each pair holds a lock on a file named
//! after its directory for as long as its process lives.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::Signal;
use sqlx::{Connection, PgConnection};

use super::child::free_port;

/// Where pairs live: `<temp>/interests-receiver-standby/<name>/` with the
/// lock file `<name>.lock` beside it.
fn base_dir() -> PathBuf {
    std::env::temp_dir().join("interests-receiver-standby")
}

/// One server of the pair.
pub struct Server {
    pub port: u16,
    data: PathBuf,
    log: PathBuf,
    process: Option<tokio::process::Child>,
}

impl Server {
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

pub struct ReplicatedPair {
    pub primary: Server,
    pub standby: Server,
    root: PathBuf,
    bindir: PathBuf,
    /// uid and gid the servers run as (`postgres` when the tests run as root).
    owner: Option<(u32, u32)>,
    _lock: File,
}

impl ReplicatedPair {
    /// Makes, starts and waits for a primary and its standby.
    pub async fn start() -> ReplicatedPair {
        let base = base_dir();
        std::fs::create_dir_all(&base).unwrap();
        sweep_leftovers(&base);
        let name = format!("{}-{}", std::process::id(), rand::random::<u32>());
        let lock = File::create(base.join(format!("{name}.lock"))).unwrap();
        lock.try_lock().expect("a new lock file is free");
        let root = base.join(&name);
        std::fs::create_dir(&root).unwrap();
        let owner = server_owner();
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(&root, Some(uid), Some(gid)).unwrap();
        }
        let server = |dir: &str| Server {
            port: free_port(),
            data: root.join(dir),
            log: root.join(format!("{dir}.log")),
            process: None,
        };
        let mut pair = ReplicatedPair {
            primary: server("primary"),
            standby: server("standby"),
            root,
            bindir: pg_bindir(),
            owner,
            _lock: lock,
        };

        let primary_data = pair.primary.data.to_str().unwrap().to_owned();
        pair.run(
            "initdb",
            &[
                "-D",
                &primary_data,
                "-U",
                "postgres",
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
                "--no-instructions",
            ],
        )
        .await;
        // Durability is pointless here (fsync off); synchronous_commit stays
        // on, as in production, so a visible commit is a flushed one.
        append_conf(
            &pair.primary.data,
            &format!(
                "listen_addresses = '127.0.0.1'\nport = {}\nunix_socket_directories = '{}'\n\
                 max_connections = 60\nfsync = off\nwal_level = replica\nmax_wal_senders = 4\n\
                 wal_keep_size = '64MB'\nhot_standby = on\n",
                pair.primary.port,
                pair.root.display()
            ),
        );
        pair.start_server(Role::Primary).await;

        let standby_data = pair.standby.data.to_str().unwrap().to_owned();
        let primary_port = pair.primary.port.to_string();
        pair.run(
            "pg_basebackup",
            &[
                "-h",
                "127.0.0.1",
                "-p",
                &primary_port,
                "-U",
                "postgres",
                "-D",
                &standby_data,
                "-R",
                "-X",
                "stream",
                "-c",
                "fast",
                "--no-sync",
            ],
        )
        .await;
        // Later lines win: the standby's own port over the primary's.
        append_conf(
            &pair.standby.data,
            &format!("port = {}\n", pair.standby.port),
        );
        pair.start_standby().await;
        pair
    }

    /// Starts (again) the standby and waits until it answers in recovery.
    pub async fn start_standby(&mut self) {
        self.start_server(Role::Standby).await;
        let in_recovery: bool = sqlx::query_scalar("SELECT pg_is_in_recovery()")
            .fetch_one(&mut self.connect(Role::Standby).await)
            .await
            .unwrap();
        assert!(in_recovery, "the standby is not in recovery");
    }

    /// Stops the standby (fast shutdown) and waits until it has exited.
    pub async fn stop_standby(&mut self) {
        let mut process = self.standby.process.take().expect("the standby runs");
        super::signal(process.id().unwrap(), Signal::SIGINT);
        tokio::time::timeout(Duration::from_secs(30), process.wait())
            .await
            .expect("the standby stops within 30 s")
            .unwrap();
    }

    /// Pauses WAL replay on the standby: from then on it misses every write
    /// of the primary until [`ReplicatedPair::resume_replay`].
    pub async fn pause_replay(&self) {
        let mut standby = self.connect(Role::Standby).await;
        sqlx::query("SELECT pg_wal_replay_pause()")
            .execute(&mut standby)
            .await
            .unwrap();
        // Pausing is requested, then takes effect: wait until it has.
        for _ in 0..600 {
            let state: String = sqlx::query_scalar("SELECT pg_get_wal_replay_pause_state()")
                .fetch_one(&mut standby)
                .await
                .unwrap();
            if state == "paused" {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("WAL replay did not pause within 30 s");
    }

    pub async fn resume_replay(&self) {
        sqlx::query("SELECT pg_wal_replay_resume()")
            .execute(&mut self.connect(Role::Standby).await)
            .await
            .unwrap();
    }

    fn server(&self, role: Role) -> &Server {
        match role {
            Role::Primary => &self.primary,
            Role::Standby => &self.standby,
        }
    }

    async fn connect(&self, role: Role) -> PgConnection {
        PgConnection::connect(&self.server(role).url())
            .await
            .unwrap()
    }

    /// `bin/<program> args` as the servers' owner, which must succeed.
    async fn run(&self, program: &str, args: &[&str]) {
        let output = self
            .command(program)
            .args(args)
            .output()
            .await
            .unwrap_or_else(|e| panic!("{program} cannot run: {e}"));
        assert!(
            output.status.success(),
            "{program} failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }

    fn command(&self, program: &str) -> tokio::process::Command {
        let mut command = tokio::process::Command::new(self.bindir.join(program));
        command.stdin(Stdio::null()).current_dir(&self.root);
        if let Some((uid, gid)) = self.owner {
            command.uid(uid).gid(gid);
        }
        command
    }

    /// Starts `postgres` on a server's data directory (no `pg_ctl`: a child
    /// of ours, in our process group) and waits until it takes connections.
    async fn start_server(&mut self, role: Role) {
        let server = self.server(role);
        let log = File::options()
            .create(true)
            .append(true)
            .open(&server.log)
            .unwrap();
        let process = self
            .command("postgres")
            .arg("-D")
            .arg(&server.data)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("postgres starts");
        let url = server.url();
        let log = server.log.clone();
        match role {
            Role::Primary => self.primary.process = Some(process),
            Role::Standby => self.standby.process = Some(process),
        }
        for _ in 0..600 {
            if let Ok(connection) = PgConnection::connect(&url).await {
                let _ = connection.close().await;
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "{role:?} did not take connections within 30 s:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
    }
}

#[derive(Debug, Clone, Copy)]
enum Role {
    Primary,
    Standby,
}

impl Drop for ReplicatedPair {
    fn drop(&mut self) {
        for server in [&mut self.standby, &mut self.primary] {
            if let Some(mut process) = server.process.take() {
                stop_now(&mut process);
            }
        }
        let _ = std::fs::remove_dir_all(&self.root);
        let _ = std::fs::remove_file(self.root.with_extension("lock"));
    }
}

/// Immediate shutdown (SIGQUIT: no checkpoint, the data is thrown away),
/// waited for so that the directory can be deleted.
fn stop_now(process: &mut tokio::process::Child) {
    if let Some(pid) = process.id() {
        super::signal(pid, Signal::SIGQUIT);
    }
    for _ in 0..200 {
        if !matches!(process.try_wait(), Ok(None)) {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = process.start_kill();
}

/// Deletes the pairs of test processes that died without dropping them
/// (their lock is free), stopping any server still running there.
fn sweep_leftovers(base: &Path) {
    let Ok(entries) = std::fs::read_dir(base) else {
        return;
    };
    for entry in entries.flatten() {
        let dir = entry.path();
        if !dir.is_dir() {
            continue;
        }
        let lock = dir.with_extension("lock");
        let Ok(file) = File::create(&lock) else {
            continue;
        };
        if file.try_lock().is_err() {
            continue; // its test is running
        }
        for server in ["primary", "standby"] {
            let pid = std::fs::read_to_string(dir.join(server).join("postmaster.pid"))
                .ok()
                .and_then(|s| s.lines().next()?.trim().parse::<i32>().ok());
            if let Some(pid) = pid {
                let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGQUIT);
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
        let _ = std::fs::remove_file(&lock);
    }
}

fn append_conf(data: &Path, lines: &str) {
    let mut conf = File::options()
        .append(true)
        .open(data.join("postgresql.conf"))
        .unwrap();
    writeln!(conf, "\n# Added by tests/it/common/standby.rs\n{lines}").unwrap();
}

/// The directory of `initdb`, `postgres` and `pg_basebackup`: PATH first,
/// then the newest `/usr/lib/postgresql/<version>/bin` (Debian keeps them
/// off PATH), as `scripts/lib/postgres.sh` looks.
fn pg_bindir() -> PathBuf {
    let on_path = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .find(|dir| dir.join("pg_basebackup").is_file() && dir.join("initdb").is_file())
    });
    if let Some(dir) = on_path {
        return dir;
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path().join("bin"))))
        .filter(|(_, bin)| bin.join("initdb").is_file())
        .collect();
    versions.sort();
    versions
        .pop()
        .map(|(_, bin)| bin)
        .expect("the PostgreSQL server binaries (initdb, postgres, pg_basebackup) are installed")
}

/// PostgreSQL refuses to run as root: then the servers run as `postgres`
/// (as in scripts/lib/postgres.sh), else as whoever runs the tests.
fn server_owner() -> Option<(u32, u32)> {
    let id = |args: &[&str]| -> u32 {
        let output = std::process::Command::new("id")
            .args(args)
            .output()
            .expect("`id` runs");
        assert!(
            output.status.success(),
            "`id {args:?}` failed (as root, the tests need a `postgres` user)"
        );
        String::from_utf8_lossy(&output.stdout)
            .trim()
            .parse()
            .unwrap()
    };
    if id(&["-u"]) != 0 {
        return None;
    }
    Some((id(&["-u", "postgres"]), id(&["-g", "postgres"])))
}
