//! The event record: one row per lookup status change (and a
//! `profile.changed` after a completion that changed a profile). The
//! `record_lookup_event` trigger appends it to `event_inbox` in the
//! transaction that made the change; the sequencer (`events::sequencer`)
//! moves it here. Ids become visible in increasing order, so a reader that
//! remembers the last id it saw misses nothing and repeats nothing.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use sqlx::{FromRow, PgExecutor, PgPool};
use uuid::Uuid;

/// Rows deleted per statement by [`purge`], so that retention never holds
/// long locks.
const PURGE_BATCH: i64 = 1000;

/// The event type of a refresh that changed a person's profile.
pub const PROFILE_CHANGED: &str = "profile.changed";

/// Shortest time an event is kept (contract: at least 7 days).
pub const MIN_KEEP: Duration = Duration::from_secs(7 * 86_400);

#[derive(Debug, Clone, FromRow)]
pub struct EventRecord {
    pub id: i64,
    pub lookup_id: Uuid,
    /// `lookup.<status>`
    #[sqlx(rename = "type")]
    pub kind: String,
    pub at: DateTime<Utc>,
    pub profile_id: Option<Uuid>,
    /// The change a `profile.changed` event carries
    /// (`{"previous_profile_id", "added", "removed", "following_count"}`).
    pub data: Option<Value>,
}

impl EventRecord {
    /// The lookup status the event announces.
    pub fn status(&self) -> &str {
        self.kind.strip_prefix("lookup.").unwrap_or(&self.kind)
    }

    /// The `data` of a `profile.changed` event, as SSE and webhooks send it:
    /// `{"lookup_id", "profile_id", "previous_profile_id", "at", "added",
    /// "removed", "following_count"}`; `None` for a lookup event.
    pub fn profile_change(&self) -> Option<Value> {
        if self.kind != PROFILE_CHANGED {
            return None;
        }
        let mut data = self.data.clone().unwrap_or_else(|| json!({}));
        data["lookup_id"] = json!(self.lookup_id);
        data["profile_id"] = json!(self.profile_id);
        data["at"] = json!(self.at);
        Some(data)
    }
}

/// Up to `limit` events with an id above `after`, oldest first.
pub async fn after(db: &PgPool, after: i64, limit: i64) -> sqlx::Result<Vec<EventRecord>> {
    sqlx::query_as(
        "SELECT id, lookup_id, type, at, profile_id, data FROM events WHERE id > $1 ORDER BY id LIMIT $2",
    )
    .bind(after)
    .bind(limit)
    .fetch_all(db)
    .await
}

pub async fn get(db: impl PgExecutor<'_>, id: i64) -> sqlx::Result<Option<EventRecord>> {
    sqlx::query_as("SELECT id, lookup_id, type, at, profile_id, data FROM events WHERE id = $1")
        .bind(id)
        .fetch_optional(db)
        .await
}

/// The newest event id (0 when there is none): where a live-only stream
/// starts.
pub async fn latest_id(db: &PgPool) -> sqlx::Result<i64> {
    sqlx::query_scalar("SELECT COALESCE(max(id), 0) FROM events")
        .fetch_one(db)
        .await
}

/// Deletes events older than `keep` (at least [`MIN_KEEP`]) in small
/// batches, with their webhook sends and attempts; returns how many.
pub async fn purge(db: &PgPool, keep: Duration) -> sqlx::Result<u64> {
    let keep = keep.max(MIN_KEEP);
    let mut total = 0;
    loop {
        let deleted = sqlx::query(
            "DELETE FROM events WHERE id IN (SELECT id FROM events \
             WHERE at < now() - make_interval(secs => $1) ORDER BY id LIMIT $2)",
        )
        .bind(keep.as_secs_f64())
        .bind(PURGE_BATCH)
        .execute(db)
        .await?
        .rows_affected();
        total += deleted;
        if deleted < PURGE_BATCH as u64 {
            return Ok(total);
        }
    }
}
