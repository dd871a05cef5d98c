//! Measurement 3: lookup creation.
//!
//! `POST /v1/lookups` is what operators call in bulk; each runs one
//! transaction (suppression list, profile cache, in-flight dedup, insert).
//! Every request names a new person, so every one inserts a row: the
//! expensive path. Workers are off, so nothing drains the queue meanwhile.
//! Baseline: as many `GET /healthz` at the same concurrency.

use reqwest::{Client, StatusCode};
use serde_json::json;

use crate::compare::{Throughput, interleave};
use crate::harness::{Server, Settings, TOKEN};
use crate::load::{self, Batch, expect_status};

/// Requests made before measuring (warm connections and statement caches).
const WARM_UP: usize = 64;

pub async fn measure(
    server: &Server,
    client: &Client,
    settings: &Settings,
) -> anyhow::Result<Throughput> {
    let url = server.url("/v1/lookups");
    create(
        client,
        &url,
        bodies("warm-up", WARM_UP),
        settings.concurrency,
    )
    .await?;
    let healthz = server.url("/healthz");
    let n = settings.per_round();
    let pairs = interleave(
        settings.rounds,
        async |_| load::healthz_batch(client, &healthz, n, settings.concurrency).await,
        async |round| {
            let people = bodies(&format!("round{round}"), n);
            create(client, &url, people, settings.concurrency).await
        },
    )
    .await?;
    Ok(Throughput { pairs })
}

/// Request bodies for `n` distinct people, serialised before timing.
fn bodies(tag: &str, n: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            json!({
                "email": format!("new-{tag}-{i}@bench.example"),
                "name": format!("Person {tag} {i}"),
                "metadata": {"source": "bench"},
            })
            .to_string()
        })
        .collect()
}

/// Posts each body; every answer must be a 202 (a new lookup).
async fn create(
    client: &Client,
    url: &str,
    bodies: Vec<String>,
    concurrency: usize,
) -> anyhow::Result<Batch> {
    let client = client.clone();
    let url = url.to_owned();
    load::run(bodies, concurrency, move |body| {
        let request = client
            .post(&url)
            .bearer_auth(TOKEN)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body);
        async move {
            expect_status(request.send().await?, StatusCode::ACCEPTED).await?;
            Ok(())
        }
    })
    .await
}
