//! Profile versions and changes (issue 18): a refresh keeps the earlier
//! profile; `GET /v1/profiles/{id}/versions` lists every profile of the
//! person and `/changes` what each version changed, by facet.

use std::time::Duration;

use interests_receiver::facets::Facets;
use serde_json::{Value, json};
use sqlx::PgPool;

use crate::common::{Settings, TOKEN, TestApp, error_fields, problem, spawn};

const WAIT: Duration = Duration::from_secs(20);

/// Looks `body` up (202, a new paid lookup) and waits until it completes;
/// the completed lookup.
async fn completed(app: &TestApp, body: Value) -> Value {
    let id = app.create(&body).await;
    app.wait_for_status(&id, "completed", WAIT).await
}

/// The first lookup of `email` and a refresh of it, both completed.
async fn two_versions(app: &TestApp, email: &str) -> (Value, Value) {
    let first = completed(app, json!({"email": email})).await;
    let second = completed(app, json!({"email": email, "refresh": true})).await;
    (first, second)
}

fn profile_id(lookup: &Value) -> &str {
    lookup["profile"]["id"].as_str().unwrap()
}

/// The facet values of `result` the test expects a change to name, as
/// lowercased sets.
fn lowered(values: &Value) -> Vec<String> {
    let mut v: Vec<String> = values
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_lowercase())
        .collect();
    v.sort();
    v
}

#[sqlx::test]
async fn a_refresh_keeps_the_earlier_profile_and_both_are_listed_newest_first(db: PgPool) {
    let app = spawn(db, Settings::sandbox()).await;
    let (first, second) = two_versions(&app, "ann+sandbox-changing@example.com").await;
    assert_ne!(profile_id(&first), profile_id(&second));
    // The earlier profile is still there, whole.
    let earlier = app
        .get_json(&format!("/v1/profiles/{}", profile_id(&first)))
        .await;
    assert_eq!(earlier["result"], first["profile"]["result"]);

    // Another person's profile is not a version of Ann.
    completed(&app, json!({"email": "bob@example.com"})).await;

    let expected = json!({"items": [
        {"profile_id": profile_id(&second), "lookup_id": second["id"],
         "completed_on": second["profile"]["completed_on"]},
        {"profile_id": profile_id(&first), "lookup_id": first["id"],
         "completed_on": first["profile"]["completed_on"]},
    ]});
    // Read through either version, the same list.
    for id in [profile_id(&first), profile_id(&second)] {
        let versions = app.get_json(&format!("/v1/profiles/{id}/versions")).await;
        assert_eq!(versions, expected);
    }
    app.stop().await;
}

#[sqlx::test]
async fn changes_name_what_each_version_added_and_removed_by_facet(db: PgPool) {
    let app = spawn(db, Settings::sandbox()).await;
    let (first, second) = two_versions(&app, "cy+sandbox-changing@example.com").await;
    let changes = app
        .get_json(&format!("/v1/profiles/{}/changes", profile_id(&second)))
        .await;
    let items = changes["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{changes}");
    let change = &items[0];
    assert_eq!(change["from_profile_id"], profile_id(&first));
    assert_eq!(change["to_profile_id"], profile_id(&second));
    assert_eq!(change["at"], second["profile"]["completed_on"]);

    // What was added is in the newer result and not the older, and the
    // reverse for what was removed, facet by facet.
    let (old, new) = (
        Facets::extract(&first["profile"]["result"]),
        Facets::extract(&second["profile"]["result"]),
    );
    let facets = [
        ("interest", &old.interests, &new.interests),
        ("category", &old.categories, &new.categories),
        ("brand", &old.brands, &new.brands),
        ("archetype", &old.archetypes, &new.archetypes),
        ("industry", &old.industries, &new.industries),
    ];
    let mut something = false;
    for (field, old, new) in facets {
        let added: Vec<String> = new.iter().filter(|v| !old.contains(v)).cloned().collect();
        let removed: Vec<String> = old.iter().filter(|v| !new.contains(v)).cloned().collect();
        assert_eq!(lowered(&change["added"][field]), added, "added {field}");
        assert_eq!(
            lowered(&change["removed"][field]),
            removed,
            "removed {field}"
        );
        something |= !added.is_empty() || !removed.is_empty();
    }
    assert!(something, "the sandbox's changing person changed: {change}");
    assert_eq!(
        change["following_count"],
        json!({"before": first["profile"]["result"]["following_count"],
               "after": second["profile"]["result"]["following_count"]})
    );

    // Up to the first version, nothing had changed yet.
    let earlier = app
        .get_json(&format!("/v1/profiles/{}/changes", profile_id(&first)))
        .await;
    assert_eq!(earlier, json!({"items": []}));
    app.stop().await;
}

#[sqlx::test]
async fn a_refresh_that_changed_nothing_has_empty_lists(db: PgPool) {
    let app = spawn(db, Settings::sandbox()).await;
    let (first, second) = two_versions(&app, "dee@example.com").await;
    assert_eq!(first["profile"]["result"], second["profile"]["result"]);
    let changes = app
        .get_json(&format!("/v1/profiles/{}/changes", profile_id(&second)))
        .await;
    let empty =
        json!({"interest": [], "category": [], "brand": [], "archetype": [], "industry": []});
    let count = &first["profile"]["result"]["following_count"];
    assert_eq!(
        changes["items"],
        json!([{"from_profile_id": profile_id(&first), "to_profile_id": profile_id(&second),
                "at": second["profile"]["completed_on"], "added": empty, "removed": empty,
                "following_count": {"before": count, "after": count}}])
    );
    app.stop().await;
}

#[sqlx::test]
async fn unknown_profiles_are_404_and_malformed_ids_422(db: PgPool) {
    let app = spawn(db, Settings::sandbox()).await;
    for what in ["versions", "changes"] {
        let unknown = app
            .get(&format!("/v1/profiles/{}/{what}", uuid::Uuid::now_v7()))
            .await;
        problem(unknown, 404).await;
        let malformed = app.get(&format!("/v1/profiles/not-an-id/{what}")).await;
        assert_eq!(error_fields(&problem(malformed, 422).await), ["id"]);
        let anonymous = app
            .http
            .get(app.url(&format!("/v1/profiles/{}/{what}", uuid::Uuid::now_v7())))
            .send()
            .await
            .unwrap();
        assert_eq!(anonymous.status(), 401);
    }
    app.stop().await;
}

#[sqlx::test]
async fn erasure_removes_every_version(db: PgPool) {
    let app = spawn(db, Settings::sandbox()).await;
    let (first, second) = two_versions(&app, "eve+sandbox-changing@example.com").await;
    let erased: Value = app
        .http
        .delete(app.url("/v1/subjects?email=EVE%2Bsandbox-changing@example.com"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(erased["erased"]["profiles"], 2, "{erased}");
    assert_eq!(app.count("SELECT count(*) FROM profiles").await, 0);
    for lookup in [&first, &second] {
        let versions = app
            .get(&format!("/v1/profiles/{}/versions", profile_id(lookup)))
            .await;
        problem(versions, 404).await;
    }
    app.stop().await;
}

#[sqlx::test]
async fn retention_removes_versions_older_than_its_age_and_keeps_younger_ones(db: PgPool) {
    // Contract: finished lookups and their profiles older than
    // RETENTION_PROFILE_DAYS are deleted, whatever their place in a
    // person's history; a younger version of the same person stays.
    let app = spawn(db.clone(), Settings::sandbox()).await;
    let (first, second) = two_versions(&app, "fay+sandbox-changing@example.com").await;
    let failed = app
        .create(&json!({"email": "gus+sandbox-fail@example.com"}))
        .await;
    app.wait_for_status(&failed, "failed", WAIT).await;
    app.stop().await;
    // Fay's first version and the failed lookup are older than the age.
    sqlx::query(
        "UPDATE lookups SET created_at = now() - interval '41 days', \
           completed_at = now() - interval '40 days' WHERE id = ANY($1::uuid[])",
    )
    .bind(vec![
        first["id"].as_str().unwrap().to_owned(),
        failed.clone(),
    ])
    .execute(&db)
    .await
    .unwrap();

    let mut settings = Settings::sandbox();
    settings.retention_profile = Some(Duration::from_secs(30 * 86_400));
    let app = spawn(db, settings).await;
    let deadline = tokio::time::Instant::now() + WAIT;
    while app.count("SELECT count(*) FROM lookups").await > 1 {
        assert!(tokio::time::Instant::now() < deadline, "nothing was purged");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The failed lookup and Fay's earlier version went; her younger one stays.
    let first_id = first["id"].as_str().unwrap();
    assert_eq!(
        app.get(&format!("/v1/lookups/{first_id}")).await.status(),
        404
    );
    let versions = app
        .get_json(&format!("/v1/profiles/{}/versions", profile_id(&second)))
        .await;
    assert_eq!(versions["items"].as_array().unwrap().len(), 1);
    assert_eq!(versions["items"][0]["profile_id"], profile_id(&second));
    app.stop().await;
}
