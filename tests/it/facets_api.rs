//! `GET /v1/facets` (contract section 5): the most common values of a field
//! among the profiles matching any profile filter, case folded, shown in the
//! most common spelling; and keyset paging of profile searches that stays
//! stable while new profiles arrive.

use std::collections::HashSet;

use crate::common::{
    Settings, TOKEN, TestApp, accepting_upstream, complete_by_callback, completed_with,
    error_fields, problem, spawn, submitted_lookup,
};
use serde_json::{Value, json};
use sqlx::PgPool;
use wiremock::MockServer;

fn result(brands: &[&str], industry: &str, archetype: &str, interest: &str) -> Value {
    json!({
        "core_profile": {"archetypes": [archetype], "supporting_accounts": ["@a"]},
        "interest_graph": {
            "sports_and_fitness": {"interests": [
                {"activity": interest, "supporting_accounts": ["@b"]}
            ]}
        },
        "brand_affinities": [{"category": "Apparel", "brands": brands}],
        "professional_ecosystem": {"industry_focus": [industry], "supporting_accounts": []}
    })
}

async fn app_with_upstream(db: PgPool) -> (MockServer, TestApp) {
    let server = accepting_upstream().await;
    let app = spawn(
        db,
        Settings::with_upstream_url(server.uri().parse().unwrap()),
    )
    .await;
    (server, app)
}

/// Looks `email` up and completes it by callback with `result`; returns the
/// profile id.
async fn profile(app: &TestApp, server: &MockServer, email: &str, result: Value) -> String {
    let (id, rid, callback) = submitted_lookup(app, server, json!({"email": email})).await;
    let lookup = complete_by_callback(app, &id, &callback, &completed_with(&rid, result)).await;
    lookup["profile"]["id"].as_str().unwrap().to_owned()
}

/// `(value, count)` pairs of `GET /v1/facets?{query}`.
async fn facets(app: &TestApp, query: &str) -> Vec<(String, i64)> {
    let answer = app.get_json(&format!("/v1/facets?{query}")).await;
    answer["values"]
        .as_array()
        .unwrap_or_else(|| panic!("{query}: {answer}"))
        .iter()
        .map(|v| {
            (
                v["value"].as_str().unwrap().to_owned(),
                v["count"].as_i64().unwrap(),
            )
        })
        .collect()
}

fn pairs(expected: &[(&str, i64)]) -> Vec<(String, i64)> {
    expected.iter().map(|(v, n)| (v.to_string(), *n)).collect()
}

/// Four profiles: Nike in all four, spelled three ways (Nike twice).
async fn four_profiles(db: PgPool) -> (MockServer, TestApp) {
    let (server, app) = app_with_upstream(db).await;
    let r = [
        (
            "a@example.com",
            result(&["Nike", "Adidas"], "SaaS", "Runner", "Running"),
        ),
        ("b@example.com", result(&["nike"], "saas", "Runner", "Yoga")),
        (
            "c@example.com",
            result(&["NIKE", "Puma"], "Retail", "Maker", "running"),
        ),
        (
            "d@example.com",
            result(&["Nike"], "Retail", "Runner", "Running"),
        ),
    ];
    for (email, result) in r {
        profile(&app, &server, email, result).await;
    }
    (server, app)
}

#[sqlx::test]
async fn facets_count_case_folded_values_in_their_most_common_spelling(db: PgPool) {
    let (_server, app) = four_profiles(db).await;

    assert_eq!(
        facets(&app, "field=brand").await,
        pairs(&[("Nike", 4), ("Adidas", 1), ("Puma", 1)])
    );
    assert_eq!(
        facets(&app, "field=industry").await,
        pairs(&[("Retail", 2), ("SaaS", 2)])
    );
    assert_eq!(
        facets(&app, "field=interest").await,
        pairs(&[("Running", 3), ("Yoga", 1)])
    );
    assert_eq!(
        facets(&app, "field=category").await,
        pairs(&[("sports_and_fitness", 4)])
    );
    assert_eq!(
        facets(&app, "field=archetype&limit=1").await,
        pairs(&[("Runner", 3)])
    );
    let answer = app.get_json("/v1/facets?field=brand&limit=2").await;
    assert_eq!(answer["field"], "brand");
    assert_eq!(answer["values"].as_array().unwrap().len(), 2);
    app.stop().await;
}

#[sqlx::test]
async fn facets_count_only_the_profiles_matching_the_filters(db: PgPool) {
    let (_server, app) = four_profiles(db).await;

    assert_eq!(
        facets(&app, "field=brand&industry=SAAS").await,
        pairs(&[("Nike", 2), ("Adidas", 1)])
    );
    assert_eq!(
        facets(&app, "field=brand&industry=retail&archetype=maker").await,
        pairs(&[("Nike", 1), ("Puma", 1)])
    );
    assert_eq!(
        facets(&app, "field=industry&brand=nike&interest=RUNNING").await,
        pairs(&[("Retail", 2), ("SaaS", 1)])
    );
    assert_eq!(
        facets(&app, "field=archetype&email=B@example.com").await,
        pairs(&[("Runner", 1)])
    );
    assert_eq!(
        facets(&app, "field=brand&category=sports_and_fitness&limit=1").await,
        pairs(&[("Nike", 4)])
    );
    assert!(facets(&app, "field=brand&brand=reebok").await.is_empty());
    // One facet filter is answered from kept counts, several by counting the
    // matching profiles: both say the same (every profile has this category).
    for field in ["brand", "interest", "archetype", "industry", "category"] {
        assert_eq!(
            facets(&app, &format!("field={field}&brand=Nike")).await,
            facets(
                &app,
                &format!("field={field}&brand=Nike&category=sports_and_fitness")
            )
            .await,
            "{field}"
        );
    }
    app.stop().await;
}

#[sqlx::test]
async fn erased_profiles_leave_the_counts(db: PgPool) {
    let (_server, app) = four_profiles(db).await;

    let erased = app
        .http
        .delete(app.url("/v1/subjects?email=c@example.com"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(erased.status(), 200);

    assert_eq!(
        facets(&app, "field=brand").await,
        pairs(&[("Nike", 3), ("Adidas", 1)])
    );
    assert_eq!(
        facets(&app, "field=archetype").await,
        pairs(&[("Runner", 3)])
    );
    assert_eq!(
        facets(&app, "field=brand&industry=retail").await,
        pairs(&[("Nike", 1)])
    );
    assert!(facets(&app, "field=industry&brand=puma").await.is_empty());
    app.stop().await;
}

#[sqlx::test]
async fn bad_facet_requests_are_422_naming_the_parameter(db: PgPool) {
    let (_server, app) = app_with_upstream(db).await;
    for (query, field) in [
        ("", "field"),
        ("field=colour", "field"),
        ("field=brand&limit=0", "limit"),
        ("field=brand&limit=1001", "limit"),
        ("field=brand&limit=many", "limit"),
        ("field=brand&email=not-an-email", "email"),
    ] {
        let response = app.get(&format!("/v1/facets?{query}")).await;
        let refused = problem(response, 422).await;
        assert_eq!(error_fields(&refused), [field], "{query}: {refused}");
    }
    let anonymous = app
        .http
        .get(app.url("/v1/facets?field=brand"))
        .send()
        .await
        .unwrap();
    problem(anonymous, 401).await;
    assert!(facets(&app, "field=brand&limit=1000").await.is_empty());
    app.stop().await;
}

/// Every profile id of a filtered search, page by page (limit 2), calling
/// `between` after each page.
async fn page_through<F, Fut>(app: &TestApp, query: &str, mut between: F) -> Vec<String>
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    for page_number in 0.. {
        let url = match &cursor {
            Some(c) => format!("/v1/profiles?{query}&limit=2&cursor={c}"),
            None => format!("/v1/profiles?{query}&limit=2"),
        };
        let page = app.get_json(&url).await;
        seen.extend(
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p["id"].as_str().unwrap().to_owned()),
        );
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
        between(page_number).await;
    }
    seen
}

#[sqlx::test]
async fn paging_a_filtered_search_neither_repeats_nor_skips_while_profiles_arrive(db: PgPool) {
    let (server, app) = app_with_upstream(db).await;
    let mut originals = HashSet::new();
    for n in 0..5 {
        let r = result(&["Nike"], "SaaS", "Runner", "Running");
        originals.insert(profile(&app, &server, &format!("p{n}@example.com"), r).await);
    }
    profile(
        &app,
        &server,
        "other@example.com",
        result(&["Puma"], "SaaS", "Maker", "Yoga"),
    )
    .await;

    let mut added = 0;
    let seen = page_through(&app, "brand=NIKE", |page| {
        let (app, server) = (&app, &server);
        added += 1;
        let n = added;
        async move {
            // New matching profiles arrive between every two pages.
            let r = result(&["nike"], "Retail", "Runner", "Running");
            profile(app, server, &format!("new{page}-{n}@example.com"), r).await;
        }
    })
    .await;

    let unique: HashSet<_> = seen.iter().cloned().collect();
    assert_eq!(unique.len(), seen.len(), "a profile came twice: {seen:?}");
    assert!(
        originals.is_subset(&unique),
        "a profile present from the start was skipped: {originals:?} vs {seen:?}"
    );
    assert!(added >= 2, "the search had several pages");
    // The newcomers are counted by the facets at once.
    assert_eq!(
        facets(&app, "field=brand&limit=1").await,
        pairs(&[("Nike", 5 + added as i64)])
    );
    app.stop().await;
}

#[sqlx::test]
async fn facet_answers_match_the_openapi_document(db: PgPool) {
    use utoipa::OpenApi;
    let doc = serde_json::to_value(interests_receiver::http::openapi::ApiDoc::openapi()).unwrap();
    let (_server, app) = four_profiles(db).await;
    for query in ["field=brand", "field=brand&industry=saas", "field=colour"] {
        let response = app.get(&format!("/v1/facets?{query}")).await;
        crate::operations::conforms(&doc, "get", "/v1/facets", response).await;
    }
    app.stop().await;
}
