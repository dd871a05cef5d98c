//! Data written straight into the database, so that each measurement starts
//! from the state it needs without paying for (or timing) the path that
//! normally produces it.

use chrono::{DateTime, Duration as Age, Utc};
use interests_receiver::facets::Facets;
use interests_receiver::subject::Subject;
use interests_receiver::token::random_token;
use rand::rngs::StdRng;
use rand::seq::index::sample;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use sqlx::{PgPool, Postgres, QueryBuilder};
use uuid::Uuid;

/// Interest label given to exactly 1 % of the seeded profiles, and to no
/// other: the selective filter a search is typically made with.
pub const PROBE_INTEREST: &str = "Mountain Unicycling";
/// Brand given to exactly 1 % of the seeded profiles.
pub const PROBE_BRAND: &str = "Patagonia";
/// Rows per INSERT while seeding profiles (11 binds a row, well under the
/// 65,535 bind limit).
const CHUNK: usize = 500;

/// A lookup waiting for its result, as after a successful submit.
#[derive(Debug, Clone)]
pub struct QueuedLookup {
    pub id: Uuid,
    pub callback_token: String,
    pub request_id: String,
}

/// Inserts `n` lookups in status `queued`, each with an upstream request_id
/// and a callback token, as the submitter leaves them.
pub async fn queued_lookups(db: &PgPool, n: usize, tag: &str) -> anyhow::Result<Vec<QueuedLookup>> {
    let lookups: Vec<QueuedLookup> = (0..n)
        .map(|_| QueuedLookup {
            id: Uuid::now_v7(),
            callback_token: random_token(),
            request_id: request_id(),
        })
        .collect();
    let emails: Vec<String> = (0..n).map(|i| format!("{tag}-{i}@bench.example")).collect();
    sqlx::query(
        "INSERT INTO lookups (id, status, email, subject_key, callback_token, request_id, \
           submitted_at, submit_attempts) \
         SELECT id, 'queued', email, subject_key, token, request_id, now(), 1 \
         FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[]) \
           AS t(id, email, subject_key, token, request_id)",
    )
    .bind(lookups.iter().map(|l| l.id).collect::<Vec<_>>())
    .bind(&emails)
    .bind(emails.iter().map(|e| subject_key(e)).collect::<Vec<_>>())
    .bind(
        lookups
            .iter()
            .map(|l| l.callback_token.clone())
            .collect::<Vec<_>>(),
    )
    .bind(
        lookups
            .iter()
            .map(|l| l.request_id.clone())
            .collect::<Vec<_>>(),
    )
    .execute(db)
    .await?;
    Ok(lookups)
}

/// How many seeded profiles each probe matches.
#[derive(Debug, Clone, Copy, Default)]
pub struct Seeded {
    pub profiles: usize,
    pub interest_matches: usize,
    pub brand_matches: usize,
}

/// Inserts `n` completed lookups with varied synthetic profiles, their
/// `*_facets` columns filled by the service's own `Facets::extract`, as
/// `results::apply` fills them. Creation times spread over 90 days.
pub async fn profiles(db: &PgPool, n: usize) -> anyhow::Result<Seeded> {
    let mut rng = StdRng::seed_from_u64(20_261_126);
    let now = Utc::now();
    let mut seeded = Seeded::default();
    for start in (0..n).step_by(CHUNK) {
        let rows: Vec<SeedRow> = (start..n.min(start + CHUNK))
            .map(|i| {
                SeedRow::new(
                    &mut rng,
                    i,
                    now - Age::seconds((i as i64) * 7_776_000 / n as i64),
                )
            })
            .collect();
        for row in &rows {
            seeded.profiles += 1;
            seeded.interest_matches += usize::from(
                row.facets
                    .interests
                    .contains(&PROBE_INTEREST.to_lowercase()),
            );
            seeded.brand_matches +=
                usize::from(row.facets.brands.contains(&PROBE_BRAND.to_lowercase()));
        }
        insert_chunk(db, &rows).await?;
    }
    // As autovacuum would have long done in production: planner statistics,
    // and the GIN pending lists merged into the indexes.
    for table in ["lookups", "profiles"] {
        sqlx::query(&format!("VACUUM ANALYZE {table}"))
            .execute(db)
            .await?;
    }
    Ok(seeded)
}

/// One completed lookup and its profile.
struct SeedRow {
    lookup_id: Uuid,
    email: String,
    request_id: String,
    created_at: DateTime<Utc>,
    result: Value,
    facets: Facets,
}

impl SeedRow {
    fn new(rng: &mut StdRng, i: usize, created_at: DateTime<Utc>) -> SeedRow {
        let result = synthetic_result(rng, i);
        SeedRow {
            lookup_id: Uuid::new_v4(),
            email: format!("person-{i}@bench.example"),
            request_id: request_id(),
            created_at,
            facets: Facets::extract(&result),
            result,
        }
    }
}

async fn insert_chunk(db: &PgPool, rows: &[SeedRow]) -> anyhow::Result<()> {
    let mut tx = db.begin().await?;
    sqlx::query(
        "INSERT INTO lookups (id, status, email, subject_key, callback_token, request_id, \
           created_at, submitted_at, completed_at, credits_charged, submit_attempts) \
         SELECT id, 'completed', email, subject_key, token, request_id, at, at, at, 5, 1 \
         FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::timestamptz[]) \
           AS t(id, email, subject_key, token, request_id, at)",
    )
    .bind(rows.iter().map(|r| r.lookup_id).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.email.clone()).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| subject_key(&r.email)).collect::<Vec<_>>())
    .bind(rows.iter().map(|_| random_token()).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.request_id.clone()).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.created_at).collect::<Vec<_>>())
    .execute(&mut *tx)
    .await?;
    let mut insert: QueryBuilder<Postgres> = QueryBuilder::new(
        "INSERT INTO profiles (id, lookup_id, request_id, result, completed_on, received_via, \
           created_at, interest_facets, category_facets, brand_facets, archetype_facets, \
           industry_facets) ",
    );
    insert.push_values(rows, |mut b, r| {
        b.push_bind(Uuid::new_v4())
            .push_bind(r.lookup_id)
            .push_bind(&r.request_id)
            .push_bind(&r.result)
            .push_bind(r.created_at)
            .push("'callback'")
            .push_bind(r.created_at)
            .push_bind(&r.facets.interests)
            .push_bind(&r.facets.categories)
            .push_bind(&r.facets.brands)
            .push_bind(&r.facets.archetypes)
            .push_bind(&r.facets.industries);
    });
    insert.build().execute(&mut *tx).await?;
    tx.commit().await?;
    Ok(())
}

/// The key the service derives for a person known by this email alone.
fn subject_key(email: &str) -> String {
    Subject {
        email: Some(email.to_owned()),
        ..Subject::default()
    }
    .key()
}

/// An upstream-shaped request_id (`<32 hex>_<epoch>_<4 digits>`).
fn request_id() -> String {
    let id = Uuid::new_v4();
    format!("{}_1717000000_{:04}", id.simple(), id.as_u128() % 10_000)
}

// Vocabulary of the synthetic profiles. Interest labels are ADJECTIVE NOUN
// pairs (400 of them), brands PREFIX+SUFFIX (150); none equals a probe.
const CATEGORIES: [(&str, &str); 12] = [
    ("technology", "topic"),
    ("sports_and_fitness", "activity"),
    ("music", "genre"),
    ("food_and_drink", "cuisine"),
    ("travel", "destination"),
    ("arts_and_culture", "topic"),
    ("gaming", "title"),
    ("finance", "topic"),
    ("fashion", "style"),
    ("outdoors", "activity"),
    ("science", "field"),
    ("parenting", "topic"),
];
const ADJECTIVES: [&str; 20] = [
    "Urban",
    "Vintage",
    "Modern",
    "Indie",
    "Classic",
    "Digital",
    "Competitive",
    "Casual",
    "Global",
    "Local",
    "Sustainable",
    "Open",
    "Retro",
    "Extreme",
    "Mindful",
    "Creative",
    "Amateur",
    "Pro",
    "Nordic",
    "Tropical",
];
const NOUNS: [&str; 20] = [
    "Photography",
    "Cycling",
    "Cooking",
    "Jazz",
    "Gardening",
    "Running",
    "Design",
    "Investing",
    "Chess",
    "Climbing",
    "Baking",
    "Robotics",
    "Poetry",
    "Sailing",
    "Yoga",
    "Film",
    "Astronomy",
    "Woodworking",
    "Skiing",
    "Podcasts",
];
const BRAND_PREFIXES: [&str; 15] = [
    "Nova", "Terra", "Blue", "Iron", "Luma", "Pixel", "North", "Echo", "Vivid", "Apex", "Zen",
    "Cobalt", "Solar", "Swift", "Maple",
];
const BRAND_SUFFIXES: [&str; 10] = [
    "tek",
    "works",
    "labs",
    " Cloud",
    " Outfitters",
    "ly",
    "io",
    " Foods",
    " Motors",
    " Studio",
];
const BRAND_CATEGORIES: [&str; 6] = [
    "Cloud Platforms",
    "Outdoor Gear",
    "Streaming",
    "Fintech",
    "Coffee",
    "Automotive",
];
const ARCHETYPES: [&str; 15] = [
    "Tech Leader",
    "Thought Leader",
    "Early Adopter",
    "Creator",
    "Explorer",
    "Connector",
    "Builder",
    "Analyst",
    "Maker",
    "Mentor",
    "Advocate",
    "Curator",
    "Strategist",
    "Athlete",
    "Foodie",
];
const INDUSTRIES: [&str; 15] = [
    "SaaS",
    "Developer Tools",
    "Fintech",
    "Healthcare",
    "Retail",
    "Media",
    "Education",
    "Logistics",
    "Gaming",
    "Energy",
    "Real Estate",
    "Biotech",
    "Hospitality",
    "Manufacturing",
    "Consulting",
];

/// A result shaped like upstream's documented example, with 2-5 interest
/// categories of 1-3 interests, 1-3 brand groups of 2-4 brands, 1-3
/// archetypes and industries. Profile `i` carries the probe interest when
/// `i % 100 == 37` and the probe brand when `i % 100 == 71`.
fn synthetic_result(rng: &mut StdRng, i: usize) -> Value {
    let mut graph = serde_json::Map::new();
    let categories = pick(rng, &CATEGORIES, 2..=5);
    for (n, (category, label_key)) in categories.iter().enumerate() {
        let mut interests: Vec<Value> = (0..rng.random_range(1..=3))
            .map(|_| interest(label_key, &label(rng), rng))
            .collect();
        if n == 0 && i % 100 == 37 {
            interests.push(interest(label_key, PROBE_INTEREST, rng));
        }
        graph.insert((*category).to_owned(), json!({ "interests": interests }));
    }
    let mut affinities: Vec<Value> = (0..rng.random_range(1..=3))
        .map(|_| {
            let brands: Vec<String> = (0..rng.random_range(2..=4)).map(|_| brand(rng)).collect();
            json!({ "category": pick(rng, &BRAND_CATEGORIES, 1..=1)[0], "brands": brands })
        })
        .collect();
    if i % 100 == 71 {
        affinities.push(json!({ "category": "Outdoor Gear", "brands": [PROBE_BRAND] }));
    }
    json!({
        "core_profile": {
            "archetypes": pick(rng, &ARCHETYPES, 1..=3),
            "supporting_accounts": accounts(rng),
        },
        "interest_graph": graph,
        "brand_affinities": affinities,
        "professional_ecosystem": {
            "industry_focus": pick(rng, &INDUSTRIES, 1..=3),
            "supporting_accounts": accounts(rng),
        },
        "following_count": rng.random_range(10..20_000),
    })
}

/// Between `range` distinct items of `items`.
fn pick<T: Copy>(rng: &mut StdRng, items: &[T], range: std::ops::RangeInclusive<usize>) -> Vec<T> {
    let amount = rng.random_range(range);
    sample(rng, items.len(), amount)
        .into_iter()
        .map(|k| items[k])
        .collect()
}

fn interest(label_key: &str, label: &str, rng: &mut StdRng) -> Value {
    json!({ label_key: label, "supporting_accounts": accounts(rng) })
}

fn label(rng: &mut StdRng) -> String {
    let adjective = ADJECTIVES[rng.random_range(0..ADJECTIVES.len())];
    let noun = NOUNS[rng.random_range(0..NOUNS.len())];
    format!("{adjective} {noun}")
}

fn brand(rng: &mut StdRng) -> String {
    let prefix = BRAND_PREFIXES[rng.random_range(0..BRAND_PREFIXES.len())];
    let suffix = BRAND_SUFFIXES[rng.random_range(0..BRAND_SUFFIXES.len())];
    format!("{prefix}{suffix}")
}

fn accounts(rng: &mut StdRng) -> Vec<String> {
    (0..rng.random_range(1..=3))
        .map(|_| format!("@account{}", rng.random_range(0..5_000)))
        .collect()
}
