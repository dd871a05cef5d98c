//! Erasure of a person (right to be forgotten) and the suppression list.

use sqlx::{PgConnection, PgExecutor};

/// Which identifier an erasure matches on; values are normalised already.
#[derive(Debug, Clone, Copy)]
pub enum Identifier<'a> {
    Email(&'a str),
    Phone(&'a str),
    SocialMediaUrl(&'a str),
    Name(&'a str),
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Erased {
    pub lookups: i64,
    pub profiles: i64,
    pub deliveries: i64,
}

/// Deletes every lookup of this person with its profile, deliveries (and
/// their stored bodies) and idempotency records, and counts what went.
pub async fn erase(tx: &mut PgConnection, who: Identifier<'_>) -> sqlx::Result<Erased> {
    let (column, value) = match who {
        Identifier::Email(v) => ("email", v),
        Identifier::Phone(v) => ("phone", v),
        Identifier::SocialMediaUrl(v) => ("social_media_url", v),
        Identifier::Name(v) => ("name", v),
    };
    // `column` comes from the match above, never from input.
    let counts: (i64, i64, i64) = sqlx::query_as(&format!(
        "WITH doomed AS (SELECT id FROM lookups WHERE lower({column}) = lower($1) FOR UPDATE) \
         SELECT (SELECT count(*) FROM doomed), \
           (SELECT count(*) FROM profiles WHERE lookup_id IN (SELECT id FROM doomed)), \
           (SELECT count(*) FROM deliveries WHERE lookup_id IN (SELECT id FROM doomed))"
    ))
    .bind(value)
    .fetch_one(&mut *tx)
    .await?;
    // Profiles, deliveries and idempotency records go with their lookup
    // (ON DELETE CASCADE).
    sqlx::query(&format!(
        "DELETE FROM lookups WHERE lower({column}) = lower($1)"
    ))
    .bind(value)
    .execute(&mut *tx)
    .await?;
    Ok(Erased {
        lookups: counts.0,
        profiles: counts.1,
        deliveries: counts.2,
    })
}

pub async fn suppress(db: impl PgExecutor<'_>, digest: &str) -> sqlx::Result<()> {
    sqlx::query("INSERT INTO suppressions (identifier_sha256) VALUES ($1) ON CONFLICT DO NOTHING")
        .bind(digest)
        .execute(db)
        .await?;
    Ok(())
}

pub async fn any_suppressed(db: impl PgExecutor<'_>, digests: &[String]) -> sqlx::Result<bool> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM suppressions WHERE identifier_sha256 = ANY($1))",
    )
    .bind(digests)
    .fetch_one(db)
    .await
}
