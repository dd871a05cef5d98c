//! Profile reads: by id and the filtered, paginated list.

use chrono::{DateTime, Utc};
use serde_json::value::RawValue;
use sqlx::types::Json;
use sqlx::{FromRow, PgPool, Postgres, QueryBuilder};
use uuid::Uuid;

use super::facets::Field;
use super::{Cursor, Page, paginate};
use crate::subject::{MatchBasis, Subject};

#[derive(Debug, Clone, FromRow)]
pub struct ProfileRecord {
    pub id: Uuid,
    pub lookup_id: Uuid,
    pub request_id: String,
    /// The stored result as its JSON text: served as it is, never parsed
    /// into a tree and written out again (a page of 500 profiles spent
    /// half its CPU doing that).
    pub result: Json<Box<RawValue>>,
    pub completed_on: Option<DateTime<Utc>>,
    pub received_via: String,
    pub synthetic: bool,
    pub created_at: DateTime<Utc>,
    #[sqlx(flatten)]
    pub subject: Subject,
}

impl ProfileRecord {
    fn cursor(&self) -> Cursor {
        Cursor {
            created_at: self.created_at,
            id: self.id,
        }
    }
}

const SELECT: &str = "SELECT p.id, p.lookup_id, p.request_id, p.result, p.completed_on, \
    p.received_via, p.created_at, l.synthetic, l.email, l.phone, l.social_media_url, l.name, \
    l.company FROM profiles p JOIN lookups l ON l.id = p.lookup_id";

pub async fn get(db: &PgPool, id: Uuid) -> sqlx::Result<Option<ProfileRecord>> {
    sqlx::query_as(&format!("{SELECT} WHERE p.id = $1"))
        .bind(id)
        .fetch_optional(db)
        .await
}

/// Filters of the profile list. Identifier filters (email, phone,
/// social_media_url) are keyed identity hashes, so that every spelling of
/// one person matches through the `lookup_identities` index; facet values
/// are matched ignoring case.
#[derive(Debug, Default, Clone)]
pub struct ProfileFilter {
    /// One entry per identifier filter, all of which must hold: the hashes
    /// of that identifier under every accepted secret (any one matches).
    pub identities: Vec<Vec<String>>,
    /// email | phone | social_media_url | name_company | name_only.
    pub match_basis: Option<MatchBasis>,
    pub interest: Option<String>,
    pub category: Option<String>,
    pub brand: Option<String>,
    pub archetype: Option<String>,
    pub industry: Option<String>,
}

/// A page of the profiles matching `filter`. `matching`: the numbers
/// (`profiles.doc`) of every profile the filter matches, when the facet
/// index knows them (then only those are read).
pub async fn list(
    db: &PgPool,
    filter: &ProfileFilter,
    matching: Option<Vec<i64>>,
    after: Option<Cursor>,
    limit: i64,
) -> sqlx::Result<Page<ProfileRecord>> {
    // The page is chosen on the postings (or `profiles`) alone, in keyset
    // order, and only its rows are joined to `profiles` and `lookups` by
    // primary key, so the cost follows the page size, not the data's.
    let plan = match matching {
        Some(docs) => Plan::of_docs(filter, docs),
        None => Plan::choose(db, filter).await?,
    };
    let mut q: QueryBuilder<Postgres> = QueryBuilder::new(
        "SELECT p.id, p.lookup_id, p.request_id, p.result, p.completed_on, \
         p.received_via, p.created_at, l.synthetic, l.email, l.phone, l.social_media_url, l.name, \
         l.company FROM (",
    );
    plan.push_matching(&mut q, after);
    q.push(" ORDER BY created_at DESC, id DESC LIMIT ")
        .push_bind(limit + 1)
        .push(
            ") m JOIN profiles p ON p.id = m.id JOIN lookups l ON l.id = p.lookup_id \
             ORDER BY p.created_at DESC, p.id DESC",
        );
    // Planned each time with its values: a generic plan cannot tell a rare
    // value from a common one, and merges whole postings instead.
    let rows = q.build_query_as().persistent(false).fetch_all(db).await?;
    Ok(paginate(rows, limit, ProfileRecord::cursor))
}

/// How the profiles matching a filter are found. A search with facet
/// filters and no identifier walks the postings of its rarest facet value
/// (`profile_facets`, already in keyset order) and probes the others on
/// their whole key; one with an identifier (one person, a few profiles)
/// starts from the identity index.
pub(crate) struct Plan<'a> {
    filter: &'a ProfileFilter,
    source: Source<'a>,
}

/// Where a plan reads the matching profiles.
enum Source<'a> {
    /// `profiles`, through the identity index when there is an identifier.
    Profiles,
    /// The postings of this facet value, walked newest first.
    Postings(Field, &'a str),
    /// These profile numbers (`profiles.doc`), known beforehand.
    Docs(Vec<i64>),
}

impl<'a> Plan<'a> {
    pub(crate) async fn choose(db: &PgPool, filter: &'a ProfileFilter) -> sqlx::Result<Plan<'a>> {
        let facets = filter.facet_filters();
        let driver = if !filter.identities.is_empty() {
            None
        } else if facets.len() < 2 {
            facets.first().copied()
        } else {
            // The kept totals are an estimate here (changes not yet folded
            // are missing), which is all the choice needs.
            let fields: Vec<&str> = facets.iter().map(|(f, _)| f.as_str()).collect();
            let values: Vec<&str> = facets.iter().map(|(_, v)| *v).collect();
            let counts: Vec<i64> = sqlx::query_scalar(
                "SELECT COALESCE(t.count, 0) FROM unnest($1::text[], $2::text[]) \
                   WITH ORDINALITY AS f(field, value, n) \
                 LEFT JOIN facet_totals t ON t.field = f.field AND t.value_lower = lower(f.value) \
                 ORDER BY f.n",
            )
            .bind(&fields)
            .bind(&values)
            .fetch_all(db)
            .await?;
            facets
                .iter()
                .zip(counts)
                .min_by_key(|(_, count)| *count)
                .map(|(f, _)| *f)
        };
        let source = match driver {
            Some((field, value)) => Source::Postings(field, value),
            None => Source::Profiles,
        };
        Ok(Plan { filter, source })
    }

    /// The profiles numbered `docs`, which are those the filter matches.
    fn of_docs(filter: &'a ProfileFilter, docs: Vec<i64>) -> Plan<'a> {
        Plan {
            filter,
            source: Source::Docs(docs),
        }
    }

    /// Appends a `SELECT id, created_at` of the matching profiles (after
    /// `after` in keyset order, if given), for the caller to order or count.
    pub(crate) fn push_matching(&self, q: &mut QueryBuilder<'_, Postgres>, after: Option<Cursor>) {
        let (field, value) = match &self.source {
            Source::Docs(docs) => {
                q.push("SELECT p.id, p.created_at FROM profiles p WHERE p.doc = ANY(")
                    .push_bind(docs.clone())
                    .push(")");
                push_after(q, "p.created_at", "p.id", after);
                return;
            }
            Source::Profiles => {
                q.push("SELECT p.id, p.created_at FROM profiles p WHERE true");
                push_filters(q, self.filter);
                push_after(q, "p.created_at", "p.id", after);
                return;
            }
            Source::Postings(field, value) => (*field, *value),
        };
        q.push("SELECT d.profile_id AS id, d.created_at FROM profile_facets d WHERE d.field = ")
            .push_bind(field.as_str())
            .push(" AND d.value = lower(")
            .push_bind(value.to_owned())
            .push(")");
        for (other, value) in self.filter.facet_filters() {
            if other != field {
                push_posting(q, other, value, "d.created_at", "d.profile_id");
            }
        }
        if let Some(basis) = self.filter.match_basis {
            q.push(
                " AND EXISTS (SELECT 1 FROM profiles p JOIN lookups l ON l.id = p.lookup_id \
                 WHERE p.id = d.profile_id AND l.match_basis = ",
            )
            .push_bind(basis.as_str())
            .push(")");
        }
        push_after(q, "d.created_at", "d.profile_id", after);
    }
}

/// ` AND (created_at, id) < (cursor)`: the rows after the cursor, newest first.
fn push_after(q: &mut QueryBuilder<'_, Postgres>, at: &str, id: &str, after: Option<Cursor>) {
    if let Some(c) = after {
        q.push(format_args!(" AND ({at}, {id}) < ("))
            .push_bind(c.created_at)
            .push(", ")
            .push_bind(c.id)
            .push(")");
    }
}

/// ` AND` the profile at `(at, id)` carries `value` in `field`: one probe of
/// the postings' whole key per row walked. A scalar subquery, not EXISTS:
/// the planner would turn EXISTS into a join and, misjudging how many rows
/// two values share, hash both whole postings instead of walking one.
fn push_posting(q: &mut QueryBuilder<'_, Postgres>, field: Field, value: &str, at: &str, id: &str) {
    q.push(" AND (SELECT true FROM profile_facets f WHERE f.field = ")
        .push_bind(field.as_str())
        .push(" AND f.value = lower(")
        .push_bind(value.to_owned())
        .push(format_args!(
            ") AND f.created_at = {at} AND f.profile_id = {id})"
        ));
}

impl ProfileFilter {
    pub fn is_empty(&self) -> bool {
        self.identities.is_empty()
            && self.match_basis.is_none()
            && self.facets().all(|(_, v)| v.is_none())
    }

    fn facets(&self) -> impl Iterator<Item = (Field, &Option<String>)> {
        [
            (Field::Interest, &self.interest),
            (Field::Category, &self.category),
            (Field::Brand, &self.brand),
            (Field::Archetype, &self.archetype),
            (Field::Industry, &self.industry),
        ]
        .into_iter()
    }

    /// The facet filters, when they are all the filter holds (no
    /// identifier, no match basis): what the facet index can answer.
    pub fn only_facets(&self) -> Option<Vec<(Field, &str)>> {
        (self.identities.is_empty() && self.match_basis.is_none()).then(|| self.facet_filters())
    }

    /// The facet filters set, e.g. `[(Field::Brand, "Nike")]`.
    pub fn facet_filters(&self) -> Vec<(Field, &str)> {
        self.facets()
            .filter_map(|(field, v)| v.as_deref().map(|v| (field, v)))
            .collect()
    }
}

/// Appends ` AND <condition>` for every filter set, on `profiles p`. Shared
/// by the profile list and the facet counts so that both mean the same set.
pub(crate) fn push_filters(q: &mut QueryBuilder<'_, Postgres>, filter: &ProfileFilter) {
    // Each identifier through the identity index (primary key of
    // `lookup_identities`), not by reading lookups.
    for hashes in &filter.identities {
        q.push(
            " AND p.lookup_id IN (SELECT lookup_id FROM lookup_identities WHERE identity = ANY(",
        )
        .push_bind(hashes.clone())
        .push("))");
    }
    if let Some(basis) = filter.match_basis {
        q.push(" AND p.lookup_id IN (SELECT id FROM lookups WHERE match_basis = ")
            .push_bind(basis.as_str())
            .push(")");
    }
    // Facet values through their postings, probed on the whole key.
    for (field, value) in filter.facet_filters() {
        push_posting(q, field, value, "p.created_at", "p.id");
    }
}
