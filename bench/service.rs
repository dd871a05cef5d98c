//! Service benchmark: `scripts/bench.sh` (or `cargo bench --bench service`).
//!
//! Creates its own database, runs the service in-process, measures callback
//! ingestion, profile search and lookup creation, each as a ratio against a
//! baseline measured in the same run, writes bench/RESULTS.md, prints it and
//! drops the database. Nothing here asserts on timing: the numbers are for
//! people to read (see bench/README.md). It does check that every request
//! got the answer it should, since a number about failed requests would
//! describe something else.

mod compare;
mod creation;
mod harness;
mod ingestion;
mod load;
mod report;
mod search;
mod seed;

use std::panic::AssertUnwindSafe;
use std::sync::OnceLock;
use std::time::Instant;

use anyhow::Context;
use futures::FutureExt;

use crate::harness::{BenchDb, Facts, Server, Settings};
use crate::report::Results;
use crate::search::Facet;

const RESULTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/bench/RESULTS.md");

fn main() -> anyhow::Result<()> {
    // `cargo bench` passes `--bench`. Test runners also start bench targets
    // (`cargo test --all-targets`, `cargo nextest` with `--list`): then there
    // is nothing to run, and the empty output is an empty test list.
    if !std::env::args().any(|a| a == "--bench") {
        return Ok(());
    }
    let settings = Settings::from_env()?;
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run(settings))
}

/// Runs everything inside a database of its own, which is dropped however
/// the measurements end (error or panic).
async fn run(settings: Settings) -> anyhow::Result<()> {
    progress(&format!("creating database {}", settings.database_name));
    let db = BenchDb::create(&settings).await?;
    let outcome = AssertUnwindSafe(measure_all(&db, settings))
        .catch_unwind()
        .await;
    db.drop_database().await;
    let results = match outcome {
        Ok(results) => results?,
        Err(panic) => std::panic::resume_unwind(panic),
    };
    let markdown = report::render(&results);
    std::fs::write(RESULTS, &markdown).with_context(|| format!("cannot write {RESULTS}"))?;
    println!("{markdown}");
    progress("written to bench/RESULTS.md");
    Ok(())
}

async fn measure_all(db: &BenchDb, settings: Settings) -> anyhow::Result<Results> {
    let started = Instant::now();
    let facts = Facts::gather(&db.bench).await?;
    let server = Server::start(db.app.clone()).await?;
    let client = load::http_client(settings.concurrency)?;

    // Search first, on a table holding only the seeded profiles, so that the
    // probes match exactly the share the seeding gave them.
    progress(&format!("seeding {} profiles", settings.profiles));
    let seeded = seed::profiles(&db.bench, settings.profiles).await?;
    let mut searches = Vec::new();
    for facet in [Facet::Interest, Facet::Brand] {
        progress(&format!("measuring search ?{}=", facet.param()));
        searches.push(search::measure(&server, &db.bench, &client, &settings, facet).await?);
    }

    progress(&format!(
        "measuring callback ingestion ({} deliveries, twice)",
        settings.requests
    ));
    let ingestion = ingestion::measure(&server, &db.bench, &client, &settings).await?;

    progress(&format!(
        "measuring lookup creation ({} lookups)",
        settings.requests
    ));
    let creation = creation::measure(&server, &client, &settings).await?;

    drop(client);
    if let Err(e) = server.stop().await {
        // The measurements are complete; a slow stop does not void them.
        progress(&format!("warning: {e:#}"));
    }
    Ok(Results {
        facts,
        settings,
        seeded,
        searches,
        ingestion,
        creation,
        run_time: started.elapsed(),
    })
}

/// A progress line on stderr, apart from the results on stdout, with the
/// time since start (so that a slow phase shows).
fn progress(message: &str) {
    static START: OnceLock<Instant> = OnceLock::new();
    let elapsed = START.get_or_init(Instant::now).elapsed();
    eprintln!("bench [{:5.1} s]: {message}", elapsed.as_secs_f64());
}
