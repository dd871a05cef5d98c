//! A real HTTP endpoint for outgoing webhooks: records every request and
//! answers 500 to the first `fail_first` of them, 204 after. A held
//! receiver (`Receiver::held`) records each request at once but keeps its
//! answer back until the test calls `release`, so a test can act while a
//! send is provably in flight.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use serde_json::Value;
use tokio::sync::watch;

#[derive(Debug, Clone)]
pub struct Received {
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Received {
    pub fn header(&self, name: &str) -> String {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

#[derive(Clone, Default)]
struct Shared {
    received: Arc<Mutex<Vec<Received>>>,
    fail_first: Arc<AtomicUsize>,
    /// `false` while answers are held back.
    open: Option<watch::Receiver<bool>>,
}

pub struct Receiver {
    pub addr: std::net::SocketAddr,
    shared: Shared,
    release: Option<watch::Sender<bool>>,
}

async fn receive(State(shared): State<Shared>, headers: HeaderMap, body: Bytes) -> StatusCode {
    shared
        .received
        .lock()
        .unwrap()
        .push(Received { headers, body });
    if let Some(mut open) = shared.open.clone() {
        // The sender has sent the whole request; it waits for this answer.
        let _ = open.wait_for(|open| *open).await;
    }
    let failing = shared
        .fail_first
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok();
    if failing {
        StatusCode::INTERNAL_SERVER_ERROR
    } else {
        StatusCode::NO_CONTENT
    }
}

impl Receiver {
    pub async fn start(fail_first: usize) -> Receiver {
        Self::serve(Shared::default(), fail_first, None).await
    }

    /// A receiver that answers nothing until `release` is called.
    pub async fn held() -> Receiver {
        let (release, open) = watch::channel(false);
        let shared = Shared {
            open: Some(open),
            ..Shared::default()
        };
        Self::serve(shared, 0, Some(release)).await
    }

    /// Lets every held answer (and every later one) go.
    pub fn release(&self) {
        if let Some(release) = &self.release {
            release.send_replace(true);
        }
    }

    async fn serve(
        shared: Shared,
        fail_first: usize,
        release: Option<watch::Sender<bool>>,
    ) -> Receiver {
        shared.fail_first.store(fail_first, Ordering::SeqCst);
        let app = axum::Router::new()
            .route("/hook", axum::routing::post(receive))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Receiver {
            addr,
            shared,
            release,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    pub fn received(&self) -> Vec<Received> {
        self.shared.received.lock().unwrap().clone()
    }

    /// Waits until at least `n` requests arrived; returns them all.
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Received> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let got = self.received();
            if got.len() >= n {
                return got;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the endpoint received {} of {n} requests in {timeout:?}",
                got.len()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
