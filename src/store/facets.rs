//! Facet counts: the most common values of one facet field among profiles.
//!
//! - No filter: the top of `facet_totals`, counts kept from the queued
//!   value changes of every profile written (`fold`), so the answer costs
//!   what `limit` costs.
//! - Any filters: the matching profiles are found as the profile list finds
//!   them (`profiles::Plan`: from the rarest facet value's postings, or
//!   from the identity index) and their values of the field are counted.
//!   This costs what the number of matching profiles costs (BENCHMARKS.md);
//!   nothing kept grows with the square of a profile's values.
//!
//! Either way each value is shown in its most common spelling across all
//! stored profiles (`facet_spellings`).

use sqlx::{FromRow, PgPool, Postgres, QueryBuilder};

use super::profiles::{Plan, ProfileFilter};

/// A facet field of `GET /v1/facets`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    Interest,
    Category,
    Brand,
    Archetype,
    Industry,
}

impl Field {
    pub const ALL: [Field; 5] = [
        Field::Interest,
        Field::Category,
        Field::Brand,
        Field::Archetype,
        Field::Industry,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Field::Interest => "interest",
            Field::Category => "category",
            Field::Brand => "brand",
            Field::Archetype => "archetype",
            Field::Industry => "industry",
        }
    }

    pub fn parse(raw: &str) -> Option<Field> {
        Field::ALL.into_iter().find(|f| f.as_str() == raw)
    }

    /// The position in [`Field::ALL`].
    pub fn slot(self) -> usize {
        self as usize
    }

    /// The array column of `profiles p` holding this field's values as
    /// spelled.
    fn column(self) -> &'static str {
        match self {
            Field::Interest => "p.interest_facets",
            Field::Category => "p.category_facets",
            Field::Brand => "p.brand_facets",
            Field::Archetype => "p.archetype_facets",
            Field::Industry => "p.industry_facets",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct FacetCount {
    /// The most common spelling of the value.
    pub value: String,
    /// Profiles carrying the value, case folded.
    pub count: i64,
}

/// The most common spelling of `c.value_lower`, or the value itself.
const SPELLING: &str = "COALESCE((SELECT s.spelling FROM facet_spellings s \
    WHERE s.field = $1 AND s.value_lower = c.value_lower \
    ORDER BY s.count DESC, s.spelling LIMIT 1), c.value_lower)";

/// Queued profile changes folded per statement.
const FOLD_BATCH: i32 = 5000;

/// Adds the queued profile changes to the facet counts (migration
/// `facet_changes_queue`): with `wait`, after any fold in progress, so that
/// every committed profile is counted; without, only if nobody else folds.
pub async fn fold(db: &PgPool, wait: bool) -> sqlx::Result<i64> {
    let mut total = 0;
    loop {
        let n: i32 = sqlx::query_scalar("SELECT facet_fold($1, $2)")
            .bind(FOLD_BATCH)
            .bind(wait)
            .fetch_one(db)
            .await?;
        total += i64::from(n);
        if n < FOLD_BATCH {
            return Ok(total);
        }
    }
}

/// `counts` (case-folded values, most common first) in their most common
/// spellings, in the same order.
pub async fn spelled(
    db: &PgPool,
    field: Field,
    counts: &[(String, i64)],
) -> sqlx::Result<Vec<FacetCount>> {
    let (values, numbers): (Vec<&str>, Vec<i64>) =
        counts.iter().map(|(v, n)| (v.as_str(), *n)).unzip();
    sqlx::query_as(&format!(
        "SELECT {SPELLING} AS value, c.count \
           FROM unnest($2::text[], $3::int8[]) WITH ORDINALITY AS c(value_lower, count, n) \
          ORDER BY c.n"
    ))
    .bind(field.as_str())
    .bind(values)
    .bind(numbers)
    .fetch_all(db)
    .await
}

/// The `limit` most frequent values of `field` among the profiles matching
/// `filter`. The unfiltered counts are the kept totals: [`fold`] them first
/// (on the primary) for every committed profile to be counted.
pub async fn top(
    db: &PgPool,
    field: Field,
    filter: &ProfileFilter,
    limit: i64,
) -> sqlx::Result<Vec<FacetCount>> {
    if filter.is_empty() {
        return sqlx::query_as(&format!(
            "SELECT {SPELLING} AS value, c.count FROM facet_totals c \
             WHERE c.field = $1 AND c.count > 0 \
             ORDER BY c.count DESC, c.value_lower LIMIT $2"
        ))
        .bind(field.as_str())
        .bind(limit)
        .fetch_all(db)
        .await;
    }
    let plan = Plan::choose(db, filter).await?;
    // The field name is bound first: SPELLING reads it as $1.
    let mut q: QueryBuilder<Postgres> = QueryBuilder::new("WITH f AS (SELECT ");
    q.push_bind(field.as_str());
    q.push("::text AS field), m AS (");
    plan.push_matching(&mut q, None);
    // A profile's array may spell one value twice (case): count it once.
    q.push(format_args!(
        "), c AS (SELECT u.v AS value_lower, count(*) AS count \
         FROM m JOIN profiles p ON p.id = m.id, \
         LATERAL (SELECT DISTINCT lower(x) AS v FROM unnest({}) x) u \
         GROUP BY u.v ORDER BY count(*) DESC, u.v LIMIT ",
        field.column()
    ))
    .push_bind(limit)
    .push(format_args!(
        ") SELECT {SPELLING} AS value, c.count FROM c ORDER BY c.count DESC, c.value_lower"
    ));
    // Planned with its values, as the profile list is.
    q.build_query_as().persistent(false).fetch_all(db).await
}
