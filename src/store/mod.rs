//! All SQL of the service, one module per table family. Nothing outside this
//! module writes a query.

pub mod audit;
pub mod credits;
pub mod deliveries;
pub mod erasure;
pub mod events;
pub mod facet_log;
pub mod facets;
pub mod forged;
pub mod idempotency;
pub mod lookups;
pub mod pacing;
mod paging;
pub mod profiles;
pub mod queues;
pub mod replication;
pub mod results;
pub mod retention;
pub mod sequencer;
pub mod stats;
pub mod synthetic;
pub mod versions;
pub mod webhooks;
pub mod work;

use std::time::Duration;

use sqlx::PgPool;
use sqlx::migrate::Migrator;
use sqlx::postgres::PgPoolOptions;

pub use paging::{Cursor, IdCursor, Page, Position, paginate};

/// The schema, embedded in the binary so that a container needs no files.
pub static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

pub async fn connect(url: &str, max_connections: u32) -> Result<PgPool, sqlx::Error> {
    // One plain connection first: a pool would report a refused or
    // misconfigured server only as "pool timed out".
    use sqlx::Connection;
    sqlx::PgConnection::connect(url).await?.close().await?;
    PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(5))
        .after_connect(|conn, _| Box::pin(claim_kept_shard(conn)))
        .connect(url)
        .await
}

/// Claims a kept-total shard of its own for a new connection: the first of
/// shards 100 to 163 whose session advisory lock is free, held for as long
/// as the connection lives, named in the session setting that
/// `kept_total_shard()` reads (migration `apply_job_updates_and_shard_claims`).
/// Then no two writers of any replica wait on one counter row (with pid
/// shards, two of 32 connections often shared one). With every shard taken
/// the connection keeps the pid shard.
pub async fn claim_kept_shard(conn: &mut sqlx::PgConnection) -> sqlx::Result<()> {
    sqlx::query(
        "SELECT set_config('interests_receiver.kept_shard', COALESCE( \
           (SELECT s::text FROM generate_series(100, 163) AS s \
             WHERE pg_try_advisory_lock(hashtext('interests-receiver/kept-shard'), s) LIMIT 1), \
           ''), false)",
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// A pool that connects on first use, for the read replica: a replica that
/// is down must neither stop the service from starting nor hold a read
/// longer than `acquire_timeout` before it falls back to the primary.
pub fn connect_lazy(
    url: &str,
    max_connections: u32,
    acquire_timeout: Duration,
) -> Result<PgPool, sqlx::Error> {
    PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(acquire_timeout)
        .connect_lazy(url)
}

/// A pool of its own for a background task, on the same database as
/// `main`: the task's queries never wait behind requests for a connection,
/// and the requests never wait behind the task. Connects on first use.
pub fn side_pool(main: &PgPool, max_connections: u32) -> PgPool {
    PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(5))
        .after_connect(|conn, _| Box::pin(claim_kept_shard(conn)))
        .connect_lazy_with((*main.connect_options()).clone())
}

pub async fn migrate(pool: &PgPool) -> Result<(), sqlx::migrate::MigrateError> {
    MIGRATOR.run(pool).await
}

/// True when every embedded migration has been applied (for `/readyz`).
pub async fn schema_is_current(pool: &PgPool) -> Result<bool, sqlx::Error> {
    let applied: Vec<i64> =
        sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success ORDER BY version")
            .fetch_all(pool)
            .await?;
    Ok(MIGRATOR.iter().all(|m| applied.contains(&m.version)))
}
