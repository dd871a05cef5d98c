//! All SQL of the service, one module per table family. Nothing outside this
//! module writes a query.

pub mod audit;
pub mod batches;
pub mod credits;
pub mod deliveries;
pub mod erasure;
pub mod events;
pub mod facets;
pub mod forged;
pub mod idempotency;
pub mod keyset;
pub mod lookups;
pub mod pacing;
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

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use sqlx::PgPool;
use sqlx::migrate::Migrator;
use sqlx::postgres::PgPoolOptions;
use uuid::Uuid;

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

/// Keyset position in a newest-first list: `(created_at, id)` of the last
/// item, opaque to clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub created_at: DateTime<Utc>,
    pub id: Uuid,
}

impl Cursor {
    pub fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(format!(
            "{}|{}",
            self.created_at.timestamp_micros(),
            self.id
        ))
    }

    pub fn decode(raw: &str) -> Option<Cursor> {
        let bytes = URL_SAFE_NO_PAD.decode(raw).ok()?;
        let text = String::from_utf8(bytes).ok()?;
        let (micros, id) = text.split_once('|')?;
        let created_at = DateTime::from_timestamp_micros(micros.parse().ok()?)?;
        // Only times PostgreSQL can compare (and this service can have made).
        if !(1970..=9999).contains(&chrono::Datelike::year(&created_at)) {
            return None;
        }
        Some(Cursor {
            created_at,
            id: id.parse().ok()?,
        })
    }
}

/// One page of a newest-first list.
pub struct Page<T> {
    pub items: Vec<T>,
    pub next: Option<Cursor>,
}

/// Turns `limit + 1` fetched rows into a page and the cursor of the next one.
pub(crate) fn paginate<T>(
    mut rows: Vec<T>,
    limit: i64,
    position: impl Fn(&T) -> Cursor,
) -> Page<T> {
    let more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    let next = if more {
        rows.last().map(position)
    } else {
        None
    };
    Page { items: rows, next }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_reject_garbage() {
        let c = Cursor {
            created_at: DateTime::from_timestamp_micros(1_767_000_000_123_456).unwrap(),
            id: Uuid::now_v7(),
        };
        assert_eq!(Cursor::decode(&c.encode()), Some(c));
        assert_eq!(Cursor::decode("not a cursor"), None);
        let far = URL_SAFE_NO_PAD.encode(format!("{}|{}", i64::MAX / 2, Uuid::now_v7()));
        assert_eq!(Cursor::decode(&far), None);
    }
}
