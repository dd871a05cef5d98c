//! Lookup rows: creation, reads and the lists of the REST API.

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::{FromRow, PgConnection, PgExecutor, PgPool};
use uuid::Uuid;

use super::{Cursor, Page, paginate};
use crate::lifecycle::{IN_FLIGHT_SQL, LookupStatus};
use crate::subject::Subject;

/// A lookup joined with its profile, as the API shows it.
#[derive(Debug, Clone, FromRow)]
pub struct LookupRecord {
    pub id: Uuid,
    pub status: LookupStatus,
    #[sqlx(flatten)]
    pub subject: Subject,
    pub metadata: Value,
    pub request_id: Option<String>,
    pub created_at: DateTime<Utc>,
    pub submitted_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
    pub credits_charged: i32,
    pub error: Option<String>,
    pub synthetic: bool,
    /// email | phone | social_media_url | name_company | name_only (a
    /// column generated from the identifiers).
    pub match_basis: Option<String>,
    /// Warnings given when the lookup was made.
    pub warnings: Vec<String>,
    pub profile_id: Option<Uuid>,
    pub profile_result: Option<Value>,
    pub profile_completed_on: Option<DateTime<Utc>>,
    pub profile_received_via: Option<String>,
}

impl LookupRecord {
    pub fn cursor(&self) -> Cursor {
        Cursor {
            created_at: self.created_at,
            id: self.id,
        }
    }
}

const SELECT: &str = "SELECT l.id, l.status, l.email, l.phone, l.social_media_url, l.name, \
    l.company, l.metadata, l.request_id, l.created_at, l.submitted_at, l.completed_at, \
    l.credits_charged, l.error, l.synthetic, l.match_basis, l.warnings, p.id AS profile_id, p.result AS profile_result, \
    p.completed_on AS profile_completed_on, p.received_via AS profile_received_via \
    FROM lookups l LEFT JOIN profiles p ON p.lookup_id = l.id";

/// The lookups of a person (any of the keyed identities `$1`), found from
/// the identities first. Materialized, so that a `LIMIT 1` in some order
/// around it can never make the planner walk every lookup in that order
/// and probe each one's identities instead: with stale statistics (few
/// lookups in flight when last analysed, thousands now) `find_in_flight`
/// walked every unfinished lookup per create, 10 ms at 5,600 of them.
const PERSON_LOOKUPS: &str = "SELECT l.id, l.status, l.created_at, l.completed_at \
    FROM lookup_identities i JOIN lookups l ON l.id = i.lookup_id WHERE i.identity = ANY($1)";

pub async fn get(db: impl PgExecutor<'_>, id: Uuid) -> sqlx::Result<Option<LookupRecord>> {
    sqlx::query_as(&format!("{SELECT} WHERE l.id = $1"))
        .bind(id)
        .fetch_optional(db)
        .await
}

/// The lookups among `ids` that still exist (not erased or purged).
pub async fn get_many(db: &PgPool, ids: &[Uuid]) -> sqlx::Result<Vec<LookupRecord>> {
    sqlx::query_as(&format!("{SELECT} WHERE l.id = ANY($1)"))
        .bind(ids)
        .fetch_all(db)
        .await
}

pub async fn list(
    db: &PgPool,
    status: Option<LookupStatus>,
    after: Option<Cursor>,
    limit: i64,
) -> sqlx::Result<Page<LookupRecord>> {
    let rows: Vec<LookupRecord> = sqlx::query_as(&format!(
        "{SELECT} WHERE ($1::text IS NULL OR l.status = $1) \
         AND ($2::timestamptz IS NULL OR (l.created_at, l.id) < ($2, $3)) \
         ORDER BY l.created_at DESC, l.id DESC LIMIT $4"
    ))
    .bind(status)
    .bind(after.map(|c| c.created_at))
    .bind(after.map(|c| c.id))
    .bind(limit + 1)
    .fetch_all(db)
    .await?;
    Ok(paginate(rows, limit, LookupRecord::cursor))
}

/// The newest completed lookup of a person (any of `identities`, keyed
/// hashes) finished after `since`.
pub async fn find_cached(
    db: &mut PgConnection,
    identities: &[String],
    since: DateTime<Utc>,
) -> sqlx::Result<Option<LookupRecord>> {
    sqlx::query_as(&format!(
        "WITH mine AS MATERIALIZED ({PERSON_LOOKUPS}) \
         {SELECT} WHERE l.id = (SELECT m.id FROM mine m \
           WHERE m.status = 'completed' AND m.completed_at > $2 \
           ORDER BY m.completed_at DESC LIMIT 1)"
    ))
    .bind(identities)
    .bind(since)
    .fetch_optional(db)
    .await
}

/// The unfinished lookup of a person (any of `identities`), if any.
pub async fn find_in_flight(
    db: &mut PgConnection,
    identities: &[String],
) -> sqlx::Result<Option<LookupRecord>> {
    sqlx::query_as(&format!(
        "WITH mine AS MATERIALIZED ({PERSON_LOOKUPS}) \
         {SELECT} WHERE l.id = (SELECT m.id FROM mine m \
           WHERE m.status IN {IN_FLIGHT_SQL} ORDER BY m.created_at LIMIT 1)"
    ))
    .bind(identities)
    .fetch_optional(db)
    .await
}

/// The unfinished lookup holding the in-flight uniqueness key `key`.
pub async fn find_in_flight_by_key(
    db: &mut PgConnection,
    key: &str,
) -> sqlx::Result<Option<LookupRecord>> {
    sqlx::query_as(&format!(
        "{SELECT} WHERE l.subject_key = $1 AND l.status IN {IN_FLIGHT_SQL}"
    ))
    .bind(key)
    .fetch_optional(db)
    .await
}

/// Serialises requests about the same person (on any replica) until the
/// transaction ends: two requests sharing any identity cannot both miss
/// each other's lookup. Locks are taken in a fixed order (no deadlock).
pub async fn lock_identities(db: &mut PgConnection, identities: &[String]) -> sqlx::Result<()> {
    sqlx::query(
        "SELECT pg_advisory_xact_lock(hashtextextended(i, 1)) \
         FROM (SELECT DISTINCT i FROM unnest($1::text[]) AS i ORDER BY i) ordered",
    )
    .bind(identities)
    .execute(db)
    .await?;
    Ok(())
}

/// Records the identities (keyed hashes) of a lookup.
pub async fn insert_identities(
    db: impl PgExecutor<'_>,
    lookup_id: Uuid,
    identities: &[String],
) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO lookup_identities (identity, lookup_id) \
         SELECT DISTINCT i, $2 FROM unnest($1::text[]) AS i ON CONFLICT DO NOTHING",
    )
    .bind(identities)
    .bind(lookup_id)
    .execute(db)
    .await?;
    Ok(())
}

/// Re-keys a lookup just matched by a request: when its identities were
/// written under another key (a rotated SERVICE_SECRET), adds `hashes`,
/// its identities under the current key `key_id`. The rows under the
/// previous key stay: replicas not yet restarted still match by them.
pub async fn rekey_if_stale(
    db: &mut PgConnection,
    id: Uuid,
    hashes: &[String],
    key_id: &str,
) -> sqlx::Result<()> {
    let stale = sqlx::query(
        "UPDATE lookups SET identities_key = $2 \
         WHERE id = $1 AND identities_key IS DISTINCT FROM $2",
    )
    .bind(id)
    .bind(key_id)
    .execute(&mut *db)
    .await?
    .rows_affected()
        == 1;
    if stale {
        insert_identities(&mut *db, id, hashes).await?;
    }
    Ok(())
}

/// Whether any lookup's identities are not under the key `key_id` (locked
/// or not).
pub async fn any_stale_identities(db: &PgPool, key_id: &str) -> sqlx::Result<bool> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM lookups WHERE identities_key IS DISTINCT FROM $1)",
    )
    .bind(key_id)
    .fetch_one(db)
    .await
}

/// Claims up to `limit` lookups whose identities are not under the key
/// `key_id`, for the re-keying pass (other replicas skip them).
pub async fn claim_stale_identities(
    db: &mut PgConnection,
    key_id: &str,
    limit: i64,
) -> sqlx::Result<Vec<(Uuid, Subject)>> {
    #[derive(FromRow)]
    struct Row {
        id: Uuid,
        #[sqlx(flatten)]
        subject: Subject,
    }
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT id, email, phone, social_media_url, name, company FROM lookups \
         WHERE identities_key IS DISTINCT FROM $1 LIMIT $2 FOR UPDATE SKIP LOCKED",
    )
    .bind(key_id)
    .bind(limit)
    .fetch_all(db)
    .await?;
    Ok(rows.into_iter().map(|r| (r.id, r.subject)).collect())
}

/// Records that the identities of `ids` are under the key `key_id`.
pub async fn mark_identities_key(
    db: &mut PgConnection,
    ids: &[Uuid],
    key_id: &str,
) -> sqlx::Result<()> {
    sqlx::query("UPDATE lookups SET identities_key = $2 WHERE id = ANY($1)")
        .bind(ids)
        .bind(key_id)
        .execute(db)
        .await?;
    Ok(())
}

/// Has the one-off backfill `name` run to the end on this database?
pub async fn backfill_done(db: &PgPool, name: &str) -> sqlx::Result<bool> {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM completed_backfills WHERE name = $1)")
        .bind(name)
        .fetch_one(db)
        .await
}

pub async fn mark_backfill_done(db: &PgPool, name: &str) -> sqlx::Result<()> {
    sqlx::query("INSERT INTO completed_backfills (name) VALUES ($1) ON CONFLICT DO NOTHING")
        .bind(name)
        .execute(db)
        .await?;
    Ok(())
}

/// Lookups made before identities were recorded (at most `limit`).
pub async fn without_identities(db: &PgPool, limit: i64) -> sqlx::Result<Vec<(Uuid, Subject)>> {
    #[derive(FromRow)]
    struct Row {
        id: Uuid,
        #[sqlx(flatten)]
        subject: Subject,
    }
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT l.id, l.email, l.phone, l.social_media_url, l.name, l.company FROM lookups l \
         WHERE NOT EXISTS (SELECT 1 FROM lookup_identities i WHERE i.lookup_id = l.id) LIMIT $1",
    )
    .bind(limit)
    .fetch_all(db)
    .await?;
    Ok(rows.into_iter().map(|r| (r.id, r.subject)).collect())
}

pub struct NewLookup<'a> {
    pub id: Uuid,
    pub subject: &'a Subject,
    pub subject_key: &'a str,
    pub metadata: &'a Value,
    /// Made against the sandbox simulator.
    pub synthetic: bool,
    /// The identity key its identities are written under.
    pub identities_key: &'a str,
    /// Shown in the lookup's `warnings` (NAME_ONLY_LOOKUPS=warn).
    pub warnings: &'a [String],
    /// A refresh made by the service: spends from REFRESH_CREDITS_DAILY
    /// and is submitted after new lookups.
    pub refresh: bool,
}

/// Inserts a pending lookup unless one for the same person is already in
/// flight; returns whether a row was inserted.
pub async fn insert_pending(db: &mut PgConnection, new: NewLookup<'_>) -> sqlx::Result<bool> {
    let inserted = sqlx::query(&format!(
        "INSERT INTO lookups (id, email, phone, social_media_url, name, company, subject_key, \
         metadata, synthetic, identities_key, warnings, refresh) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) \
         ON CONFLICT (subject_key) WHERE status IN {IN_FLIGHT_SQL} DO NOTHING"
    ))
    .bind(new.id)
    .bind(&new.subject.email)
    .bind(&new.subject.phone)
    .bind(&new.subject.social_media_url)
    .bind(&new.subject.name)
    .bind(&new.subject.company)
    .bind(new.subject_key)
    .bind(new.metadata)
    .bind(new.synthetic)
    .bind(new.identities_key)
    .bind(new.warnings)
    .bind(new.refresh)
    .execute(db)
    .await?
    .rows_affected();
    Ok(inserted == 1)
}

/// Does the day's budget still hold every credit committed, the caller's
/// own new lookup included (it must be inserted already)? Takes the budget's
/// lock, held to the end of the transaction, so that decisions on every
/// replica are made one after the other; call it last, just before the
/// commit, to hold the lock for the shortest time (SQL `budget_allows`).
/// New lookups and the service's refreshes (`refresh`) have budgets (and
/// locks) of their own. On `false` the caller must roll back.
pub async fn budget_allows(
    db: &mut PgConnection,
    budget: i64,
    per_job: i64,
    refresh: bool,
) -> sqlx::Result<bool> {
    sqlx::query_scalar("SELECT budget_allows($1, $2, $3)")
        .bind(budget)
        .bind(per_job)
        .bind(refresh)
        .fetch_one(db)
        .await
}

/// Settings of a lookup-creation transaction, in one round trip.
///
/// Its statements are point reads and writes by key (identity hashes, a
/// subject key, an id), for which PostgreSQL's generic plan is the right
/// one; left to choose, it re-plans several of them on every execution (an
/// `= ANY($1)` over a short array looks cheaper planned for its actual
/// size), which cost a quarter of the database's CPU under a burst of
/// creates (`BENCHMARKS.md`). So they use generic plans.
///
/// With `without_waiting_for_flush` (a daily budget is set), the commit
/// returns before its log records are on disk (`synchronous_commit = off`),
/// releasing its locks at once. The caller must then call [`flush_wal`]
/// after the commit and before it tells anyone about what the transaction
/// did.
pub async fn set_up_create_transaction(
    tx: &mut PgConnection,
    without_waiting_for_flush: bool,
) -> sqlx::Result<()> {
    // set_config(…, true) is SET LOCAL: both end with the transaction. An
    // operator's own synchronous_commit (remote_apply, say) is kept unless
    // it is turned off here; `flush_wal` commits under it.
    sqlx::query(
        "SELECT set_config('plan_cache_mode', 'force_generic_plan', true), \
                set_config('synchronous_commit', \
                  CASE WHEN $1 THEN 'off' ELSE current_setting('synchronous_commit') END, true)",
    )
    .bind(without_waiting_for_flush)
    .execute(tx)
    .await?;
    Ok(())
}

/// Returns once every commit made so far on this server is on disk: a
/// small synchronous commit, whose flush covers the log up to its own
/// record and so every record before it. Each connection writes the row of
/// `wal_flush_marks` its pid picks, so concurrent flushes rarely wait for
/// each other (only when two pids share a remainder; the server combines
/// their fsyncs either way). Run it on the connection that committed.
pub async fn flush_wal(conn: &mut PgConnection) -> sqlx::Result<()> {
    sqlx::query("UPDATE wal_flush_marks SET n = n + 1 WHERE slot = pg_backend_pid() % 64")
        .execute(conn)
        .await?;
    Ok(())
}

/// Credits charged today plus credits that lookups in flight may still
/// cost, of the service's refreshes (`refresh`) or of the other lookups,
/// from kept totals (SQL `credits_committed_today`). Read without the
/// budget's lock: an estimate for operators, not a decision.
pub async fn credits_committed_today(
    db: &mut PgConnection,
    per_job: i64,
    refresh: bool,
) -> sqlx::Result<i64> {
    sqlx::query_scalar("SELECT credits_committed_today($1, $2)")
        .bind(per_job)
        .bind(refresh)
        .fetch_one(db)
        .await
}

/// The stored callback token of a lookup made before tokens were derived
/// from SERVICE_SECRET (NULL for every newer lookup).
pub async fn legacy_callback_token(db: &PgPool, id: Uuid) -> sqlx::Result<Option<String>> {
    Ok(
        sqlx::query_scalar::<_, Option<String>>("SELECT callback_token FROM lookups WHERE id = $1")
            .bind(id)
            .fetch_optional(db)
            .await?
            .flatten(),
    )
}

/// Does the table hold any synthetic (`true`) or real (`false`) lookup?
pub async fn any_of_kind(db: &PgPool, synthetic: bool) -> sqlx::Result<bool> {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM lookups WHERE synthetic = $1)")
        .bind(synthetic)
        .fetch_one(db)
        .await
}

/// Does any unfinished lookup still carry a stored callback token? (An
/// `expired` job may still deliver its paid result.) The status list is the
/// predicate of the partial index `lookups_due`, spelled as the index
/// spells it so that the planner can use it.
pub async fn legacy_callback_tokens_remain(db: &PgPool) -> sqlx::Result<bool> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM lookups WHERE callback_token IS NOT NULL \
           AND status IN ('pending', 'queued', 'processing', 'expired'))",
    )
    .fetch_one(db)
    .await
}
