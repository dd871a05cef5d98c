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

/// The event type of a webhook endpoint the sender disabled after failing
/// for days (`webhooks::sender`); it names no lookup.
pub const WEBHOOK_DISABLED: &str = "webhook.disabled";

/// Shortest time an event is kept (contract: at least 7 days).
pub const MIN_KEEP: Duration = Duration::from_secs(7 * 86_400);

#[derive(Debug, Clone, FromRow)]
pub struct EventRecord {
    pub id: i64,
    /// `None` for an event about no lookup (`webhook.disabled`).
    pub lookup_id: Option<Uuid>,
    /// `lookup.<status>`, `profile.changed` or `webhook.disabled`
    #[sqlx(rename = "type")]
    pub kind: String,
    pub at: DateTime<Utc>,
    pub profile_id: Option<Uuid>,
    /// What an event that is not a lookup status change carries: the change
    /// of a `profile.changed` (`{"previous_profile_id", "added", "removed",
    /// "following_count"}`), the endpoint of a `webhook.disabled`
    /// (`{"webhook_id", "reason", "failing_since"}`).
    pub data: Option<Value>,
}

impl EventRecord {
    /// The lookup status the event announces.
    pub fn status(&self) -> &str {
        self.kind.strip_prefix("lookup.").unwrap_or(&self.kind)
    }

    /// The `data` that SSE and webhooks send for an event that carries its
    /// own: `profile.changed` (`{"lookup_id", "profile_id",
    /// "previous_profile_id", "at", "added", "removed", "following_count"}`)
    /// and `webhook.disabled` (`{"webhook_id", "reason", "failing_since",
    /// "at"}`); `None` for a lookup status event, whose data is the lookup.
    pub fn carried_data(&self) -> Option<Value> {
        let mut data = self.data.clone().unwrap_or_else(|| json!({}));
        match self.kind.as_str() {
            PROFILE_CHANGED => {
                data["lookup_id"] = json!(self.lookup_id);
                data["profile_id"] = json!(self.profile_id);
            }
            WEBHOOK_DISABLED => {}
            _ => return None,
        }
        data["at"] = json!(self.at);
        Some(data)
    }
}

/// Up to `limit` events with an id above `after`, oldest first.
pub async fn after(
    db: impl PgExecutor<'_>,
    after: i64,
    limit: i64,
) -> sqlx::Result<Vec<EventRecord>> {
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

/// The events among `ids` that still exist.
pub async fn get_many(db: &PgPool, ids: &[i64]) -> sqlx::Result<Vec<EventRecord>> {
    sqlx::query_as(
        "SELECT id, lookup_id, type, at, profile_id, data FROM events WHERE id = ANY($1)",
    )
    .bind(ids)
    .fetch_all(db)
    .await
}

/// The newest event id (0 when there is none): where a live-only stream
/// starts.
pub async fn latest_id(db: impl PgExecutor<'_>) -> sqlx::Result<i64> {
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
            // In `at` order, the index `events_at`: in id order the scan
            // read every newer event too before finding none to delete
            // (305,582 rows for nothing, 40-170 ms per sweep). The ids as
            // an array (run once), not a subquery the planner might re-run
            // per event.
            "DELETE FROM events WHERE id = ANY (ARRAY(SELECT id FROM events \
             WHERE at < now() - make_interval(secs => $1) ORDER BY at LIMIT $2))",
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
