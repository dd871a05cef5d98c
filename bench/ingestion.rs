//! Measurement 1: callback ingestion.
//!
//! Upstream delivers every result to `/callbacks/{id}/{token}` and retries
//! what is not acknowledged in time, so the rate at which the receiver
//! durably stores deliveries bounds the whole service. The baseline is the
//! same number of `GET /healthz` at the same concurrency on the same server:
//! what the HTTP stack costs with no work behind it, so the ratio isolates
//! the callback's own work (token check, JSON parse, facet extraction, one
//! transaction with a commit).

use reqwest::{Client, StatusCode};
use serde_json::{Value, json};
use sqlx::PgPool;

use crate::compare::{Throughput, interleave};
use crate::harness::{Server, Settings};
use crate::load::{self, Batch, expect_status};
use crate::seed::{self, QueuedLookup};

/// The provider's documented completed-job body.
const COMPLETED: &str = include_str!("../tests/fixtures/completed.json");
/// Deliveries made before measuring, so that every pooled connection has
/// its prepared statements and every client its keep-alive connection.
const WARM_UP: usize = 64;

/// First deliveries and duplicate deliveries, each against `/healthz`.
#[derive(Debug, Clone)]
pub struct Ingestion {
    pub first: Throughput,
    pub duplicate: Throughput,
}

pub async fn measure(
    server: &Server,
    db: &PgPool,
    client: &Client,
    settings: &Settings,
) -> anyhow::Result<Ingestion> {
    let warm_up = deliveries(server, &seed::queued_lookups(db, WARM_UP, "warm-up").await?);
    deliver(client, warm_up, settings.concurrency, "applied").await?;

    let targets = deliveries(
        server,
        &seed::queued_lookups(db, settings.requests, "callback").await?,
    );
    let rounds: Vec<Vec<Delivery>> = targets
        .chunks(settings.per_round())
        .map(<[Delivery]>::to_vec)
        .collect();
    let first = compare(server, client, settings, &rounds, "applied").await?;
    // The same URLs again: upstream retries whatever it thinks was lost.
    let duplicate = compare(server, client, settings, &rounds, "duplicate").await?;
    Ok(Ingestion { first, duplicate })
}

/// One callback: its URL and its body, serialised before timing starts.
#[derive(Debug, Clone)]
struct Delivery {
    url: String,
    body: String,
}

fn deliveries(server: &Server, lookups: &[QueuedLookup]) -> Vec<Delivery> {
    let template: Value = serde_json::from_str(COMPLETED).expect("fixture is JSON");
    lookups
        .iter()
        .map(|lookup| {
            let mut body = template.clone();
            body["data"]["request_id"] = json!(lookup.request_id);
            Delivery {
                url: server.url(&format!(
                    "/callbacks/{}/{}",
                    lookup.id, lookup.callback_token
                )),
                body: body.to_string(),
            }
        })
        .collect()
}

/// Each round's deliveries against as many `/healthz`, interleaved.
async fn compare(
    server: &Server,
    client: &Client,
    settings: &Settings,
    rounds: &[Vec<Delivery>],
    outcome: &'static str,
) -> anyhow::Result<Throughput> {
    let healthz = server.url("/healthz");
    let pairs = interleave(
        rounds.len(),
        async |round| {
            load::healthz_batch(client, &healthz, rounds[round].len(), settings.concurrency).await
        },
        async |round| deliver(client, rounds[round].clone(), settings.concurrency, outcome).await,
    )
    .await?;
    Ok(Throughput { pairs })
}

/// Delivers each body to its URL; every answer must be a 200 naming
/// `outcome`, or the numbers would describe something else.
async fn deliver(
    client: &Client,
    deliveries: Vec<Delivery>,
    concurrency: usize,
    outcome: &'static str,
) -> anyhow::Result<Batch> {
    let client = client.clone();
    load::run(deliveries, concurrency, move |delivery| {
        let request = client
            .post(delivery.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(delivery.body);
        async move {
            let body = expect_status(request.send().await?, StatusCode::OK).await?;
            let got: Value = serde_json::from_str(&body)?;
            anyhow::ensure!(
                got["outcome"] == outcome,
                "expected outcome {outcome}, got {body}"
            );
            Ok(())
        }
    })
    .await
}
