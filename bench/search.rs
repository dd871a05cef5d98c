//! Measurement 2: profile search.
//!
//! The service stores each result as received and, beside it, lowercased
//! `*_facets` arrays behind GIN indexes, so that `GET /v1/profiles?interest=`
//! does not walk JSON at query time. Whether that design pays is measured
//! against what one would write without it: the same filter as a query that
//! walks the JSON of every candidate row (EXISTS over jsonb_each /
//! jsonb_array_elements with lower()), run directly with sqlx on the same
//! data. A second ratio, HTTP request against the same indexed query run
//! directly, shows what the HTTP layer adds to a search (auth, routing,
//! serialising 50 profiles).
//!
//! Queries run one at a time (latency, not throughput), the three kinds
//! interleaved query by query in rotating order.

use std::time::{Duration, Instant};

use anyhow::ensure;
use interests_receiver::store::profiles::{self, ProfileFilter, ProfileRecord};
use reqwest::{Client, StatusCode};
use serde_json::Value;
use sqlx::PgPool;
use url::Url;
use uuid::Uuid;

use crate::compare::{Spread, median_ms};
use crate::harness::{Server, Settings, TOKEN};
use crate::load::expect_status;
use crate::seed::{PROBE_BRAND, PROBE_INTEREST};

/// The list endpoint's default page size, used by all three kinds.
const PAGE: i64 = 50;
/// Columns of a profile list row, as `store::profiles` selects them.
const SELECT: &str = "SELECT p.id, p.lookup_id, p.request_id, p.result, p.completed_on, \
    p.received_via, p.created_at, l.email, l.phone, l.social_media_url, l.name, l.company \
    FROM profiles p JOIN lookups l ON l.id = p.lookup_id";
/// `?interest=` without facets: any string field of an
/// `interest_graph.*.interests[]` entry except `supporting_accounts`, tolerant
/// of the same unexpected shapes `Facets::extract` skips.
const NAIVE_INTEREST: &str = "EXISTS (SELECT 1 \
    FROM jsonb_each(CASE jsonb_typeof(p.result->'interest_graph') \
           WHEN 'object' THEN p.result->'interest_graph' ELSE '{}' END) AS c(category, body), \
         jsonb_array_elements(CASE jsonb_typeof(c.body->'interests') \
           WHEN 'array' THEN c.body->'interests' ELSE '[]' END) AS e(entry), \
         jsonb_each(CASE jsonb_typeof(e.entry) WHEN 'object' THEN e.entry ELSE '{}' END) AS f(key, value) \
    WHERE f.key <> 'supporting_accounts' AND jsonb_typeof(f.value) = 'string' \
      AND lower(f.value #>> '{}') = lower($1))";
/// `?brand=` without facets: any string of `brand_affinities[].brands[]`.
const NAIVE_BRAND: &str = "EXISTS (SELECT 1 \
    FROM jsonb_array_elements(CASE jsonb_typeof(p.result->'brand_affinities') \
           WHEN 'array' THEN p.result->'brand_affinities' ELSE '[]' END) AS a(affinity), \
         jsonb_array_elements(CASE jsonb_typeof(a.affinity->'brands') \
           WHEN 'array' THEN a.affinity->'brands' ELSE '[]' END) AS b(brand) \
    WHERE jsonb_typeof(b.brand) = 'string' AND lower(b.brand #>> '{}') = lower($1))";

/// A profile filter under test.
#[derive(Debug, Clone, Copy)]
pub enum Facet {
    Interest,
    Brand,
}

impl Facet {
    pub fn param(self) -> &'static str {
        match self {
            Facet::Interest => "interest",
            Facet::Brand => "brand",
        }
    }

    /// The probe value, in another case than stored (the filters ignore case).
    pub fn value(self) -> String {
        match self {
            Facet::Interest => PROBE_INTEREST.to_lowercase(),
            Facet::Brand => PROBE_BRAND.to_uppercase(),
        }
    }

    fn filter(self) -> ProfileFilter {
        let value = Some(self.value());
        match self {
            Facet::Interest => ProfileFilter {
                interest: value,
                ..ProfileFilter::default()
            },
            Facet::Brand => ProfileFilter {
                brand: value,
                ..ProfileFilter::default()
            },
        }
    }

    /// The query `store::profiles::list` builds for this filter, for
    /// EXPLAIN only (the measurement calls the store function itself).
    fn indexed_sql(self) -> String {
        let column = match self {
            Facet::Interest => "p.interest_facets",
            Facet::Brand => "p.brand_facets",
        };
        // Same shape as the store: the page is chosen on profiles, then
        // joined to lookups by primary key.
        format!(
            "SELECT p.id, p.result, l.email FROM (SELECT * FROM profiles p \
             WHERE {column} @> ARRAY[lower($1)]::text[] \
             ORDER BY p.created_at DESC, p.id DESC LIMIT $2) p \
             JOIN lookups l ON l.id = p.lookup_id ORDER BY p.created_at DESC, p.id DESC"
        )
    }

    fn naive_sql(self) -> String {
        let condition = match self {
            Facet::Interest => NAIVE_INTEREST,
            Facet::Brand => NAIVE_BRAND,
        };
        format!("{SELECT} WHERE {condition} ORDER BY p.created_at DESC, p.id DESC LIMIT $2")
    }
}

/// The three ways of running one search, each timed on its own.
#[derive(Debug, Clone, Copy)]
enum Kind {
    /// The JSON-walking query, direct.
    Naive,
    /// `store::profiles::list`, the service's facet query, direct.
    Indexed,
    /// `GET /v1/profiles` on the running service.
    Http,
}

const KINDS: [Kind; 3] = [Kind::Naive, Kind::Indexed, Kind::Http];

/// Median latency of each kind in one round.
#[derive(Debug, Clone, Copy)]
pub struct SearchRound {
    pub naive: Duration,
    pub indexed: Duration,
    pub http: Duration,
}

/// One filter's measurement.
#[derive(Debug, Clone)]
pub struct Search {
    pub facet: Facet,
    /// Scans in PostgreSQL's plan of each query, to show what was compared.
    pub naive_plan: String,
    pub indexed_plan: String,
    pub rounds: Vec<SearchRound>,
}

impl Search {
    /// Naive / indexed, per round: the speedup of the facet design.
    pub fn speedup(&self) -> Spread {
        Spread::of(self.rounds.iter().map(|r| ratio(r.naive, r.indexed)))
    }

    /// HTTP / indexed direct, per round: what the HTTP layer adds.
    pub fn http_overhead(&self) -> Spread {
        Spread::of(self.rounds.iter().map(|r| ratio(r.http, r.indexed)))
    }

    pub fn naive_ms(&self) -> f64 {
        median_ms(self.rounds.iter().map(|r| r.naive))
    }

    pub fn indexed_ms(&self) -> f64 {
        median_ms(self.rounds.iter().map(|r| r.indexed))
    }

    pub fn http_ms(&self) -> f64 {
        median_ms(self.rounds.iter().map(|r| r.http))
    }
}

fn ratio(a: Duration, b: Duration) -> f64 {
    a.as_secs_f64() / b.as_secs_f64()
}

/// What a search needs to run all three ways.
struct Searcher<'a> {
    db: &'a PgPool,
    client: &'a Client,
    url: String,
    facet: Facet,
}

impl Searcher<'_> {
    async fn naive(&self) -> anyhow::Result<Vec<Uuid>> {
        let rows: Vec<ProfileRecord> = sqlx::query_as(&self.facet.naive_sql())
            .bind(self.facet.value())
            .bind(PAGE + 1)
            .fetch_all(self.db)
            .await?;
        Ok(rows.iter().take(PAGE as usize).map(|p| p.id).collect())
    }

    async fn indexed(&self) -> anyhow::Result<Vec<Uuid>> {
        let page = profiles::list(self.db, &self.facet.filter(), None, PAGE).await?;
        Ok(page.items.iter().map(|p| p.id).collect())
    }

    async fn http(&self) -> anyhow::Result<String> {
        let url = Url::parse_with_params(&self.url, [(self.facet.param(), self.facet.value())])?;
        let response = self.client.get(url).bearer_auth(TOKEN).send().await?;
        expect_status(response, StatusCode::OK).await
    }

    /// The scan nodes of PostgreSQL's plan for `sql`, outermost first, such
    /// as "Bitmap Index Scan on profiles_interest".
    async fn plan(&self, sql: &str) -> anyhow::Result<String> {
        let (plan,): (Value,) = sqlx::query_as(&format!("EXPLAIN (FORMAT JSON) {sql}"))
            .bind(self.facet.value())
            .bind(PAGE + 1)
            .fetch_one(self.db)
            .await?;
        let mut scans = Vec::new();
        collect_scans(&plan[0]["Plan"], &mut scans);
        Ok(scans.join(", "))
    }

    async fn time(&self, kind: Kind) -> anyhow::Result<Duration> {
        let started = Instant::now();
        match kind {
            Kind::Naive => drop(self.naive().await?),
            Kind::Indexed => drop(self.indexed().await?),
            Kind::Http => drop(self.http().await?),
        }
        Ok(started.elapsed())
    }

    /// All three must return the same page, or the comparison is void.
    async fn check_agreement(&self) -> anyhow::Result<()> {
        let naive = self.naive().await?;
        let indexed = self.indexed().await?;
        let body: Value = serde_json::from_str(&self.http().await?)?;
        let http: Vec<Uuid> = body["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| p["id"].as_str()?.parse().ok())
            .collect();
        ensure!(
            !indexed.is_empty(),
            "{:?} probe matched nothing",
            self.facet
        );
        ensure!(
            naive == indexed,
            "naive and indexed {:?} disagree",
            self.facet
        );
        ensure!(http == indexed, "HTTP and direct {:?} disagree", self.facet);
        Ok(())
    }
}

pub async fn measure(
    server: &Server,
    db: &PgPool,
    client: &Client,
    settings: &Settings,
    facet: Facet,
) -> anyhow::Result<Search> {
    let searcher = Searcher {
        db,
        client,
        url: server.url("/v1/profiles"),
        facet,
    };
    searcher.check_agreement().await?;
    for kind in KINDS {
        searcher.time(kind).await?; // warm-up
    }
    let mut rounds = Vec::with_capacity(settings.search_rounds);
    for round in 0..settings.search_rounds {
        rounds.push(measure_round(&searcher, round, settings.queries_per_round).await?);
    }
    Ok(Search {
        facet,
        naive_plan: searcher.plan(&facet.naive_sql()).await?,
        indexed_plan: searcher.plan(&facet.indexed_sql()).await?,
        rounds,
    })
}

fn collect_scans(node: &Value, scans: &mut Vec<String>) {
    if let Some(kind) = node["Node Type"].as_str().filter(|k| k.contains("Scan")) {
        let target = node["Index Name"]
            .as_str()
            .or(node["Relation Name"].as_str())
            .or(node["Function Name"].as_str());
        scans.push(match target {
            Some(target) => format!("{kind} on {target}"),
            None => kind.to_owned(),
        });
    }
    for child in node["Plans"].as_array().into_iter().flatten() {
        collect_scans(child, scans);
    }
}

/// `queries` of each kind, the order rotating from one query to the next.
async fn measure_round(
    searcher: &Searcher<'_>,
    round: usize,
    queries: usize,
) -> anyhow::Result<SearchRound> {
    let mut times: [Vec<Duration>; 3] = Default::default();
    for query in 0..queries {
        for offset in 0..KINDS.len() {
            let slot = (round + query + offset) % KINDS.len();
            times[slot].push(searcher.time(KINDS[slot]).await?);
        }
    }
    let median = |slot: usize| Duration::from_secs_f64(median_ms(times[slot].clone()) / 1e3);
    Ok(SearchRound {
        naive: median(0),
        indexed: median(1),
        http: median(2),
    })
}
