//! A person's profile versions: every profile of a lookup that shares an
//! identity hash with the given one (the same-person rule, through
//! `lookup_identities`), newest first, and the change a newly stored
//! version brings (`profiles.change`, which the status trigger turns into a
//! `profile.changed` event at commit).

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::{FromRow, PgConnection, PgExecutor, PgPool, Postgres, QueryBuilder};
use uuid::Uuid;

use super::profiles::{ProfileFilter, push_filters};
use crate::subject::Subject;
use crate::versions::Change;

#[derive(Debug, Clone, FromRow)]
pub struct Version {
    pub profile_id: Uuid,
    pub lookup_id: Uuid,
    pub completed_on: Option<DateTime<Utc>>,
    /// `completed_on`, or when the profile was stored if upstream gave none.
    pub at: DateTime<Utc>,
    pub result: Value,
}

/// The lookups of the person of lookup `$1` (itself included, so that a
/// lookup without identities, e.g. a generated one, is its own person).
const SAME_PERSON: &str = "SELECT o.lookup_id FROM lookup_identities mine \
    JOIN lookup_identities o ON o.identity = mine.identity WHERE mine.lookup_id = $1 \
    UNION SELECT $1";

/// Newest first; ties (same instant) by storage order.
const ORDER: &str = "COALESCE(p.completed_on, p.created_at) DESC, p.created_at DESC, p.id DESC";

/// True for profile `p` of lookup `l` when the same person has a newer
/// version (in [`ORDER`]): retention keeps the newest one.
pub(crate) const SUPERSEDED: &str = "EXISTS (SELECT 1 FROM lookup_identities mine \
    JOIN lookup_identities o ON o.identity = mine.identity AND o.lookup_id <> mine.lookup_id \
    JOIN profiles q ON q.lookup_id = o.lookup_id \
    WHERE mine.lookup_id = l.id \
      AND (COALESCE(q.completed_on, q.created_at), q.created_at, q.id) \
        > (COALESCE(p.completed_on, p.created_at), p.created_at, p.id))";

/// Every version of the person of profile `id`, newest first; `None` when
/// no profile has this id.
pub async fn of_profile(db: &mut PgConnection, id: Uuid) -> sqlx::Result<Option<Vec<Version>>> {
    let lookup: Option<Uuid> = sqlx::query_scalar("SELECT lookup_id FROM profiles WHERE id = $1")
        .bind(id)
        .fetch_optional(&mut *db)
        .await?;
    let Some(lookup) = lookup else {
        return Ok(None);
    };
    of_lookup(&mut *db, lookup).await.map(Some)
}

async fn of_lookup(db: impl PgExecutor<'_>, lookup: Uuid) -> sqlx::Result<Vec<Version>> {
    sqlx::query_as(&format!(
        "SELECT p.id AS profile_id, p.lookup_id, p.completed_on, \
           COALESCE(p.completed_on, p.created_at) AS at, p.result \
         FROM profiles p WHERE p.lookup_id IN ({SAME_PERSON}) ORDER BY {ORDER}"
    ))
    .bind(lookup)
    .fetch_all(db)
    .await
}

/// Records on the profile just stored for `lookup` what it changed since
/// the person's previous version, when it changed anything. Runs in the
/// transaction that stored it, before its commit fires the status trigger.
pub async fn record_change(db: &mut PgConnection, lookup: Uuid) -> sqlx::Result<()> {
    // This version and the one before it only: a person refreshed for
    // years has many versions, and only the last two matter here.
    let pair: Vec<Version> = sqlx::query_as(&format!(
        "WITH cur AS (SELECT id, COALESCE(completed_on, created_at) AS k, created_at AS c \
           FROM profiles WHERE lookup_id = $1) \
         SELECT p.id AS profile_id, p.lookup_id, p.completed_on, \
           COALESCE(p.completed_on, p.created_at) AS at, p.result \
         FROM profiles p, cur WHERE p.lookup_id IN ({SAME_PERSON}) \
           AND (COALESCE(p.completed_on, p.created_at), p.created_at, p.id) <= (cur.k, cur.c, cur.id) \
         ORDER BY {ORDER} LIMIT 2"
    ))
    .bind(lookup)
    .fetch_all(&mut *db)
    .await?;
    let [current, previous] = &pair[..] else {
        return Ok(());
    };
    if current.lookup_id != lookup {
        return Ok(());
    }
    let change = Change::between(&previous.result, &current.result);
    if change.is_empty() {
        return Ok(());
    }
    let mut data = serde_json::to_value(&change).expect("a change serialises");
    data["previous_profile_id"] = serde_json::json!(previous.profile_id);
    sqlx::query("UPDATE profiles SET change = $1 WHERE id = $2")
        .bind(data)
        .bind(current.profile_id)
        .execute(&mut *db)
        .await?;
    Ok(())
}

/// A person's newest profile, due for a refresh: who to look up again.
#[derive(Debug, Clone, FromRow)]
pub struct Stale {
    pub profile_id: Uuid,
    pub lookup_id: Uuid,
    pub metadata: Value,
    #[sqlx(flatten)]
    pub subject: Subject,
}

/// The people whose newest profile matches `filter` and completed before
/// `older_than`, oldest first, at most `limit`; with `untried_since`, only
/// those with no lookup at all created since then.
pub async fn stale(
    db: &PgPool,
    filter: &ProfileFilter,
    older_than: DateTime<Utc>,
    untried_since: Option<DateTime<Utc>>,
    limit: i64,
) -> sqlx::Result<Vec<Stale>> {
    let mut q: QueryBuilder<Postgres> = QueryBuilder::new(
        "SELECT p.id AS profile_id, l.id AS lookup_id, l.metadata, l.email, l.phone, \
           l.social_media_url, l.name, l.company \
         FROM profiles p JOIN lookups l ON l.id = p.lookup_id WHERE true",
    );
    push_filters(&mut q, filter);
    q.push(" AND COALESCE(p.completed_on, p.created_at) < ")
        .push_bind(older_than)
        .push(format_args!(" AND NOT {SUPERSEDED}"));
    if let Some(since) = untried_since {
        q.push(
            " AND NOT EXISTS (SELECT 1 FROM lookup_identities mine \
               JOIN lookup_identities o ON o.identity = mine.identity \
               JOIN lookups ol ON ol.id = o.lookup_id \
               WHERE mine.lookup_id = l.id AND ol.created_at >= ",
        )
        .push_bind(since)
        .push(")");
    }
    q.push(" ORDER BY COALESCE(p.completed_on, p.created_at), p.id LIMIT ")
        .push_bind(limit);
    q.build_query_as().fetch_all(db).await
}
