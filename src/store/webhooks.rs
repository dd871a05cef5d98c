//! Webhook endpoints, their send queue and the record of every attempt.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::{FromRow, PgPool};
use uuid::Uuid;

#[derive(Debug, Clone, FromRow)]
pub struct WebhookRecord {
    pub id: Uuid,
    pub url: String,
    pub events: Vec<String>,
    pub description: Option<String>,
    /// Nonce and ciphertext of the signing secret (see `webhooks::secret`).
    pub secret_sealed: Vec<u8>,
    pub disabled: bool,
    /// `failing` (disabled by the sender) or `operator`; `None` while enabled.
    pub disabled_reason: Option<String>,
    /// The first failed attempt since the last success; `None` while the
    /// endpoint answers.
    pub failing_since: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

const COLUMNS: &str = "id, url, events, description, secret_sealed, disabled, disabled_reason, \
                       failing_since, created_at";

pub struct NewWebhook<'a> {
    pub id: Uuid,
    pub url: &'a str,
    pub events: &'a [String],
    pub description: Option<&'a str>,
    pub secret_sealed: &'a [u8],
}

pub async fn insert(db: &PgPool, new: NewWebhook<'_>) -> sqlx::Result<WebhookRecord> {
    sqlx::query_as(&format!(
        "INSERT INTO webhooks (id, url, events, description, secret_sealed) \
         VALUES ($1, $2, $3, $4, $5) RETURNING {COLUMNS}"
    ))
    .bind(new.id)
    .bind(new.url)
    .bind(new.events)
    .bind(new.description)
    .bind(new.secret_sealed)
    .fetch_one(db)
    .await
}

pub async fn list(db: &PgPool) -> sqlx::Result<Vec<WebhookRecord>> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM webhooks ORDER BY created_at DESC, id DESC"
    ))
    .fetch_all(db)
    .await
}

pub async fn get(db: &PgPool, id: Uuid) -> sqlx::Result<Option<WebhookRecord>> {
    sqlx::query_as(&format!("SELECT {COLUMNS} FROM webhooks WHERE id = $1"))
        .bind(id)
        .fetch_optional(db)
        .await
}

/// Fields of a PATCH; `None` leaves a field as it is.
#[derive(Debug, Default)]
pub struct WebhookPatch {
    pub url: Option<String>,
    pub events: Option<Vec<String>>,
    /// `Some(None)` clears the description.
    pub description: Option<Option<String>>,
    pub disabled: Option<bool>,
}

/// Applies `patch`. Disabling an endpoint drops its pending sends, so that
/// re-enabling it later does not fire a backlog of stale events; enabling
/// one starts its failure count afresh (it is given days again).
pub async fn update(
    db: &PgPool,
    id: Uuid,
    patch: &WebhookPatch,
) -> sqlx::Result<Option<WebhookRecord>> {
    let mut tx = db.begin().await?;
    let updated: Option<WebhookRecord> = sqlx::query_as(&format!(
        "UPDATE webhooks SET url = COALESCE($2, url), events = COALESCE($3, events), \
           description = CASE WHEN $4 THEN $5 ELSE description END, \
           disabled = COALESCE($6, disabled), \
           disabled_reason = CASE WHEN NOT COALESCE($6, disabled) THEN NULL \
             WHEN disabled THEN disabled_reason ELSE 'operator' END, \
           failing_since = CASE WHEN $6 = false THEN NULL ELSE failing_since END, \
           updated_at = now() \
         WHERE id = $1 RETURNING {COLUMNS}"
    ))
    .bind(id)
    .bind(&patch.url)
    .bind(&patch.events)
    .bind(patch.description.is_some())
    .bind(patch.description.clone().flatten())
    .bind(patch.disabled)
    .fetch_optional(&mut *tx)
    .await?;
    if updated.as_ref().is_some_and(|w| w.disabled) {
        sqlx::query("DELETE FROM webhook_sends WHERE webhook_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(updated)
}

pub async fn delete(db: &PgPool, id: Uuid) -> sqlx::Result<bool> {
    let deleted = sqlx::query("DELETE FROM webhooks WHERE id = $1")
        .bind(id)
        .execute(db)
        .await?
        .rows_affected();
    Ok(deleted == 1)
}

/// Queues the endpoint's events since `since` again (same event ids, hence
/// the same `webhook-id`s) and returns how many sends that makes: one per
/// matching event, each of which will be sent once more.
///
/// An event with no send queued gets a new one. A send waiting for its next
/// retry is made due now (that send is the replay). A send in flight (its
/// lease held) cannot be queued twice: it is marked, and the sender sends it
/// again after recording the current attempt instead of deleting it.
pub async fn replay(db: &PgPool, id: Uuid, since: DateTime<Utc>) -> sqlx::Result<i64> {
    sqlx::query_scalar(
        "WITH matching AS ( \
           SELECT e.id FROM events e JOIN webhooks w ON w.id = $1 \
           WHERE e.at >= $2 AND e.type = ANY (w.events)), \
         queued AS ( \
           INSERT INTO webhook_sends (webhook_id, event_id) SELECT $1, id FROM matching \
           ON CONFLICT (webhook_id, event_id) DO UPDATE SET \
             replay = webhook_sends.replay OR webhook_sends.lease_owner IS NOT NULL, \
             next_attempt_at = LEAST(webhook_sends.next_attempt_at, now()) \
           RETURNING 1) \
         SELECT count(*) FROM queued",
    )
    .bind(id)
    .bind(since)
    .fetch_one(db)
    .await
}

/// A send this replica has claimed.
#[derive(Debug, Clone, FromRow)]
pub struct Claim {
    pub send_id: i64,
    pub webhook_id: Uuid,
    pub event_id: i64,
    /// Attempts recorded before this one.
    pub attempts: i32,
}

/// Claims up to `n` due sends of enabled endpoints whose leases (if any)
/// have run out, most overdue first, in one statement; one replica wins
/// each send. Each endpoint gets at most `per_endpoint` sends in flight,
/// counting those already leased, so a dead or slow endpoint holds only its
/// own slots and delays only itself; every endpoint is offered its oldest
/// sends, so one with a long backlog does not crowd out the others.
pub async fn claim_due(
    db: &PgPool,
    owner: Uuid,
    lease: Duration,
    per_endpoint: i64,
    n: i64,
) -> sqlx::Result<Vec<Claim>> {
    sqlx::query_as(
        "WITH picked AS ( \
           SELECT q.id FROM webhooks w \
           CROSS JOIN LATERAL ( \
             SELECT s.id, s.next_attempt_at FROM webhook_sends s \
             WHERE s.webhook_id = w.id AND s.next_attempt_at <= now() \
               AND (s.lease_until IS NULL OR s.lease_until < now()) \
             ORDER BY s.next_attempt_at, s.id \
             LIMIT GREATEST(0, $3 - ( \
               SELECT count(*) FROM webhook_sends b \
               WHERE b.webhook_id = w.id AND b.lease_owner IS NOT NULL \
                 AND b.lease_until >= now())) \
             FOR UPDATE OF s SKIP LOCKED) q \
           WHERE NOT w.disabled AND EXISTS ( \
             SELECT 1 FROM webhook_sends d WHERE d.webhook_id = w.id AND d.next_attempt_at <= now()) \
           ORDER BY q.next_attempt_at, q.id LIMIT $4) \
         UPDATE webhook_sends s SET lease_owner = $1, lease_until = now() + make_interval(secs => $2) \
         FROM picked WHERE s.id = picked.id \
         RETURNING s.id AS send_id, s.webhook_id, s.event_id, s.attempts",
    )
    .bind(owner)
    .bind(lease.as_secs_f64())
    .bind(per_endpoint)
    .bind(n)
    .fetch_all(db)
    .await
}

/// The endpoints among `ids` that still exist.
pub async fn get_many(db: &PgPool, ids: &[Uuid]) -> sqlx::Result<Vec<WebhookRecord>> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM webhooks WHERE id = ANY($1)"
    ))
    .bind(ids)
    .fetch_all(db)
    .await
}

/// What one attempt came to, and what to do with its send.
#[derive(Debug)]
pub struct Attempt {
    pub claim: Claim,
    /// The endpoint acknowledged it (2xx).
    pub ok: bool,
    pub status_code: Option<u16>,
    pub error: Option<String>,
    pub duration_ms: i32,
    /// When the attempt ended.
    pub at: DateTime<Utc>,
    pub next: Next,
}

/// What to do with a send after an attempt.
#[derive(Debug, Clone, Copy)]
pub enum Next {
    /// Acknowledged, or given up: the send leaves the queue.
    Done,
    /// Try again after this delay.
    RetryAfter(Duration),
}

/// Records a batch of attempts (in the order they ended) and then finishes
/// or reschedules their sends, in one transaction: a handful of statements
/// for the whole batch, not four per send. Only the lease holder's outcome
/// counts: a send whose lease ran out and was taken over is left to its
/// new owner.
///
/// An endpoint's failing state follows its last attempt of the batch, and
/// is written only when it changes: a healthy endpoint's row is not
/// rewritten by every send. A failure after `disable_after` of nothing but
/// failures disables the endpoint (see [`disable_if_failing`]); returns the
/// endpoints this batch disabled, with when their failures began.
pub async fn record_attempts(
    db: &PgPool,
    owner: Uuid,
    attempts: &[Attempt],
    disable_after: Duration,
) -> sqlx::Result<Vec<(Uuid, DateTime<Utc>)>> {
    if attempts.is_empty() {
        return Ok(Vec::new());
    }
    // Per endpoint, from its attempts in the order they ended: answering
    // at the end, or failing since the first failure after its last
    // success in this batch (`anew`: a success came first, so an older
    // failing run is over).
    struct State {
        id: Uuid,
        answered: bool,
        failing_from: Option<DateTime<Utc>>,
        anew: bool,
    }
    let mut states: Vec<State> = Vec::new();
    for a in attempts {
        let i = match states.iter().position(|e| e.id == a.claim.webhook_id) {
            Some(i) => i,
            None => {
                states.push(State {
                    id: a.claim.webhook_id,
                    answered: false,
                    failing_from: None,
                    anew: false,
                });
                states.len() - 1
            }
        };
        let e = &mut states[i];
        if a.ok {
            e.answered = true;
            e.failing_from = None;
            e.anew = true;
        } else {
            e.answered = false;
            e.failing_from.get_or_insert(a.at);
        }
    }
    let answered: Vec<Uuid> = states.iter().filter(|e| e.answered).map(|e| e.id).collect();
    let failing: Vec<&State> = states.iter().filter(|e| !e.answered).collect();
    let done: Vec<i64> = attempts
        .iter()
        .filter(|a| matches!(a.next, Next::Done))
        .map(|a| a.claim.send_id)
        .collect();
    let (retry_ids, retry_delays): (Vec<i64>, Vec<f64>) = attempts
        .iter()
        .filter_map(|a| match a.next {
            Next::RetryAfter(delay) => Some((a.claim.send_id, delay.as_secs_f64())),
            Next::Done => None,
        })
        .unzip();

    let mut tx = db.begin().await?;
    // An endpoint deleted, or an event erased, while its send was under way
    // has nothing left to record (and its send went with it).
    sqlx::query(
        "INSERT INTO webhook_attempts (webhook_id, event_id, attempt, status_code, error, duration_ms, at) \
         SELECT a.* FROM unnest($1::uuid[], $2::int8[], $3::int4[], $4::int2[], $5::text[], \
                                $6::int4[], $7::timestamptz[]) \
           AS a(webhook_id, event_id, attempt, status_code, error, duration_ms, at) \
         WHERE EXISTS (SELECT 1 FROM webhooks w WHERE w.id = a.webhook_id) \
           AND EXISTS (SELECT 1 FROM events e WHERE e.id = a.event_id)",
    )
    .bind(attempts.iter().map(|a| a.claim.webhook_id).collect::<Vec<_>>())
    .bind(attempts.iter().map(|a| a.claim.event_id).collect::<Vec<_>>())
    .bind(attempts.iter().map(|a| a.claim.attempts + 1).collect::<Vec<_>>())
    .bind(
        attempts
            .iter()
            .map(|a| a.status_code.map(|c| c as i16))
            .collect::<Vec<_>>(),
    )
    .bind(attempts.iter().map(|a| a.error.clone()).collect::<Vec<_>>())
    .bind(attempts.iter().map(|a| a.duration_ms).collect::<Vec<_>>())
    .bind(attempts.iter().map(|a| a.at).collect::<Vec<_>>())
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "UPDATE webhooks SET failing_since = NULL WHERE id = ANY($1) AND failing_since IS NOT NULL",
    )
    .bind(&answered)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "UPDATE webhooks w SET failing_since = \
           CASE WHEN f.anew THEN f.since ELSE COALESCE(w.failing_since, f.since) END \
         FROM unnest($1::uuid[], $2::timestamptz[], $3::bool[]) AS f(id, since, anew) \
         WHERE w.id = f.id AND (w.failing_since IS NULL OR f.anew)",
    )
    .bind(failing.iter().map(|e| e.id).collect::<Vec<_>>())
    .bind(failing.iter().map(|e| e.failing_from).collect::<Vec<_>>())
    .bind(failing.iter().map(|e| e.anew).collect::<Vec<_>>())
    .execute(&mut *tx)
    .await?;
    if !done.is_empty() {
        // A send marked for replay while its attempt was under way is not
        // finished: it starts over as a fresh send, due now. The DELETE
        // re-reads `replay` once it holds the row lock, and the UPDATE (a
        // later statement) sees a replay committed meanwhile, so none is
        // lost.
        sqlx::query(
            "DELETE FROM webhook_sends WHERE id = ANY($1) AND lease_owner = $2 AND NOT replay",
        )
        .bind(&done)
        .bind(owner)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE webhook_sends SET replay = false, attempts = 0, next_attempt_at = now(), \
               lease_owner = NULL, lease_until = NULL \
             WHERE id = ANY($1) AND lease_owner = $2",
        )
        .bind(&done)
        .bind(owner)
        .execute(&mut *tx)
        .await?;
    }
    if !retry_ids.is_empty() {
        // A retry is a send: a pending replay is served by it, at once.
        sqlx::query(
            "UPDATE webhook_sends s SET attempts = s.attempts + 1, \
               next_attempt_at = CASE WHEN s.replay THEN now() \
                 ELSE now() + make_interval(secs => d.delay) END, \
               replay = false, lease_owner = NULL, lease_until = NULL \
             FROM unnest($1::int8[], $2::float8[]) AS d(id, delay) \
             WHERE s.id = d.id AND s.lease_owner = $3",
        )
        .bind(&retry_ids)
        .bind(&retry_delays)
        .bind(owner)
        .execute(&mut *tx)
        .await?;
    }
    let mut disabled = Vec::new();
    for e in &failing {
        if let Some(since) = disable_if_failing(&mut tx, e.id, disable_after).await? {
            disabled.push((e.id, since));
        }
    }
    tx.commit().await?;
    Ok(disabled)
}

/// Disables an endpoint whose attempts have all failed for `after`: its
/// pending sends are dropped (as when an operator disables it) and a
/// `webhook.disabled` event is recorded, which SSE readers and the
/// endpoints subscribed to it get. PATCH `{"disabled": false}` enables it
/// again. Returns when its failures began, if it was disabled now.
async fn disable_if_failing(
    tx: &mut sqlx::PgConnection,
    id: Uuid,
    after: Duration,
) -> sqlx::Result<Option<DateTime<Utc>>> {
    let failing_since: Option<DateTime<Utc>> = sqlx::query_scalar(
        "UPDATE webhooks SET disabled = true, disabled_reason = 'failing', updated_at = now() \
         WHERE id = $1 AND NOT disabled AND failing_since <= now() - make_interval(secs => $2) \
         RETURNING failing_since",
    )
    .bind(id)
    .bind(after.as_secs_f64())
    .fetch_optional(&mut *tx)
    .await?;
    if let Some(since) = failing_since {
        sqlx::query("DELETE FROM webhook_sends WHERE webhook_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO event_inbox (type, data) \
             VALUES ($1, jsonb_build_object('webhook_id', $2::uuid, 'reason', 'failing', \
               'failing_since', $3::timestamptz))",
        )
        .bind(super::events::WEBHOOK_DISABLED)
        .bind(id)
        .bind(since)
        .execute(&mut *tx)
        .await?;
    }
    Ok(failing_since)
}

/// Drops a send that can no longer be made (its lookup was erased).
pub async fn drop_send(db: &PgPool, send_id: i64) -> sqlx::Result<()> {
    sqlx::query("DELETE FROM webhook_sends WHERE id = $1")
        .bind(send_id)
        .execute(db)
        .await?;
    Ok(())
}

/// Gives back leases of `ids` this replica holds (sends it claimed but
/// could not start).
pub async fn release(db: &PgPool, owner: Uuid, ids: &[i64]) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE webhook_sends SET lease_owner = NULL, lease_until = NULL \
         WHERE id = ANY($1) AND lease_owner = $2",
    )
    .bind(ids)
    .bind(owner)
    .execute(db)
    .await?;
    Ok(())
}

/// Gives back this replica's leases (shutdown), so another replica or the
/// next start takes the sends over at once.
pub async fn release_leases(db: &PgPool, owner: Uuid) -> sqlx::Result<u64> {
    Ok(sqlx::query(
        "UPDATE webhook_sends SET lease_owner = NULL, lease_until = NULL WHERE lease_owner = $1",
    )
    .bind(owner)
    .execute(db)
    .await?
    .rows_affected())
}

/// One recorded attempt, as listed.
#[derive(Debug, Clone, FromRow)]
pub struct AttemptRecord {
    pub id: i64,
    pub event_id: i64,
    #[sqlx(rename = "type")]
    pub kind: String,
    pub attempt: i32,
    pub at: DateTime<Utc>,
    pub status_code: Option<i16>,
    pub error: Option<String>,
    pub duration_ms: i32,
}

/// The endpoint's attempts, newest first, after the keyset position
/// `before` (an attempt id).
pub async fn attempts(
    db: &PgPool,
    webhook_id: Uuid,
    before: Option<i64>,
    limit: i64,
) -> sqlx::Result<Vec<AttemptRecord>> {
    sqlx::query_as(
        "SELECT a.id, a.event_id, e.type, a.attempt, a.at, a.status_code, a.error, a.duration_ms \
         FROM webhook_attempts a JOIN events e ON e.id = a.event_id \
         WHERE a.webhook_id = $1 AND ($2::bigint IS NULL OR a.id < $2) \
         ORDER BY a.id DESC LIMIT $3",
    )
    .bind(webhook_id)
    .bind(before)
    .bind(limit + 1)
    .fetch_all(db)
    .await
}
