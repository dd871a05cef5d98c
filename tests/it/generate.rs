//! `interests-receiver generate --profiles N` (contract section 3): synthetic
//! completed lookups and profiles generated in the database, which search
//! (by facet and by any spelling of an identifier) and facets then see.

use std::time::Duration;

use crate::common::child::database_url;
use crate::common::{Settings, TEST_SECRET, spawn};
use interests_receiver::secrets::ServiceSecret;
use serde_json::Value;
use sqlx::PgPool;

pub(crate) async fn generate(db: &PgPool, args: &[&str]) -> std::process::Output {
    let output = tokio::process::Command::new(crate::common::bin())
        .arg("generate")
        .args(args)
        .env_clear()
        .env("DATABASE_URL", database_url(db))
        // The test app's secret: identities are keyed as it keys them.
        .env("SERVICE_SECRET", TEST_SECRET)
        .kill_on_drop(true)
        .output();
    tokio::time::timeout(Duration::from_secs(300), output)
        .await
        .expect("generate finishes")
        .unwrap()
}

#[sqlx::test]
async fn generated_profiles_are_synthetic_and_seen_by_search_and_facets(db: PgPool) {
    let first = generate(&db, &["--profiles", "30"]).await;
    let again = generate(&db, &["--profiles", "5"]).await;
    assert!(
        first.status.success() && again.status.success(),
        "{}{}",
        String::from_utf8_lossy(&first.stderr),
        String::from_utf8_lossy(&again.stderr)
    );
    // Stamped with the key the service writes under, as its own lookups
    // are: a service started on the database has nothing to re-key.
    let key_id = ServiceSecret::new(TEST_SECRET, None).identity_key_id();
    let stale: i64 =
        sqlx::query_scalar("SELECT count(*) FROM lookups WHERE identities_key IS DISTINCT FROM $1")
            .bind(&key_id)
            .fetch_one(&db)
            .await
            .unwrap();
    assert_eq!(stale, 0, "generated lookups not under the key {key_id}");
    let app = spawn(db, Settings::sandbox()).await;

    let page = app.get_json("/v1/profiles?limit=500").await;
    let by_email = app
        .get_json("/v1/profiles?email=PERSON7%2Bcrm@bench.example")
        .await;
    let by_phone = app
        .get_json("/v1/profiles?phone=%2B1%20415%20000%200033")
        .await;
    let by_url = app
        .get_json("/v1/profiles?social_media_url=http://linkedin.com/in/person-12/")
        .await;
    let brands = app.get_json("/v1/facets?field=brand&limit=1000").await;
    let first_brand = brands["values"][0]["value"].as_str().unwrap().to_owned();
    let with_brand = app
        .get_json(&format!(
            "/v1/profiles?limit=500&brand={}",
            first_brand.replace(' ', "%20")
        ))
        .await;

    let items = page["items"].as_array().unwrap();
    assert_eq!(items.len(), 35, "{page}");
    assert!(items.iter().all(|p| p["synthetic"] == true));
    assert!(
        items
            .iter()
            .all(|p| p["result"]["core_profile"].is_object())
    );
    let emails = |page: &Value| -> Vec<String> {
        page["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["subject"]["email"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(emails(&by_email), ["person7@bench.example"]);
    assert_eq!(emails(&by_phone), ["person33@bench.example"]);
    assert_eq!(emails(&by_url), ["person12@bench.example"]);
    // Facet counts agree with the profiles that carry the value.
    assert_eq!(
        brands["values"][0]["count"].as_u64().unwrap() as usize,
        with_brand["items"].as_array().unwrap().len(),
        "{brands}"
    );
    let lookup_id = items[0]["lookup_id"].as_str().unwrap();
    let lookup = app.lookup(lookup_id).await;
    assert_eq!(lookup["status"], "completed");
    assert_eq!(lookup["synthetic"], true);
    assert_eq!(lookup["match_basis"], "email");
    app.stop().await;
}

#[tokio::test]
async fn generate_refuses_a_short_service_secret_naming_it() {
    let output = tokio::process::Command::new(crate::common::bin())
        .args(["generate", "--profiles", "1"])
        .env_clear()
        .env("DATABASE_URL", "postgres://postgres@127.0.0.1:1/x")
        .env("SERVICE_SECRET", "short")
        .output()
        .await
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("SERVICE_SECRET"));
}
