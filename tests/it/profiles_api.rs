//! `/v1/profiles` over HTTP (contract section 5): profiles stored verbatim
//! as delivered by callback, read by id, and searched with filters that
//! combine with AND and ignore case.

use crate::common::{
    Settings, TestApp, accepting_upstream, complete_by_callback, completed_for, completed_with,
    error_fields, problem, spawn, submitted_lookup,
};
use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use sqlx::PgPool;
use uuid::Uuid;
use wiremock::MockServer;

/// A result unlike the fixture's in every searchable facet, with an unknown
/// section and an unknown field inside a known section.
fn other_result() -> Value {
    json!({
        "core_profile": {
            "archetypes": ["Outdoor Explorer"],
            "supporting_accounts": ["@rei"],
            "mood_score": 0.75
        },
        "interest_graph": {
            "travel": {
                "interests": [
                    {"topic": "Hiking", "supporting_accounts": ["@alltrails"], "since": 2019}
                ],
                "weight": 3
            }
        },
        "brand_affinities": [{"category": "Outdoor Gear", "brands": ["Patagonia"]}],
        "professional_ecosystem": {"industry_focus": ["Retail"], "supporting_accounts": []},
        "future_section": {"x": [1]},
        "following_count": 12
    })
}

struct Two {
    app: TestApp,
    _server: MockServer,
    /// ann: the completed fixture; bob: `other_result()`, completed later.
    ann: Value,
    bob: Value,
}

/// Two lookups completed by callback: ann first, then bob.
async fn two_profiles(db: PgPool) -> Two {
    let server = accepting_upstream().await;
    let app = spawn(
        db,
        Settings::with_upstream_url(server.uri().parse().unwrap()),
    )
    .await;
    let (ann_id, ann_rid, ann_cb) =
        submitted_lookup(&app, &server, json!({"email": "Ann@Example.com"})).await;
    let (bob_id, bob_rid, bob_cb) = submitted_lookup(
        &app,
        &server,
        json!({"email": "bob@example.com", "name": "Bob Stone"}),
    )
    .await;
    let ann = complete_by_callback(&app, &ann_id, &ann_cb, &completed_for(&ann_rid)).await;
    let bob = complete_by_callback(
        &app,
        &bob_id,
        &bob_cb,
        &completed_with(&bob_rid, other_result()),
    )
    .await;
    Two {
        app,
        _server: server,
        ann,
        bob,
    }
}

fn profile_id(lookup: &Value) -> String {
    lookup["profile"]["id"].as_str().unwrap().to_owned()
}

/// Profile ids of a `GET /v1/profiles?{query}` page, in order.
async fn search(app: &TestApp, query: &str) -> Vec<String> {
    let page = app.get_json(&format!("/v1/profiles?{query}")).await;
    page["items"]
        .as_array()
        .unwrap_or_else(|| panic!("{query}: no items in {page}"))
        .iter()
        .map(|p| p["id"].as_str().unwrap().to_owned())
        .collect()
}

#[sqlx::test]
async fn a_profile_holds_the_result_exactly_as_it_was_delivered(db: PgPool) {
    let Two { app, ann, bob, .. } = two_profiles(db).await;

    let ann_profile = app
        .get_json(&format!("/v1/profiles/{}", profile_id(&ann)))
        .await;
    let bob_profile = app
        .get_json(&format!("/v1/profiles/{}", profile_id(&bob)))
        .await;

    assert_eq!(
        ann_profile["result"],
        completed_for("unused")["data"]["result"]
    );
    assert_eq!(bob_profile["result"], other_result());
    assert_eq!(bob_profile["result"]["future_section"], json!({"x": [1]}));
    assert_eq!(bob_profile["result"]["core_profile"]["mood_score"], 0.75);
    // The lookup shows the same result.
    assert_eq!(bob["profile"]["result"], other_result());
    app.stop().await;
}

#[sqlx::test]
async fn a_profile_has_id_lookup_id_subject_result_completed_on_and_created_at(db: PgPool) {
    let Two { app, ann, bob, .. } = two_profiles(db).await;

    let profile = app
        .get_json(&format!("/v1/profiles/{}", profile_id(&bob)))
        .await;

    assert_eq!(profile["id"], bob["profile"]["id"]);
    assert_eq!(profile["lookup_id"], bob["id"]);
    assert_eq!(profile["subject"]["email"], "bob@example.com");
    assert_eq!(profile["subject"]["name"], "Bob Stone");
    assert!(profile["subject"]["phone"].is_null());
    assert!(profile["result"].is_object());
    let completed_on: DateTime<Utc> = profile["completed_on"].as_str().unwrap().parse().unwrap();
    assert_eq!(
        completed_on,
        "2026-01-15T10:31:00Z".parse::<DateTime<Utc>>().unwrap()
    );
    let created_at: DateTime<Utc> = profile["created_at"].as_str().unwrap().parse().unwrap();
    assert!(created_at <= Utc::now());
    let ann_profile = app
        .get_json(&format!("/v1/profiles/{}", profile_id(&ann)))
        .await;
    assert_eq!(ann_profile["lookup_id"], ann["id"]);
    assert_eq!(ann_profile["subject"]["email"], "ann@example.com");
    assert_ne!(ann_profile["id"], profile["id"]);
    app.stop().await;
}

#[sqlx::test]
async fn each_profile_filter_finds_the_matching_profile_ignoring_case(db: PgPool) {
    let Two { app, ann, bob, .. } = two_profiles(db).await;
    let (ann, bob) = (profile_id(&ann), profile_id(&bob));
    let cases = [
        // interest matches any label field of an entry: topic, activity, ...
        ("interest=machine%20LEARNING", &ann),
        ("interest=running", &ann),
        ("interest=HIKING", &bob),
        ("category=technology", &ann),
        ("category=Sports_And_Fitness", &ann),
        ("category=travel", &bob),
        ("brand=aws", &ann),
        ("brand=google%20cloud", &ann),
        ("brand=PATAGONIA", &bob),
        ("archetype=tech%20leader", &ann),
        ("archetype=outdoor%20explorer", &bob),
        ("industry=saas", &ann),
        ("industry=retail", &bob),
        ("email=ANN@example.com", &ann),
        ("email=bob@example.com", &bob),
    ];

    for (query, expected) in cases {
        assert_eq!(search(&app, query).await, [expected.as_str()], "{query}");
    }
    app.stop().await;
}

#[sqlx::test]
async fn profile_filters_combine_with_and(db: PgPool) {
    let Two { app, ann, .. } = two_profiles(db).await;

    let both_match_ann = search(&app, "interest=running&brand=AWS&industry=saas").await;
    let ann_and_bob = search(&app, "interest=running&brand=patagonia").await;
    let email_and_other = search(&app, "email=ann@example.com&category=travel").await;

    assert_eq!(both_match_ann, [profile_id(&ann)]);
    assert!(ann_and_bob.is_empty(), "{ann_and_bob:?}");
    assert!(email_and_other.is_empty(), "{email_and_other:?}");
    app.stop().await;
}

#[sqlx::test]
async fn a_profile_filter_matching_nothing_gives_an_empty_page(db: PgPool) {
    let Two { app, .. } = two_profiles(db).await;

    for query in [
        "interest=knitting",
        // supporting_accounts are not interest labels.
        "interest=@strava",
        "category=finance",
        "brand=azure",
        "archetype=maker",
        "industry=fintech",
        "email=cy@example.com",
    ] {
        let page = app.get_json(&format!("/v1/profiles?{query}")).await;
        assert_eq!(page["items"], json!([]), "{query}");
        assert!(page["next_cursor"].is_null(), "{query}");
    }
    app.stop().await;
}

#[sqlx::test]
async fn profiles_page_one_at_a_time_newest_first(db: PgPool) {
    let Two { app, ann, bob, .. } = two_profiles(db).await;

    let first = app.get_json("/v1/profiles?limit=1").await;
    let cursor = first["next_cursor"]
        .as_str()
        .expect("a second page")
        .to_owned();
    let second = app
        .get_json(&format!("/v1/profiles?limit=1&cursor={cursor}"))
        .await;

    assert_eq!(first["items"].as_array().unwrap().len(), 1);
    assert_eq!(first["items"][0]["id"], bob["profile"]["id"]);
    assert_eq!(second["items"].as_array().unwrap().len(), 1);
    assert_eq!(second["items"][0]["id"], ann["profile"]["id"]);
    assert!(second["next_cursor"].is_null());
    let all = search(&app, "").await;
    assert_eq!(all, [profile_id(&bob), profile_id(&ann)]);
    app.stop().await;
}

/// `Link: <…>; rel="next"` names the page the body's `next_cursor` names,
/// with the same filters (what `export` asks for before reading a body);
/// the last page has none.
#[sqlx::test]
async fn a_page_links_to_the_next_one_with_the_same_filters(db: PgPool) {
    let Two { app, ann, bob, .. } = two_profiles(db).await;

    let response = app.get("/v1/profiles?limit=1&match_basis=email").await;
    let link = response.headers()["link"].to_str().unwrap().to_owned();
    let first: Value = response.json().await.unwrap();
    assert_eq!(first["items"][0]["id"], bob["profile"]["id"]);
    let cursor = first["next_cursor"].as_str().unwrap();
    let target = link
        .strip_prefix('<')
        .and_then(|l| l.strip_suffix(">; rel=\"next\""))
        .unwrap_or_else(|| panic!("a next link: {link}"));
    let linked: Vec<(String, String)> = url::form_urlencoded::parse(
        target
            .strip_prefix("/v1/profiles?")
            .expect("the same path")
            .as_bytes(),
    )
    .into_owned()
    .collect();
    assert!(linked.contains(&("cursor".into(), cursor.into())), "{link}");
    assert!(linked.contains(&("limit".into(), "1".into())), "{link}");
    assert!(
        linked.contains(&("match_basis".into(), "email".into())),
        "{link}"
    );

    let response = app.get(target).await;
    assert!(response.headers().get("link").is_none(), "the last page");
    let second: Value = response.json().await.unwrap();
    assert_eq!(second["items"][0]["id"], ann["profile"]["id"]);
    assert!(second["next_cursor"].is_null());
    app.stop().await;
}

#[sqlx::test]
async fn a_malformed_email_filter_is_422_naming_email(db: PgPool) {
    let Two { app, .. } = two_profiles(db).await;

    let response = app.get("/v1/profiles?email=not-an-email").await;

    let body = problem(response, 422).await;
    assert_eq!(error_fields(&body), ["email"]);
    app.stop().await;
}

#[sqlx::test]
async fn bad_profile_list_parameters_are_422_naming_them(db: PgPool) {
    let Two { app, .. } = two_profiles(db).await;

    for (query, field) in [
        ("limit=0", "limit"),
        ("limit=501", "limit"),
        ("cursor=garbage", "cursor"),
        ("phone=12ab", "phone"),
        ("social_media_url=ftp://x", "social_media_url"),
    ] {
        let body = problem(app.get(&format!("/v1/profiles?{query}")).await, 422).await;
        assert_eq!(error_fields(&body), [field], "{query}");
    }
    app.stop().await;
}

#[sqlx::test]
async fn an_unknown_or_malformed_profile_id_is_404_problem(db: PgPool) {
    let Two { app, ann, .. } = two_profiles(db).await;

    let unknown = app.get(&format!("/v1/profiles/{}", Uuid::now_v7())).await;
    let malformed = app.get("/v1/profiles/not-a-uuid").await;
    // A lookup id is not a profile id.
    let lookup_id = app
        .get(&format!("/v1/profiles/{}", ann["id"].as_str().unwrap()))
        .await;

    problem(unknown, 404).await;
    problem(malformed, 404).await;
    problem(lookup_id, 404).await;
    app.stop().await;
}
