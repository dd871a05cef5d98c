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
        .connect(url)
        .await
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
