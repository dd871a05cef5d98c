//! Idempotency-Key records, of `POST /v1/lookups` (the lookup and status
//! answered) and of `POST /v1/lookups/batch` (per-item statuses, lookup ids
//! and problems; never a subject), and the sealed keys of erased lookups. A
//! recorded key is replayed, never executed again.
//!
//! A single lookup is made in one transaction: [`lock`] serialises requests
//! with the same key until it commits, so the second of two concurrent
//! requests sees the first one's record. A batch runs its items in
//! transactions of their own, so it claims its key with a committed row
//! instead ([`claim_batch`]) and holds no connection while the items run.

use std::time::Duration;

use serde_json::Value;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

/// Serialises `POST /v1/lookups` requests with the same key until the
/// caller's transaction ends.
pub async fn lock(tx: &mut PgConnection, key: &str) -> sqlx::Result<()> {
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended('idempotency:' || $1, 0))")
        .bind(key)
        .execute(tx)
        .await?;
    Ok(())
}

/// A `POST /v1/lookups` record.
pub struct Stored {
    pub request_sha256: String,
    pub lookup_id: Option<Uuid>,
    pub response_status: i16,
}

pub async fn find(tx: &mut PgConnection, key: &str) -> sqlx::Result<Option<Stored>> {
    let row: Option<(String, Option<Uuid>, i16)> = sqlx::query_as(
        "SELECT request_sha256, lookup_id, response_status FROM idempotency_keys WHERE key = $1",
    )
    .bind(key)
    .fetch_optional(tx)
    .await?;
    Ok(
        row.map(|(request_sha256, lookup_id, response_status)| Stored {
            request_sha256,
            lookup_id,
            response_status,
        }),
    )
}

/// Remembers the keys of erased lookups, as keyed hashes `(key, request)`.
pub async fn remember_erased(
    tx: &mut PgConnection,
    sealed: &[(String, String)],
) -> sqlx::Result<()> {
    let (keys, requests): (Vec<&str>, Vec<&str>) =
        sealed.iter().map(|(k, r)| (k.as_str(), r.as_str())).unzip();
    sqlx::query(
        "INSERT INTO erased_idempotency_keys (key_hash, request_hash) \
         SELECT * FROM unnest($1::text[], $2::text[]) ON CONFLICT DO NOTHING",
    )
    .bind(keys)
    .bind(requests)
    .execute(tx)
    .await?;
    Ok(())
}

/// The request hash recorded for an erased key, found by any of
/// `key_hashes` (one per accepted secret).
pub async fn find_erased(
    tx: &mut PgConnection,
    key_hashes: &[String],
) -> sqlx::Result<Option<String>> {
    sqlx::query_scalar(
        "SELECT request_hash FROM erased_idempotency_keys WHERE key_hash = ANY($1) LIMIT 1",
    )
    .bind(key_hashes)
    .fetch_optional(tx)
    .await
}

pub async fn insert(
    tx: &mut PgConnection,
    key: &str,
    request_sha256: &str,
    lookup_id: Uuid,
    response_status: u16,
) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO idempotency_keys (key, request_sha256, lookup_id, response_status) \
         VALUES ($1, $2, $3, $4)",
    )
    .bind(key)
    .bind(request_sha256)
    .bind(lookup_id)
    .bind(response_status as i16)
    .execute(tx)
    .await?;
    Ok(())
}

/// What a key holds when a batch tries to claim it.
pub enum BatchClaim {
    /// The key is this batch's: run the items, then [`finish_batch`] (or
    /// [`release_batch`] if they could not run).
    Mine,
    /// Another batch with this key is running (or its claim is not yet
    /// visible): wait and claim again.
    Running { request_sha256: Option<String> },
    /// A batch with this key has finished: replay its answers.
    Done {
        request_sha256: String,
        answers: Value,
    },
}

/// Claims `key` for `lease` (the longest a batch runs), unless it holds a
/// finished batch or a running one whose claim has not run out.
pub async fn claim_batch(
    db: &PgPool,
    key: &str,
    request_sha256: &str,
    lease: Duration,
) -> sqlx::Result<BatchClaim> {
    // With a concurrent claim committing meanwhile, neither part may return
    // a row (the SELECT's snapshot predates it): that is `Running`.
    let row: Option<(bool, Option<String>, Option<Value>)> = sqlx::query_as(
        "WITH claimed AS ( \
           INSERT INTO batch_idempotency_keys (key, request_sha256, answers, running_until) \
           VALUES ($1, $2, NULL, now() + make_interval(secs => $3)) \
           ON CONFLICT (key) DO UPDATE SET request_sha256 = EXCLUDED.request_sha256, \
             running_until = EXCLUDED.running_until, created_at = now() \
           WHERE batch_idempotency_keys.answers IS NULL \
             AND batch_idempotency_keys.running_until < now() \
           RETURNING key) \
         SELECT true, NULL::text, NULL::jsonb FROM claimed \
         UNION ALL \
         SELECT false, request_sha256, answers FROM batch_idempotency_keys \
         WHERE key = $1 AND NOT EXISTS (SELECT 1 FROM claimed)",
    )
    .bind(key)
    .bind(request_sha256)
    .bind(lease.as_secs_f64())
    .fetch_optional(db)
    .await?;
    Ok(match row {
        Some((true, _, _)) => BatchClaim::Mine,
        Some((false, Some(request_sha256), Some(answers))) => BatchClaim::Done {
            request_sha256,
            answers,
        },
        Some((false, request_sha256, None)) => BatchClaim::Running { request_sha256 },
        Some((false, None, Some(_))) | None => BatchClaim::Running {
            request_sha256: None,
        },
    })
}

/// Records the answers of the batch that claimed `key`: from now on the key
/// is replayed, never executed again.
pub async fn finish_batch(db: &PgPool, key: &str, answers: &Value) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE batch_idempotency_keys SET answers = $2, running_until = NULL \
         WHERE key = $1 AND answers IS NULL",
    )
    .bind(key)
    .bind(answers)
    .execute(db)
    .await?;
    Ok(())
}

/// Gives up the claim of a batch that did not finish, so that a retry with
/// the key runs it at once.
pub async fn release_batch(db: &PgPool, key: &str) -> sqlx::Result<()> {
    sqlx::query("DELETE FROM batch_idempotency_keys WHERE key = $1 AND answers IS NULL")
        .bind(key)
        .execute(db)
        .await?;
    Ok(())
}
