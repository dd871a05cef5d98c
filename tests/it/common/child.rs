//! Runs the real `interests-receiver` binary as a child process, so tests
//! can `kill -9` it and start it again on the same database.

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use interests_receiver::sandbox::{Sandbox, SandboxConfig};
use sqlx::PgPool;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub const KEY: &str = "child-key";
pub const SECRET: &str = "child-secret";

/// The URL of the database `#[sqlx::test]` made for this test.
pub fn database_url(pool: &PgPool) -> String {
    let base = std::env::var("DATABASE_URL").expect("DATABASE_URL is set for tests");
    let name = pool.connect_options().get_database().unwrap().to_owned();
    let mut url = url::Url::parse(&base).unwrap();
    url.set_path(&name);
    url.to_string()
}

/// A simulator in this process, with its address.
pub struct TestSandbox {
    pub sandbox: Sandbox,
    pub url: String,
    stop: CancellationToken,
}

impl TestSandbox {
    pub async fn start(time_scale: f64) -> Self {
        let sandbox = Sandbox::new(SandboxConfig {
            api_key: KEY.into(),
            api_secret: SECRET.into(),
            time_scale,
            rate_per_minute: 100_000,
            rate_per_hour: 1_000_000,
        });
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let stop = CancellationToken::new();
        tokio::spawn(sandbox.clone().serve(listener, stop.clone()));
        TestSandbox { sandbox, url, stop }
    }

    /// Number of accepted jobs whose subject email is `email`.
    pub fn jobs_for(&self, email: &str) -> usize {
        self.sandbox
            .jobs()
            .iter()
            .filter(|j| j.subject.email.as_deref() == Some(email))
            .count()
    }
}

impl Drop for TestSandbox {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// A port for a child process to listen on, that no other test of this
/// run (nextest runs each in a process of its own) is handed and that no
/// outgoing connection takes meanwhile.
///
/// A port picked with `bind(":0")` and released is an ephemeral port: an
/// outgoing connection of any test may take it before the child binds it,
/// and a restarted child must bind it again. So the port comes from below
/// the kernel's ephemeral range (32768 up, by default), is reserved across
/// test processes with an exclusive lock on a file named after it (held
/// until this process exits), and is checked free by binding it once.
pub fn free_port() -> u16 {
    static HELD: Mutex<Vec<std::fs::File>> = Mutex::new(Vec::new());
    let dir = std::env::temp_dir().join("interests-receiver-test-ports");
    std::fs::create_dir_all(&dir).unwrap();
    for _ in 0..1000 {
        let port = 20_000 + (rand::random::<u16>() % 12_000);
        let file = std::fs::File::create(dir.join(port.to_string())).unwrap();
        if file.try_lock().is_err() {
            continue; // another test process holds it
        }
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_err() {
            continue; // some other program uses it
        }
        HELD.lock().unwrap().push(file);
        return port;
    }
    panic!("no free port between 20000 and 32000")
}

/// Environment of a `serve` child on `port` against `sandbox`.
pub fn serve_env(
    db_url: &str,
    sandbox: &TestSandbox,
    port: u16,
    callback_port: u16,
) -> Vec<(String, String)> {
    serve_env_upstream(db_url, &sandbox.url, port, callback_port)
}

/// Environment of a `serve` child on `port` against the upstream at
/// `upstream_url` (a sandbox or an HTTP mock).
pub fn serve_env_upstream(
    db_url: &str,
    upstream_url: &str,
    port: u16,
    callback_port: u16,
) -> Vec<(String, String)> {
    [
        ("DATABASE_URL", db_url.to_owned()),
        ("LISTEN_ADDR", format!("127.0.0.1:{port}")),
        (
            "PUBLIC_BASE_URL",
            format!("http://127.0.0.1:{callback_port}"),
        ),
        ("UPSTREAM_BASE_URL", upstream_url.to_owned()),
        ("UPSTREAM_API_KEY", KEY.into()),
        ("UPSTREAM_API_SECRET", SECRET.into()),
        ("API_TOKENS", super::TOKEN.into()),
        ("SERVICE_SECRET", super::TEST_SECRET.into()),
        ("UPSTREAM_TIMEOUT_SECS", "2".into()),
        ("WORKER_LEASE_SECS", "3".into()),
        ("UPSTREAM_RATE_PER_MINUTE", "6000".into()),
        ("UPSTREAM_RATE_PER_HOUR", "100000".into()),
        ("DATABASE_MAX_CONNECTIONS", "5".into()),
        ("RUST_LOG", "warn".into()),
        ("LOG_FORMAT", "json".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

pub struct Child {
    process: tokio::process::Child,
    pub base: String,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Child {
    /// Starts `interests-receiver serve` and waits until it answers /healthz.
    pub async fn serve(env: &[(String, String)]) -> Child {
        let mut command = tokio::process::Command::new(crate::common::bin());
        command
            .arg("serve")
            .env_clear()
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut process = command.spawn().expect("binary starts");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let stderr = process.stderr.take().unwrap();
        let sink = lines.clone();
        tokio::spawn(async move {
            let mut reader = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = reader.next_line().await {
                if std::env::var("TEST_LOG").is_ok() {
                    eprintln!("child: {line}");
                }
                sink.lock().unwrap().push(line);
            }
        });
        let addr = env
            .iter()
            .find(|(k, _)| k == "LISTEN_ADDR")
            .map(|(_, v)| v.clone())
            .unwrap();
        let child = Child {
            process,
            base: format!("http://{addr}"),
            lines,
        };
        let http = reqwest::Client::new();
        for _ in 0..200 {
            if let Ok(r) = http.get(format!("{}/healthz", child.base)).send().await
                && r.status().is_success()
            {
                return child;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "child did not become healthy: {:?}",
            child.lines.lock().unwrap()
        );
    }

    /// Waits until the child printed a line containing `needle`.
    pub async fn wait_for_line(&self, needle: &str, timeout: Duration) {
        let deadline = tokio::time::Instant::now() + timeout;
        while tokio::time::Instant::now() < deadline {
            if self
                .lines
                .lock()
                .unwrap()
                .iter()
                .any(|l| l.contains(needle))
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!(
            "child never printed {needle:?}: {:?}",
            self.lines.lock().unwrap()
        );
    }

    /// SIGKILL: no shutdown code runs, as in a crash or an OOM kill.
    pub async fn kill9(mut self) {
        self.process.kill().await.unwrap();
    }

    /// SIGTERM, then the exit status (graceful shutdown).
    pub async fn terminate(mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let pid = self.process.id().unwrap();
        super::signal(pid, nix::sys::signal::Signal::SIGTERM);
        tokio::time::timeout(timeout, self.process.wait())
            .await
            .ok()
            .map(Result::unwrap)
    }
}
