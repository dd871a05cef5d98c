//! The audit log: who (by token name) did what to whose data.

use chrono::{DateTime, Utc};
use sqlx::{FromRow, PgExecutor, PgPool};
use uuid::Uuid;

/// One audited action.
pub struct Entry<'a> {
    pub token: &'a str,
    pub action: &'a str,
    pub subject_hash: Option<&'a str>,
    pub lookup_id: Option<Uuid>,
    pub count: Option<i32>,
}

pub async fn record(db: impl PgExecutor<'_>, e: Entry<'_>) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO audit_log (token, action, subject_hash, lookup_id, count) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(e.token)
    .bind(e.action)
    .bind(e.subject_hash)
    .bind(e.lookup_id)
    .bind(e.count)
    .execute(db)
    .await?;
    Ok(())
}

/// One action of `token` on several lookups, in one statement.
pub async fn record_lookups(
    db: impl PgExecutor<'_>,
    token: &str,
    action: &str,
    lookups: &[(Uuid, Option<String>)],
) -> sqlx::Result<()> {
    let (ids, hashes): (Vec<Uuid>, Vec<Option<String>>) = lookups.iter().cloned().unzip();
    sqlx::query(
        "INSERT INTO audit_log (token, action, subject_hash, lookup_id) \
         SELECT $1, $2, h, id FROM unnest($3::uuid[], $4::text[]) AS t(id, h)",
    )
    .bind(token)
    .bind(action)
    .bind(ids)
    .bind(hashes)
    .execute(db)
    .await?;
    Ok(())
}

#[derive(Debug, FromRow)]
pub struct AuditRecord {
    pub id: i64,
    pub at: DateTime<Utc>,
    pub token: String,
    pub action: String,
    pub subject_hash: Option<String>,
    pub lookup_id: Option<Uuid>,
    pub count: Option<i32>,
}

/// Newest first, before id `before` when given; `limit + 1` rows.
pub async fn list(db: &PgPool, before: Option<i64>, limit: i64) -> sqlx::Result<Vec<AuditRecord>> {
    sqlx::query_as(
        "SELECT id, at, token, action, subject_hash, lookup_id, count FROM audit_log \
         WHERE ($1::bigint IS NULL OR id < $1) ORDER BY id DESC LIMIT $2",
    )
    .bind(before)
    .bind(limit + 1)
    .fetch_all(db)
    .await
}
