//! Idempotency-Key records of `POST /v1/lookups/batch`. A batch claims its
//! key with a row (answers not yet known) committed at once, runs its
//! items, then records their answers: no transaction or connection is held
//! while the items run. Only per-item statuses, lookup ids and problems
//! are kept.

use std::time::Duration;

use serde_json::Value;
use sqlx::PgPool;

/// What a key holds when a batch tries to claim it.
pub enum Claim {
    /// The key is this batch's: run the items, then [`finish`] (or
    /// [`release`] if they could not run).
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
pub async fn claim(
    db: &PgPool,
    key: &str,
    request_sha256: &str,
    lease: Duration,
) -> sqlx::Result<Claim> {
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
        Some((true, _, _)) => Claim::Mine,
        Some((false, Some(request_sha256), Some(answers))) => Claim::Done {
            request_sha256,
            answers,
        },
        Some((false, request_sha256, None)) => Claim::Running { request_sha256 },
        Some((false, None, Some(_))) | None => Claim::Running {
            request_sha256: None,
        },
    })
}

/// Records the answers of the batch that claimed `key`: from now on the key
/// is replayed, never executed again.
pub async fn finish(db: &PgPool, key: &str, answers: &Value) -> sqlx::Result<()> {
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
pub async fn release(db: &PgPool, key: &str) -> sqlx::Result<()> {
    sqlx::query("DELETE FROM batch_idempotency_keys WHERE key = $1 AND answers IS NULL")
        .bind(key)
        .execute(db)
        .await?;
    Ok(())
}
