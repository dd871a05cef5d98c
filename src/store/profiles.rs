//! Profile reads: by id and the filtered, paginated list.

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::{FromRow, PgPool, Postgres, QueryBuilder};
use uuid::Uuid;

use super::{Cursor, Page, paginate};
use crate::subject::{MatchBasis, Subject};

#[derive(Debug, Clone, FromRow)]
pub struct ProfileRecord {
    pub id: Uuid,
    pub lookup_id: Uuid,
    pub request_id: String,
    pub result: Value,
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

pub async fn list(
    db: &PgPool,
    filter: &ProfileFilter,
    after: Option<Cursor>,
    limit: i64,
) -> sqlx::Result<Page<ProfileRecord>> {
    // The page is chosen on `profiles` alone (GIN facets, then the keyset
    // order) and only its rows are joined to `lookups` by primary key, so
    // the cost follows the page size, not the size of `lookups`.
    let mut q: QueryBuilder<Postgres> = QueryBuilder::new(
        "SELECT p.id, p.lookup_id, p.request_id, p.result, p.completed_on, \
         p.received_via, p.created_at, l.synthetic, l.email, l.phone, l.social_media_url, l.name, \
         l.company FROM (SELECT * FROM profiles p WHERE true",
    );
    push_filters(&mut q, filter);
    if let Some(c) = after {
        q.push(" AND (p.created_at, p.id) < (")
            .push_bind(c.created_at)
            .push(", ")
            .push_bind(c.id)
            .push(")");
    }
    q.push(" ORDER BY p.created_at DESC, p.id DESC LIMIT ")
        .push_bind(limit + 1)
        .push(") p JOIN lookups l ON l.id = p.lookup_id ORDER BY p.created_at DESC, p.id DESC");
    let rows = q.build_query_as().fetch_all(db).await?;
    Ok(paginate(rows, limit, ProfileRecord::cursor))
}

impl ProfileFilter {
    pub fn is_empty(&self) -> bool {
        self.identities.is_empty()
            && self.match_basis.is_none()
            && self.facets().all(|(_, v)| v.is_none())
    }

    fn facets(&self) -> impl Iterator<Item = (&'static str, &Option<String>)> {
        [
            ("interest", &self.interest),
            ("category", &self.category),
            ("brand", &self.brand),
            ("archetype", &self.archetype),
            ("industry", &self.industry),
        ]
        .into_iter()
    }

    /// `(field, value)` when the only filter is one facet filter, e.g.
    /// `("brand", "Nike")`.
    pub fn single_facet(&self) -> Option<(&'static str, &str)> {
        if !self.identities.is_empty() || self.match_basis.is_some() {
            return None;
        }
        let mut set = self
            .facets()
            .filter_map(|(field, v)| v.as_deref().map(|v| (field, v)));
        match (set.next(), set.next()) {
            (Some(one), None) => Some(one),
            _ => None,
        }
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
    // Facet columns hold lowercased values behind GIN indexes.
    for (column, value) in [
        ("p.interest_facets", &filter.interest),
        ("p.category_facets", &filter.category),
        ("p.brand_facets", &filter.brand),
        ("p.archetype_facets", &filter.archetype),
        ("p.industry_facets", &filter.industry),
    ] {
        if let Some(v) = value {
            q.push(format_args!(" AND {column} @> ARRAY["))
                .push_bind(v.to_lowercase())
                .push("]::text[]");
        }
    }
}
