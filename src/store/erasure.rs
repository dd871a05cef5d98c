//! Erasure of a person (right to be forgotten) and the suppression list.

use sqlx::{PgConnection, PgExecutor};

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Erased {
    pub lookups: i64,
    pub profiles: i64,
    pub deliveries: i64,
}

/// Deletes every lookup of a person, found by any of `identities` (keyed
/// hashes) or, for an erasure by name, by that name, with its profile,
/// deliveries (and their stored bodies) and idempotency records, and counts
/// what went.
pub async fn erase(
    tx: &mut PgConnection,
    identities: &[String],
    name: Option<&str>,
) -> sqlx::Result<Erased> {
    let doomed = "SELECT id FROM lookups WHERE id IN \
        (SELECT lookup_id FROM lookup_identities WHERE identity = ANY($1)) \
        OR ($2::text IS NOT NULL AND lower(name) = lower($2))";
    let counts: (i64, i64, i64) = sqlx::query_as(&format!(
        "WITH doomed AS ({doomed} ORDER BY id FOR UPDATE) \
         SELECT (SELECT count(*) FROM doomed), \
           (SELECT count(*) FROM profiles WHERE lookup_id IN (SELECT id FROM doomed)), \
           (SELECT count(*) FROM deliveries WHERE lookup_id IN (SELECT id FROM doomed))"
    ))
    .bind(identities)
    .bind(name)
    .fetch_one(&mut *tx)
    .await?;
    // Profiles, deliveries, identities, events and idempotency records go
    // with their lookup (ON DELETE CASCADE).
    sqlx::query(&format!("DELETE FROM lookups WHERE id IN ({doomed})"))
        .bind(identities)
        .bind(name)
        .execute(&mut *tx)
        .await?;
    // The profiles' removal from the facet counts is queued with their
    // results; fold it now, in this transaction, so no copy outlives it.
    sqlx::query("SELECT facet_fold(2147483647, true)")
        .execute(&mut *tx)
        .await?;
    Ok(Erased {
        lookups: counts.0,
        profiles: counts.1,
        deliveries: counts.2,
    })
}

/// Takes away the Idempotency-Key records (key, request hash) of the
/// lookups [`erase`] is about to delete, for the caller to remember them
/// sealed (they may hold the identifier).
pub async fn take_idempotency_keys(
    tx: &mut PgConnection,
    identities: &[String],
    name: Option<&str>,
) -> sqlx::Result<Vec<(String, String)>> {
    sqlx::query_as(
        "DELETE FROM idempotency_keys WHERE lookup_id IN (SELECT id FROM lookups WHERE id IN \
           (SELECT lookup_id FROM lookup_identities WHERE identity = ANY($1)) \
           OR ($2::text IS NOT NULL AND lower(name) = lower($2))) \
         RETURNING key, request_sha256",
    )
    .bind(identities)
    .bind(name)
    .fetch_all(tx)
    .await
}

/// Refuses later lookups of this identity (a keyed hash).
pub async fn suppress(db: impl PgExecutor<'_>, identity: &str) -> sqlx::Result<()> {
    sqlx::query("INSERT INTO suppressed_identities (identity) VALUES ($1) ON CONFLICT DO NOTHING")
        .bind(identity)
        .execute(db)
        .await?;
    Ok(())
}

/// Is any of `identities` (keyed hashes) suppressed, or any of
/// `legacy_digests` (suppressions made before hashes were keyed)?
pub async fn any_suppressed(
    db: impl PgExecutor<'_>,
    identities: &[String],
    legacy_digests: &[String],
) -> sqlx::Result<bool> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM suppressed_identities WHERE identity = ANY($1)) \
             OR EXISTS (SELECT 1 FROM suppressions WHERE identifier_sha256 = ANY($2))",
    )
    .bind(identities)
    .bind(legacy_digests)
    .fetch_one(db)
    .await
}
