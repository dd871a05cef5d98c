//! Profile reads: by id and the filtered, paginated list.

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::{FromRow, PgPool, Postgres, QueryBuilder};
use uuid::Uuid;

use super::{Cursor, Page, paginate};
use crate::subject::Subject;

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

/// Filters of the profile list; identifier values are normalised, facet
/// values are matched ignoring case.
#[derive(Debug, Default, Clone)]
pub struct ProfileFilter {
    pub email: Option<String>,
    pub phone: Option<String>,
    pub social_media_url: Option<String>,
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
        [
            &self.email,
            &self.phone,
            &self.social_media_url,
            &self.interest,
            &self.category,
            &self.brand,
            &self.archetype,
            &self.industry,
        ]
        .iter()
        .all(|v| v.is_none())
    }
}

impl ProfileFilter {
    /// `(field, value)` when the only filter is one facet filter, e.g.
    /// `("brand", "Nike")`.
    pub fn single_facet(&self) -> Option<(&'static str, &str)> {
        let identifiers = [&self.email, &self.phone, &self.social_media_url];
        if identifiers.iter().any(|v| v.is_some()) {
            return None;
        }
        let mut set = [
            ("interest", &self.interest),
            ("category", &self.category),
            ("brand", &self.brand),
            ("archetype", &self.archetype),
            ("industry", &self.industry),
        ]
        .into_iter()
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
    for (column, value) in [
        ("email", &filter.email),
        ("phone", &filter.phone),
        ("social_media_url", &filter.social_media_url),
    ] {
        if let Some(v) = value {
            q.push(format_args!(
                " AND p.lookup_id IN (SELECT id FROM lookups WHERE lower({column}) = lower("
            ))
            .push_bind(v.clone())
            .push("))");
        }
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
