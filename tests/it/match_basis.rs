//! `match_basis` and `warnings` on the lookup object, `NAME_ONLY_LOOKUPS`
//! (contract sections 4 and 5), and the profile filters that find a person
//! in any spelling (`email=`, `phone=`, `social_media_url=`) or by
//! `match_basis=`, on `GET /v1/profiles` and `GET /v1/facets` alike.

use crate::common::{
    Settings, TOKEN, TestApp, accepting_upstream, complete_by_callback, completed_for,
    error_fields, problem, spawn, submitted_lookup,
};
use interests_receiver::config::NameOnlyLookups;
use serde_json::{Value, json};
use sqlx::PgPool;
use wiremock::MockServer;

async fn app_with(db: PgPool, name_only: NameOnlyLookups) -> (MockServer, TestApp) {
    let server = accepting_upstream().await;
    let mut settings = Settings::with_upstream_url(server.uri().parse().unwrap());
    settings.name_only_lookups = name_only;
    let app = spawn(db, settings).await;
    (server, app)
}

async fn post_batch(app: &TestApp, items: Value) -> Vec<Value> {
    let response = app
        .http
        .post(app.url("/v1/lookups/batch"))
        .bearer_auth(TOKEN)
        .json(&json!({ "items": items }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let answer: Value = response.json().await.unwrap();
    answer["items"].as_array().unwrap().clone()
}

#[sqlx::test]
async fn each_lookup_names_the_strongest_identifier_it_carries(db: PgPool) {
    let (_server, app) = app_with(db, NameOnlyLookups::Warn).await;
    let cases = [
        (
            json!({"email": "a@example.com", "phone": "+14155550100", "name": "A"}),
            "email",
        ),
        (
            json!({"phone": "+14155550101", "social_media_url": "https://linkedin.com/in/b"}),
            "phone",
        ),
        (
            json!({"social_media_url": "https://linkedin.com/in/c", "name": "C", "company": "Co"}),
            "social_media_url",
        ),
        (
            json!({"name": "Dee Dee", "company": "Acme"}),
            "name_company",
        ),
        (json!({"name": "Eve Only"}), "name_only"),
    ];

    for (body, expected) in cases {
        let created: Value = app.post_lookup(&body).await.json().await.unwrap();
        let id = created["id"].as_str().unwrap();
        let read = app.lookup(id).await;
        assert_eq!(created["match_basis"], expected, "{body}");
        assert_eq!(read["match_basis"], expected, "{body}");
        if expected != "name_only" {
            assert_eq!(read["warnings"], json!([]), "{body}");
        }
    }
    app.stop().await;
}

#[sqlx::test]
async fn under_warn_a_name_only_lookup_is_accepted_with_a_warning(db: PgPool) {
    let (server, app) = app_with(db, NameOnlyLookups::Warn).await;

    let response = app.post_lookup(&json!({"name": "Ann Lee"})).await;

    assert_eq!(response.status(), 202);
    let lookup: Value = response.json().await.unwrap();
    assert_eq!(lookup["match_basis"], "name_only");
    let warnings = lookup["warnings"].as_array().unwrap();
    assert_eq!(warnings.len(), 1, "{lookup}");
    let warning = warnings[0].as_str().unwrap();
    assert!(warning.contains("wrong person"), "{warning}");
    let read = app.lookup(lookup["id"].as_str().unwrap()).await;
    assert_eq!(read["warnings"], lookup["warnings"]);
    // Accepted for real: it goes upstream.
    crate::common::wait_for_submits(&server, 1).await;
    app.stop().await;
}

#[sqlx::test]
async fn under_allow_a_name_only_lookup_carries_no_warning(db: PgPool) {
    let (_server, app) = app_with(db, NameOnlyLookups::Allow).await;

    let response = app.post_lookup(&json!({"name": "Ann Lee"})).await;

    assert_eq!(response.status(), 202);
    let lookup: Value = response.json().await.unwrap();
    assert_eq!(lookup["match_basis"], "name_only");
    assert_eq!(lookup["warnings"], json!([]));
    app.stop().await;
}

#[sqlx::test]
async fn under_refuse_a_name_only_lookup_is_422_naming_the_identifiers_that_would_help(db: PgPool) {
    let (server, app) = app_with(db, NameOnlyLookups::Refuse).await;

    let single = problem(app.post_lookup(&json!({"name": "Ann Lee"})).await, 422).await;
    let with_company = app
        .post_lookup(&json!({"name": "Ann Lee", "company": "Acme"}))
        .await;
    let items = post_batch(
        &app,
        json!([{"name": "Bob Stone"}, {"name": "Bob Stone", "email": "bob@example.com"}]),
    )
    .await;

    let mut fields = error_fields(&single);
    fields.sort();
    assert_eq!(fields, ["company", "email", "phone", "social_media_url"]);
    assert_eq!(with_company.status(), 202);
    assert_eq!(items[0]["status"], 422);
    let mut batch_fields = error_fields(&items[0]["problem"]);
    batch_fields.sort();
    assert_eq!(
        batch_fields,
        ["company", "email", "phone", "social_media_url"]
    );
    assert_eq!(items[1]["status"], 202);
    assert_eq!(items[1]["lookup"]["match_basis"], "email");
    // Only the two accepted lookups exist and went upstream.
    crate::common::wait_for_submits(&server, 2).await;
    assert_eq!(app.count("SELECT count(*) FROM lookups").await, 2);
    app.stop().await;
}

#[sqlx::test]
async fn a_batch_under_warn_warns_on_its_name_only_items_only(db: PgPool) {
    let (_server, app) = app_with(db, NameOnlyLookups::Warn).await;

    let items = post_batch(
        &app,
        json!([{"name": "Cy Young"}, {"name": "Cy Young", "company": "Acme"}]),
    )
    .await;

    assert_eq!(items[0]["status"], 202);
    assert_eq!(items[0]["lookup"]["match_basis"], "name_only");
    assert_eq!(items[0]["lookup"]["warnings"].as_array().unwrap().len(), 1);
    assert_eq!(items[1]["lookup"]["match_basis"], "name_company");
    assert_eq!(items[1]["lookup"]["warnings"], json!([]));
    app.stop().await;
}

/// Three completed profiles: ann (by email, with a +tag and capitals), bob
/// (by phone), cy (by profile URL), dee (name and company).
async fn four_people(db: PgPool) -> (MockServer, TestApp, [String; 4]) {
    let (server, app) = app_with(db, NameOnlyLookups::Warn).await;
    let mut profiles = Vec::new();
    for body in [
        json!({"email": "Ann.Lee+crm@Example.com"}),
        json!({"phone": "+1 (415) 555-0123", "name": "Bob"}),
        json!({"social_media_url": "https://www.linkedin.com/in/cy-young/?trk=x"}),
        json!({"name": "Dee Dee", "company": "Acme"}),
    ] {
        let (id, rid, callback) = submitted_lookup(&app, &server, body).await;
        let done = complete_by_callback(&app, &id, &callback, &completed_for(&rid)).await;
        profiles.push(done["profile"]["id"].as_str().unwrap().to_owned());
    }
    (server, app, profiles.try_into().unwrap())
}

async fn search(app: &TestApp, query: &str) -> Vec<String> {
    let page = app.get_json(&format!("/v1/profiles?{query}")).await;
    page["items"]
        .as_array()
        .unwrap_or_else(|| panic!("{query}: {page}"))
        .iter()
        .map(|p| p["id"].as_str().unwrap().to_owned())
        .collect()
}

async fn facet_total(app: &TestApp, query: &str) -> i64 {
    let answer = app
        .get_json(&format!("/v1/facets?field=archetype&{query}"))
        .await;
    answer["values"]
        .as_array()
        .unwrap_or_else(|| panic!("{query}: {answer}"))
        .iter()
        .map(|v| v["count"].as_i64().unwrap())
        .max()
        .unwrap_or(0)
}

#[sqlx::test]
async fn identifier_filters_find_the_person_in_any_spelling_the_service_treats_as_them(db: PgPool) {
    let (_server, app, [ann, bob, cy, _dee]) = four_people(db).await;
    let cases = [
        ("email=ann.lee@example.com", &ann),
        ("email=ANN.LEE%2Bnewsletter@EXAMPLE.com", &ann),
        ("email=Ann.Lee%2Bcrm@Example.com", &ann),
        ("phone=14155550123", &bob),
        ("phone=%2B1%20415%20555%200123", &bob),
        ("social_media_url=http://linkedin.com/in/cy-young", &cy),
        (
            "social_media_url=https://www.linkedin.com/in/cy-young/%23about",
            &cy,
        ),
    ];

    for (query, expected) in cases {
        assert_eq!(search(&app, query).await, [expected.as_str()], "{query}");
        // Facets count the same set.
        assert_eq!(facet_total(&app, query).await, 1, "{query}");
    }
    for query in [
        "email=ann.leex@example.com",
        "phone=14155550124",
        "social_media_url=https://linkedin.com/in/cy-young-2",
    ] {
        assert!(search(&app, query).await.is_empty(), "{query}");
    }
    app.stop().await;
}

#[sqlx::test]
async fn match_basis_filters_profiles_and_facets(db: PgPool) {
    let (_server, app, [ann, bob, cy, dee]) = four_people(db).await;

    assert_eq!(search(&app, "match_basis=email").await, [ann.as_str()]);
    assert_eq!(search(&app, "match_basis=phone").await, [bob]);
    assert_eq!(search(&app, "match_basis=social_media_url").await, [cy]);
    assert_eq!(search(&app, "match_basis=name_company").await, [dee]);
    assert!(search(&app, "match_basis=name_only").await.is_empty());
    assert_eq!(
        search(&app, "match_basis=email&email=ann.lee@example.com").await,
        [ann]
    );
    assert!(
        search(&app, "match_basis=phone&email=ann.lee@example.com")
            .await
            .is_empty()
    );
    assert_eq!(facet_total(&app, "match_basis=name_company").await, 1);
    assert_eq!(facet_total(&app, "").await, 4);
    app.stop().await;
}

#[sqlx::test]
async fn an_unknown_match_basis_is_422_naming_it(db: PgPool) {
    let (_server, app) = app_with(db, NameOnlyLookups::Warn).await;

    for path in [
        "/v1/profiles?match_basis=fingerprint",
        "/v1/facets?field=brand&match_basis=EMAIL",
    ] {
        let body = problem(app.get(path).await, 422).await;
        assert_eq!(error_fields(&body), ["match_basis"], "{path}");
    }
    app.stop().await;
}

/// Profile ids `interests-receiver export --format jsonl <args>` writes.
async fn export_ids(app: &TestApp, args: &[&str]) -> Vec<String> {
    let output = tokio::process::Command::new(crate::common::bin())
        .args(["export", "--format", "jsonl"])
        .args(args)
        .env_clear()
        .env("INTERESTS_SERVER", app.url(""))
        .env("INTERESTS_TOKEN", TOKEN)
        .kill_on_drop(true)
        .output()
        .await
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| {
            let profile: Value = serde_json::from_str(line).unwrap();
            profile["id"].as_str().unwrap().to_owned()
        })
        .collect()
}

#[sqlx::test]
async fn export_takes_the_same_identifier_and_match_basis_filters(db: PgPool) {
    let (_server, app, [ann, bob, cy, dee]) = four_people(db).await;

    assert_eq!(
        export_ids(&app, &["--email", "ANN.LEE+other@example.com"]).await,
        [ann]
    );
    assert_eq!(export_ids(&app, &["--phone", "14155550123"]).await, [bob]);
    assert_eq!(
        export_ids(
            &app,
            &["--social-media-url", "http://linkedin.com/in/cy-young/"]
        )
        .await,
        [cy]
    );
    assert_eq!(
        export_ids(&app, &["--match-basis", "name_company"]).await,
        [dee]
    );
    app.stop().await;
}

#[sqlx::test]
async fn an_email_stored_plain_is_found_by_its_tagged_and_capitalised_spellings_by_every_filter(
    db: PgPool,
) {
    let (server, app) = app_with(db, NameOnlyLookups::Warn).await;
    let mut profiles = Vec::new();
    for email in ["zoe@example.com", "zoey@example.com"] {
        let (id, rid, callback) = submitted_lookup(&app, &server, json!({ "email": email })).await;
        let done = complete_by_callback(&app, &id, &callback, &completed_for(&rid)).await;
        profiles.push(done["profile"]["id"].as_str().unwrap().to_owned());
    }
    let zoe = profiles[0].as_str();

    for spelling in [
        "zoe+x@example.com",
        "ZOE@Example.COM",
        "Zoe+news@EXAMPLE.com",
    ] {
        let query = format!("email={}", spelling.replace('+', "%2B"));
        assert_eq!(search(&app, &query).await, [zoe], "{spelling}");
        assert_eq!(facet_total(&app, &query).await, 1, "{spelling}");
        let refresh: Value = app
            .post_json(
                "/v1/profiles/refresh",
                &json!({"filters": {"email": spelling}, "dry_run": true}),
            )
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(refresh["matched"], 1, "{spelling}: {refresh}");
    }
    // Zoey is someone else, whatever the spelling.
    assert!(search(&app, "email=zoey%2Bx@example.com").await != [zoe]);
    assert!(search(&app, "email=zo@example.com").await.is_empty());
    app.stop().await;
}
