//! Load generation: a fixed set of requests sent by a fixed number of
//! concurrent clients, timed as a whole (throughput) and one by one
//! (latency).

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use reqwest::{Client, Response, StatusCode};

/// One batch of requests: its wall time and the latency of each request.
#[derive(Debug, Clone)]
pub struct Batch {
    pub elapsed: Duration,
    /// Sorted ascending.
    pub latencies: Vec<Duration>,
}

impl Batch {
    /// Requests per second over the whole batch.
    pub fn rate(&self) -> f64 {
        self.latencies.len() as f64 / self.elapsed.as_secs_f64()
    }

    /// Latency at quantile `q` (0..=1), nearest rank.
    pub fn quantile(&self, q: f64) -> Duration {
        let last = self.latencies.len().saturating_sub(1);
        let rank = ((self.latencies.len() as f64 * q).ceil() as usize).saturating_sub(1);
        self.latencies
            .get(rank.min(last))
            .copied()
            .unwrap_or_default()
    }
}

/// Sends every item through `call` from `concurrency` spawned tasks, each a
/// client that sends its next request as soon as its previous one is
/// answered (a closed loop, like upstream's delivery workers or operators'
/// scripts). Spawned rather than multiplexed on one task so that the client
/// side can use every core, as separate client processes would.
pub async fn run<T, F, Fut>(items: Vec<T>, concurrency: usize, call: F) -> anyhow::Result<Batch>
where
    T: Send + 'static,
    F: Fn(T) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = anyhow::Result<()>> + Send,
{
    let queue = Arc::new(Mutex::new(items.into_iter()));
    let call = Arc::new(call);
    let started = Instant::now();
    let clients: Vec<_> = (0..concurrency)
        .map(|_| {
            let queue = queue.clone();
            let call = call.clone();
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                loop {
                    let Some(item) = queue.lock().expect("queue lock").next() else {
                        break;
                    };
                    let sent = Instant::now();
                    call(item).await?;
                    latencies.push(sent.elapsed());
                }
                anyhow::Ok(latencies)
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for client in clients {
        latencies.extend(client.await.context("a load client panicked")??);
    }
    let elapsed = started.elapsed();
    latencies.sort_unstable();
    Ok(Batch { elapsed, latencies })
}

/// An HTTP client for loopback load: no proxy from the environment (it
/// would put a third process in every measurement), keep-alive for every
/// concurrent client.
pub fn http_client(concurrency: usize) -> anyhow::Result<Client> {
    Ok(Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(concurrency * 2)
        .timeout(Duration::from_secs(30))
        .build()?)
}

/// Reads the whole body (so that every measured request includes it) and
/// fails unless the status is `expected`; returns the body.
pub async fn expect_status(response: Response, expected: StatusCode) -> anyhow::Result<String> {
    let status = response.status();
    let body = response.text().await?;
    if status != expected {
        bail!("expected {expected}, got {status}: {body}");
    }
    Ok(body)
}

/// A batch of `n` GET /healthz: the cost of the HTTP stack alone (routing,
/// middleware, a tiny JSON body, no database), the baseline of the
/// throughput measurements.
pub async fn healthz_batch(
    client: &Client,
    url: &str,
    n: usize,
    concurrency: usize,
) -> anyhow::Result<Batch> {
    let client = client.clone();
    let items = vec![url.to_owned(); n];
    run(items, concurrency, move |url| {
        let request = client.get(url);
        async move {
            expect_status(request.send().await?, StatusCode::OK).await?;
            Ok(())
        }
    })
    .await
}
