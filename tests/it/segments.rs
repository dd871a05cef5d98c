//! Segments (issue 17): searches by any facet filter and their combinations
//! return exactly the matching profiles, newest first, across pages; facet
//! counts under 0 to 3 filters equal a brute-force count; and the search
//! postings follow every way a profile comes and goes (a delivery, a
//! refresh, erasure, retention).

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use chrono::{DateTime, Utc};
use interests_receiver::facets::Facets;
use serde_json::{Value, json};
use sqlx::PgPool;

use crate::common::{Settings, TOKEN, TestApp, spawn};
use crate::generate::generate;

const WAIT: Duration = Duration::from_secs(20);
const FIELDS: [&str; 5] = ["interest", "category", "brand", "archetype", "industry"];

/// One stored profile as the tests see it: id and lowercased facet values.
struct Stored {
    id: String,
    values: BTreeMap<&'static str, Vec<String>>,
}

impl Stored {
    fn of(profile: &Value) -> Stored {
        let f = Facets::extract(&profile["result"]);
        let values = FIELDS
            .into_iter()
            .zip([
                f.interests,
                f.categories,
                f.brands,
                f.archetypes,
                f.industries,
            ])
            .collect();
        Stored {
            id: profile["id"].as_str().unwrap().to_owned(),
            values,
        }
    }

    fn matches(&self, filters: &[(&str, String)]) -> bool {
        filters
            .iter()
            .all(|(field, value)| self.values[field].contains(&value.to_lowercase()))
    }
}

fn query(filters: &[(&str, String)]) -> String {
    let mut q = url::form_urlencoded::Serializer::new(String::new());
    for (field, value) in filters {
        q.append_pair(field, value);
    }
    q.finish()
}

/// Every profile of `GET /v1/profiles?{query}`, following the cursors with
/// pages of `limit`.
async fn search(app: &TestApp, query: &str, limit: u32) -> Vec<Value> {
    let mut found = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = format!("/v1/profiles?{query}&limit={limit}");
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let page = app.get_json(&path).await;
        found.extend(page["items"].as_array().unwrap().iter().cloned());
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return found,
        }
    }
}

async fn ids(app: &TestApp, query: &str) -> Vec<String> {
    search(app, query, 3)
        .await
        .iter()
        .map(|p| p["id"].as_str().unwrap().to_owned())
        .collect()
}

/// The generated profiles, newest first, and filters of 1, 2 and 3 facet
/// values across the frequency range (each spelled in capitals: matching
/// ignores case): the most and least common value of every field, values
/// that occur together in a profile, and combinations that match nothing.
async fn generated(db: PgPool) -> (TestApp, Vec<Stored>, Vec<Vec<(&'static str, String)>>) {
    let out = generate(&db, &["--profiles", "60"]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let app = spawn(db, Settings::sandbox()).await;
    let all = search(&app, "", 500).await;
    let at = |p: &Value| {
        p["created_at"]
            .as_str()
            .unwrap()
            .parse::<DateTime<Utc>>()
            .unwrap()
    };
    assert!(
        all.windows(2).all(|w| at(&w[0]) >= at(&w[1])),
        "newest first"
    );
    let stored: Vec<Stored> = all.iter().map(Stored::of).collect();
    assert_eq!(stored.len(), 60);

    let mut filters: Vec<Vec<(&str, String)>> = Vec::new();
    for field in FIELDS {
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        for s in &stored {
            for v in &s.values[field] {
                *counts.entry(v).or_default() += 1;
            }
        }
        let common = counts.iter().max_by_key(|(_, n)| **n).unwrap().0;
        let rare = counts.iter().min_by_key(|(_, n)| **n).unwrap().0;
        filters.push(vec![(field, common.to_uppercase())]);
        filters.push(vec![(field, rare.to_uppercase())]);
    }
    let one = |s: &Stored, field: &'static str| (field, s.values[field][0].to_uppercase());
    for s in stored.iter().step_by(7) {
        filters.push(vec![one(s, "category"), one(s, "brand")]);
        filters.push(vec![one(s, "interest"), one(s, "industry")]);
        filters.push(vec![
            one(s, "brand"),
            one(s, "archetype"),
            one(s, "category"),
        ]);
        filters.push(vec![
            one(s, "interest"),
            one(s, "industry"),
            one(s, "brand"),
        ]);
    }
    // Values of different profiles: often nothing carries both.
    filters.push(vec![one(&stored[0], "interest"), one(&stored[1], "brand")]);
    filters.push(vec![
        one(&stored[2], "brand"),
        one(&stored[3], "interest"),
        one(&stored[4], "archetype"),
    ]);
    filters.push(vec![("brand", "No Such Brand".into())]);
    (app, stored, filters)
}

/// The same app without the facet index (`FACET_INDEX=false`): the
/// database's own plans answer what the index answered.
async fn without_the_index(app: TestApp) -> TestApp {
    let db = app.db.clone();
    app.stop().await;
    let mut settings = Settings::sandbox();
    settings.facet_index = false;
    spawn(db, settings).await
}

/// Every search of `filters` pages exactly the profiles of `stored` that
/// match, newest first; returns the sizes of the answers.
async fn searches_equal_a_brute_force_match(
    app: &TestApp,
    stored: &[Stored],
    filters: &[Vec<(&str, String)>],
) -> HashSet<usize> {
    let mut sizes = HashSet::new();
    for filter in filters {
        let expected: Vec<&str> = stored
            .iter()
            .filter(|s| s.matches(filter))
            .map(|s| s.id.as_str())
            .collect();
        sizes.insert(expected.len());
        assert_eq!(ids(app, &query(filter)).await, expected, "{filter:?}");
    }
    sizes
}

#[sqlx::test]
async fn every_facet_filter_and_combination_pages_exactly_the_matching_profiles_newest_first(
    db: PgPool,
) {
    let (app, stored, filters) = generated(db).await;
    let sizes = searches_equal_a_brute_force_match(&app, &stored, &filters).await;
    // The filters span empty, single-page and multi-page answers.
    assert!(
        sizes.contains(&0) && sizes.iter().any(|n| *n > 6),
        "{sizes:?}"
    );
    let app = without_the_index(app).await;
    searches_equal_a_brute_force_match(&app, &stored, &filters).await;
    app.stop().await;
}

/// `GET /v1/facets` of every field under every filter against a count of
/// `stored`.
async fn facets_equal_a_brute_force_count(
    app: &TestApp,
    stored: &[Stored],
    filters: &[Vec<(&str, String)>],
) {
    for filter in filters {
        for field in FIELDS {
            let mut expected: BTreeMap<String, i64> = BTreeMap::new();
            for s in stored.iter().filter(|s| s.matches(filter)) {
                for v in &s.values[field] {
                    *expected.entry(v.clone()).or_default() += 1;
                }
            }
            let q = format!("/v1/facets?field={field}&limit=1000&{}", query(filter));
            let answer = app.get_json(&q).await;
            let values = answer["values"].as_array().unwrap();
            let counts: Vec<i64> = values
                .iter()
                .map(|v| v["count"].as_i64().unwrap())
                .collect();
            assert!(
                counts.windows(2).all(|w| w[0] >= w[1]),
                "{q}: most common first"
            );
            let got: BTreeMap<String, i64> = values
                .iter()
                .map(|v| {
                    (
                        v["value"].as_str().unwrap().to_lowercase(),
                        v["count"].as_i64().unwrap(),
                    )
                })
                .collect();
            assert_eq!(got, expected, "{q}");
        }
    }
}

#[sqlx::test]
async fn facet_counts_under_zero_to_three_filters_equal_a_brute_force_count(db: PgPool) {
    let (app, stored, mut filters) = generated(db).await;
    filters.insert(0, Vec::new());
    facets_equal_a_brute_force_count(&app, &stored, &filters).await;
    let app = without_the_index(app).await;
    facets_equal_a_brute_force_count(&app, &stored, &filters).await;
    app.stop().await;
}

/// Looks `body` up in the sandbox and waits for the completed lookup.
async fn completed(app: &TestApp, body: Value) -> Value {
    let id = app.create(&body).await;
    app.wait_for_status(&id, "completed", WAIT).await
}

/// A `(field, value)` of `a`'s profile that `b`'s does not carry.
fn only_in(a: &Value, b: &Value) -> (&'static str, String) {
    let (a, b) = (Stored::of(&a["profile"]), Stored::of(&b["profile"]));
    FIELDS
        .into_iter()
        .find_map(|f| {
            let v = a.values[f].iter().find(|v| !b.values[f].contains(v))?;
            Some((f, v.clone()))
        })
        .expect("the sandbox's changing person changed a facet value")
}

#[sqlx::test]
async fn a_refreshed_profile_is_found_by_its_new_values_only_and_erasure_removes_both(db: PgPool) {
    let app = spawn(db, Settings::sandbox()).await;
    let email = "ann+sandbox-changing@example.com";
    let first = completed(&app, json!({"email": email})).await;
    let second = completed(&app, json!({"email": email, "refresh": true})).await;
    let (v1, v2) = (&first["profile"]["id"], &second["profile"]["id"]);
    let old = only_in(&first, &second);
    let new = only_in(&second, &first);

    // Each version is found by its own values: the new profile does not
    // carry what the person no longer has, the old one keeps its own.
    assert_eq!(
        ids(&app, &query(std::slice::from_ref(&old))).await,
        [v1.as_str().unwrap()]
    );
    assert_eq!(
        ids(&app, &query(std::slice::from_ref(&new))).await,
        [v2.as_str().unwrap()]
    );

    let erased = app
        .http
        .delete(app.url("/v1/subjects?email=ann%2Bsandbox-changing@example.com"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(erased.status(), 200);
    for (field, value) in [old, new] {
        assert!(
            ids(&app, &query(&[(field, value.clone())]))
                .await
                .is_empty()
        );
        let facets = app
            .get_json(&format!("/v1/facets?field={field}&limit=1000"))
            .await;
        assert_eq!(facets["values"], json!([]), "{facets}");
    }
    assert_eq!(app.count("SELECT count(*) FROM profile_facets").await, 0);
    app.stop().await;
}

#[sqlx::test]
async fn profiles_purged_by_retention_leave_search_and_facets(db: PgPool) {
    let app = spawn(db.clone(), Settings::sandbox()).await;
    let old = completed(&app, json!({"email": "old@example.com"})).await;
    let kept = completed(&app, json!({"email": "kept@example.com"})).await;
    app.stop().await;
    sqlx::query("UPDATE lookups SET completed_at = now() - interval '40 days' WHERE id = $1::uuid")
        .bind(old["id"].as_str().unwrap())
        .execute(&db)
        .await
        .unwrap();

    let mut settings = Settings::sandbox();
    settings.retention_profile = Some(Duration::from_secs(30 * 86_400));
    let app = spawn(db, settings).await;
    let old_id = old["id"].as_str().unwrap();
    let deadline = tokio::time::Instant::now() + WAIT;
    while app.get(&format!("/v1/lookups/{old_id}")).await.status() != 404 {
        assert!(tokio::time::Instant::now() < deadline, "not purged");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let kept = Stored::of(&kept["profile"]);
    let left: HashSet<String> = search(&app, "", 500)
        .await
        .iter()
        .map(|p| p["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(left, HashSet::from([kept.id.clone()]));
    let brand = kept.values["brand"][0].clone();
    assert_eq!(
        ids(&app, &query(&[("brand", brand)])).await,
        std::slice::from_ref(&kept.id)
    );
    // Nothing of the purged profile is left to find or count.
    let postings = app
        .count(&format!(
            "SELECT count(*) FROM profile_facets WHERE profile_id <> '{}'",
            kept.id
        ))
        .await;
    assert_eq!(postings, 0);
    let facets = app.get_json("/v1/facets?field=brand&limit=1000").await;
    let total: i64 = facets["values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["count"].as_i64().unwrap())
        .sum();
    assert_eq!(total as usize, kept.values["brand"].len(), "{facets}");
    app.stop().await;
}
