//! `GET /v1/audit` (contract section 5): create, read, search, export and
//! erase are recorded by token name, with a keyed hash of the person and
//! never the identifier.

use crate::common::{
    READ_TOKEN, TOKEN, complete_by_callback, completed_for, spawn_with_accepting_upstream,
    submitted_lookup,
};
use serde_json::{Value, json};
use sqlx::PgPool;

#[sqlx::test]
async fn each_access_to_personal_data_is_recorded_by_token_name(db: PgPool) {
    let (upstream, app) = spawn_with_accepting_upstream(db).await;
    let (id, request_id, callback) =
        submitted_lookup(&app, &upstream, json!({"email": "audited@example.com"})).await;
    let done = complete_by_callback(&app, &id, &callback, &completed_for(&request_id)).await;
    let profile_id = done["profile"]["id"].as_str().unwrap().to_owned();
    let read = |path: String, token: &'static str| {
        let (http, url) = (app.http.clone(), app.url(&path));
        async move {
            let r = http.get(url).bearer_auth(token).send().await.unwrap();
            assert_eq!(r.status(), 200, "{path}");
        }
    };
    read(format!("/v1/profiles/{profile_id}"), READ_TOKEN).await;
    read("/v1/profiles?email=audited@example.com".into(), READ_TOKEN).await;
    let export = app
        .http
        .get(app.url("/v1/profiles"))
        .bearer_auth(TOKEN)
        .header("user-agent", "interests-receiver-export/0.1.0")
        .send()
        .await
        .unwrap();
    assert_eq!(export.status(), 200);
    let erased = app
        .http
        .delete(app.url("/v1/subjects?email=Audited%2Bx@example.com"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(erased.status(), 200);

    let log: Value = app.get_json("/v1/audit?limit=100").await;
    let items = log["items"].as_array().unwrap();
    let actions: Vec<(&str, &str)> = items
        .iter()
        .map(|e| (e["action"].as_str().unwrap(), e["token"].as_str().unwrap()))
        .collect();
    // Newest first; the test's own wait_for reads are lookup.read entries.
    let wanted = [
        ("subject.erase", "sandbox"),
        ("profile.export", "sandbox"),
        ("profile.search", "reader"),
        ("profile.read", "reader"),
    ];
    assert_eq!(&actions[..4], &wanted, "{actions:?}");
    assert!(actions.contains(&("lookup.create", "sandbox")));
    assert!(actions.contains(&("lookup.read", "sandbox")));
    let hash_of = |action: &str| {
        items
            .iter()
            .find(|e| e["action"] == action)
            .and_then(|e| e["subject_hash"].as_str())
            .unwrap()
            .to_owned()
    };
    // One person, one hash: the erasure (by another spelling) and the
    // creation name the same keyed hash, which is not the identifier.
    assert_eq!(hash_of("subject.erase"), hash_of("lookup.create"));
    assert_eq!(hash_of("profile.read"), hash_of("lookup.create"));
    // Keyed: the HMAC of the person's identity under the key derived from
    // SERVICE_SECRET, which another secret does not reproduce.
    use interests_receiver::secrets::ServiceSecret;
    use interests_receiver::subject::{identity, normalise_email};
    let person = identity("email", &normalise_email("audited@example.com").unwrap());
    let keyed = ServiceSecret::new(crate::common::TEST_SECRET, None).identity_hash(&person);
    assert_eq!(hash_of("lookup.create"), keyed);
    let other = ServiceSecret::new("another-service-secret-0123456789-abcdefgh", None);
    assert_ne!(hash_of("lookup.create"), other.identity_hash(&person));
    assert_eq!(
        app.count("SELECT count(*) FROM audit_log t WHERE t::text ILIKE '%audited%'")
            .await,
        0
    );
    let searched = items
        .iter()
        .find(|e| e["action"] == "profile.search")
        .unwrap();
    assert_eq!(searched["count"], 1);
    app.stop().await;
}

#[sqlx::test]
async fn the_audit_log_pages_and_needs_a_token(db: PgPool) {
    let (_upstream, app) = spawn_with_accepting_upstream(db).await;
    for n in 0..5 {
        app.create(&json!({"email": format!("p{n}@example.com")}))
            .await;
    }
    let first: Value = app.get_json("/v1/audit?limit=3").await;
    let cursor = first["next_cursor"].as_str().unwrap();
    let second: Value = app
        .get_json(&format!("/v1/audit?limit=3&cursor={cursor}"))
        .await;
    assert_eq!(first["items"].as_array().unwrap().len(), 3);
    assert_eq!(second["items"].as_array().unwrap().len(), 2);
    assert!(second["next_cursor"].is_null());
    let anonymous = app.http.get(app.url("/v1/audit")).send().await.unwrap();
    assert_eq!(anonymous.status(), 401);
    crate::common::problem(app.get("/v1/audit?cursor=nope").await, 422).await;
    app.stop().await;
}

#[sqlx::test]
async fn each_lookup_of_a_batch_is_recorded_as_created(db: PgPool) {
    let (_upstream, app) = spawn_with_accepting_upstream(db).await;
    let response = app
        .http
        .post(app.url("/v1/lookups/batch"))
        .bearer_auth(TOKEN)
        .json(&json!({"items": [
            {"email": "b1@example.com"}, {"email": "not an email"}, {"phone": "+14155550199"}
        ]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);

    let log: Value = app.get_json("/v1/audit?limit=10").await;
    let created: Vec<&Value> = log["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "lookup.create")
        .collect();
    assert_eq!(created.len(), 2, "{log}");
    assert!(
        created
            .iter()
            .all(|e| e["token"] == "sandbox" && e["lookup_id"].is_string())
    );
    app.stop().await;
}

#[sqlx::test]
async fn a_lookup_whose_audit_record_cannot_be_written_is_not_made(db: PgPool) {
    let (_upstream, app) = spawn_with_accepting_upstream(db).await;
    // From now on every audit write fails.
    for statement in [
        "CREATE FUNCTION refuse_audit() RETURNS trigger LANGUAGE plpgsql \
         AS $$ BEGIN RAISE EXCEPTION 'audit refused'; END $$",
        "CREATE TRIGGER refuse_audit BEFORE INSERT ON audit_log \
         FOR EACH ROW EXECUTE FUNCTION refuse_audit()",
    ] {
        sqlx::query(statement).execute(&app.db).await.unwrap();
    }

    let one = app
        .post_lookup(&json!({"email": "unrecorded@example.com"}))
        .await;
    let batch = app
        .http
        .post(app.url("/v1/lookups/batch"))
        .bearer_auth(TOKEN)
        .json(&json!({"items": [{"email": "unrecorded-too@example.com"}]}))
        .send()
        .await
        .unwrap();

    assert!(one.status().is_server_error(), "{}", one.status());
    assert!(batch.status().is_server_error(), "{}", batch.status());
    // The audit record is written in the lookup's transaction: no lookup
    // exists that the log does not show.
    assert_eq!(app.count("SELECT count(*) FROM lookups").await, 0);
    app.stop().await;
}
