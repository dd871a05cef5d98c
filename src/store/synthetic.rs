//! Synthetic completed lookups and profiles generated inside PostgreSQL
//! (`interests-receiver generate`, and through it `scripts/bench.sh`): the
//! SQL is bench/sql/profiles.sql and bench/sql/profile_facet_counts.sql,
//! the one generator of the project.

use sqlx::PgPool;

const PROFILES_SQL: &str = include_str!("../../bench/sql/profiles.sql");
const FACET_COUNTS_SQL: &str = include_str!("../../bench/sql/profile_facet_counts.sql");

/// The inner and outer HMAC-SHA256 pads of the identifier key: what the SQL
/// needs to compute `ServiceSecret::identity_hash` itself.
pub struct IdentityPads {
    pub ipad: Vec<u8>,
    pub opad: Vec<u8>,
}

impl IdentityPads {
    pub fn of(key: &[u8; 32]) -> IdentityPads {
        let block = |pad: u8| {
            let mut b = vec![pad; 64];
            for (x, k) in b.iter_mut().zip(key) {
                *x ^= k;
            }
            b
        };
        IdentityPads {
            ipad: block(0x36),
            opad: block(0x5c),
        }
    }
}

/// The next free index of generated people (1 on a database without any).
pub async fn next_index(db: &PgPool) -> sqlx::Result<i64> {
    sqlx::query_scalar(
        "SELECT COALESCE(max((metadata->>'generated')::bigint), 0) + 1 FROM lookups \
         WHERE synthetic AND metadata ? 'generated'",
    )
    .fetch_one(db)
    .await
}

/// Generates people `from..=to` in one transaction, with their search
/// postings and facet counts, then analyses the tables so that the planner
/// knows their new size. `key_id`: `ServiceSecret::identity_key_id` of the
/// key behind `pads`, stamped on each lookup as a service stamps the ones
/// it writes; without it, a service started on the database re-keys every
/// generated lookup in the background (at a million, an hour of writes).
pub async fn generate(
    db: &PgPool,
    from: i64,
    to: i64,
    pads: &IdentityPads,
    key_id: &str,
) -> sqlx::Result<()> {
    let mut tx = db.begin().await?;
    sqlx::query(
        "CREATE TEMP TABLE identity_key (ipad bytea, opad bytea, key_id text) ON COMMIT DROP",
    )
    .execute(&mut *tx)
    .await?;
    sqlx::query("INSERT INTO identity_key VALUES ($1, $2, $3)")
        .bind(&pads.ipad)
        .bind(&pads.opad)
        .bind(key_id)
        .execute(&mut *tx)
        .await?;
    // Only integers are put into the text.
    let sql = PROFILES_SQL
        .replace("{{from}}", &from.to_string())
        .replace("{{to}}", &to.to_string());
    sqlx::raw_sql(&sql).execute(&mut *tx).await?;
    sqlx::raw_sql(FACET_COUNTS_SQL).execute(&mut *tx).await?;
    tx.commit().await?;
    // One statement each: several in one query would be one transaction,
    // where VACUUM cannot run.
    for table in ["lookups", "profiles", "lookup_identities", "profile_facets"] {
        sqlx::raw_sql(&format!("VACUUM ANALYZE {table}"))
            .execute(db)
            .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};

    #[test]
    fn the_pads_give_the_hmac_the_service_computes() {
        let secret = crate::secrets::ServiceSecret::new(vec![9u8; 40], None);
        let key = secret.key(crate::secrets::Purpose::IdentifierHash);
        let pads = IdentityPads::of(&key);
        let identity = "email:ann@example.com";
        let inner = Sha256::new()
            .chain_update(&pads.ipad)
            .chain_update(identity.as_bytes())
            .finalize();
        let outer = Sha256::new()
            .chain_update(&pads.opad)
            .chain_update(inner)
            .finalize();
        assert_eq!(hex::encode(outer), secret.identity_hash(identity));
    }
}
