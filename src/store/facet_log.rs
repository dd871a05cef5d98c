//! The feed of the in-process facet index (src/facet_index/, migration
//! `facet_index_log`): every profile's facet values as one snapshot sees
//! them, then the changes of the transactions that snapshot did not see.
//! A snapshot is carried as the text of `pg_current_snapshot()`.

use futures_util::TryStreamExt;
use sqlx::PgPool;

/// How long log rows are kept for followers that read late. A follower
/// whose last snapshot is older than what was pruned reloads.
const KEEP: &str = "5 minutes";

/// Calls `each(field, value, docs)` for every case-folded facet value of
/// the stored profiles, with the `doc` of every profile carrying it, all
/// read in one snapshot, and returns that snapshot.
pub async fn load(db: &PgPool, mut each: impl FnMut(&str, &str, Vec<i64>)) -> sqlx::Result<String> {
    let mut tx = db.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .execute(&mut *tx)
        .await?;
    // The grouping holds every posting once; on disk it is many times slower.
    sqlx::query("SET LOCAL work_mem = '256MB'")
        .execute(&mut *tx)
        .await?;
    let snapshot: String = sqlx::query_scalar("SELECT pg_current_snapshot()::text")
        .fetch_one(&mut *tx)
        .await?;
    {
        let mut rows = sqlx::query_as::<_, (String, String, Vec<i64>)>(
            "SELECT f.field, f.value_lower, array_agg(p.doc) FROM profiles p, \
             profile_facet_rows(p.interest_facets, p.category_facets, p.brand_facets, \
                                p.archetype_facets, p.industry_facets) f \
             GROUP BY 1, 2",
        )
        .fetch(&mut *tx);
        while let Some((field, value, docs)) = rows.try_next().await? {
            each(&field, &value, docs);
        }
    }
    tx.commit().await?;
    Ok(snapshot)
}

/// What changed since a snapshot.
#[derive(Debug, Default)]
pub struct Changes {
    /// The snapshot these changes bring a follower to.
    pub snapshot: String,
    /// Changes since `since` may be missing from the log (pruned, or a bulk
    /// load with the triggers off): load everything again.
    pub reload: bool,
    /// The `values` asked for, case-folded as the database folds them.
    pub lowered: Vec<String>,
    /// One entry per profile value that came (`sign` 1) or went (-1).
    pub docs: Vec<i64>,
    pub signs: Vec<i16>,
    pub fields: Vec<String>,
    pub values: Vec<String>,
}

/// The log rows of the transactions that `since` did not see and this
/// statement's snapshot does (one statement: one snapshot), with `values`
/// case-folded by the database on the way.
pub async fn changes(db: &PgPool, since: &str, values: &[&str]) -> sqlx::Result<Changes> {
    type Row = (
        String,
        bool,
        Vec<String>,
        Option<Vec<i64>>,
        Option<Vec<i16>>,
        Option<Vec<String>>,
        Option<Vec<String>>,
    );
    let (snapshot, reload, lowered, docs, signs, fields, values): Row = sqlx::query_as(
        "SELECT pg_current_snapshot()::text, \
                m.pruned_upto >= pg_snapshot_xmin($1::pg_snapshot) \
                OR (m.bulk_load >= pg_snapshot_xmin($1::pg_snapshot) \
                    AND NOT pg_visible_in_snapshot(m.bulk_load, $1::pg_snapshot)), \
                ARRAY(SELECT lower(x) FROM unnest($2::text[]) WITH ORDINALITY u(x, n) ORDER BY n), \
                c.docs, c.signs, c.fields, c.vals \
           FROM facet_log_marks m, \
                LATERAL (SELECT array_agg(l.doc) AS docs, array_agg(l.sign) AS signs, \
                                array_agg(f.field) AS fields, array_agg(f.value_lower) AS vals \
                           FROM facet_log l, \
                                profile_facet_rows(l.interest, l.category, l.brand, \
                                                   l.archetype, l.industry) f \
                          WHERE l.xid >= pg_snapshot_xmin($1::pg_snapshot) \
                            AND NOT pg_visible_in_snapshot(l.xid, $1::pg_snapshot)) c",
    )
    .bind(since)
    .bind(values)
    .fetch_one(db)
    .await?;
    Ok(Changes {
        snapshot,
        reload,
        lowered,
        docs: docs.unwrap_or_default(),
        signs: signs.unwrap_or_default(),
        fields: fields.unwrap_or_default(),
        values: values.unwrap_or_default(),
    })
}

/// Deletes the log rows older than [`KEEP`] whose transactions every
/// snapshot sees, and marks the newest of them (followers behind it reload).
pub async fn prune(db: &PgPool) -> sqlx::Result<u64> {
    sqlx::query_scalar::<_, i64>(&format!(
        "WITH gone AS (DELETE FROM facet_log \
                        WHERE at < now() - interval '{KEEP}' \
                          AND xid < pg_snapshot_xmin(pg_current_snapshot()) \
                       RETURNING xid), \
              newest AS (SELECT max(xid) AS xid, count(*) AS n FROM gone), \
              marked AS (UPDATE facet_log_marks m SET pruned_upto = greatest(m.pruned_upto, n.xid) \
                           FROM newest n WHERE n.xid IS NOT NULL) \
         SELECT n FROM newest"
    ))
    .fetch_one(db)
    .await
    .map(|n| n as u64)
}
