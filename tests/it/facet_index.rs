//! The in-process facet index (`src/facet_index.rs`): facet counts under
//! facet filters come from bitmaps that follow the profile triggers' log
//! (`store::facet_log`), and are exact whatever the order in which
//! transactions commit, after a bulk load with the triggers off, and for a
//! follower that fell behind the pruned log.

use std::collections::BTreeMap;
use std::time::Duration;

use interests_receiver::store::facet_log;
use serde_json::Value;
use sqlx::PgPool;
use uuid::Uuid;

use crate::common::{Settings, TestApp, spawn};
use crate::generate::generate;

const WAIT: Duration = Duration::from_secs(20);

async fn generated(db: &PgPool, profiles: u32) {
    let out = generate(db, &["--profiles", &profiles.to_string()]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `GET /v1/facets?field=brand&brand={filter}` as (value, count) pairs.
async fn brands_with(app: &TestApp, filter: &str) -> Vec<(String, i64)> {
    let q = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("field", "brand")
        .append_pair("limit", "1000")
        .append_pair("brand", filter)
        .finish();
    let answer: Value = app.get_json(&format!("/v1/facets?{q}")).await;
    answer["values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            (
                v["value"].as_str().unwrap().to_owned(),
                v["count"].as_i64().unwrap(),
            )
        })
        .collect()
}

async fn count_of(app: &TestApp, brand: &str) -> Option<i64> {
    brands_with(app, brand)
        .await
        .into_iter()
        .find(|(v, _)| v == brand)
        .map(|(_, n)| n)
}

async fn from_index(app: &TestApp) -> f64 {
    app.metric("facet_counts_total{source=\"index\"}").await
}

/// Adds a brand to one profile's values, on `conn`.
async fn add_brand<'c>(conn: impl sqlx::PgExecutor<'c>, profile: Uuid, brand: &str) {
    sqlx::query("UPDATE profiles SET brand_facets = brand_facets || $2::text WHERE id = $1")
        .bind(profile)
        .bind(brand)
        .execute(conn)
        .await
        .unwrap();
}

#[sqlx::test]
async fn a_change_that_commits_after_a_later_one_is_counted_once(db: PgPool) {
    generated(&db, 20).await;
    let app = spawn(db.clone(), Settings::sandbox()).await;
    let ids: Vec<Uuid> = sqlx::query_scalar("SELECT id FROM profiles ORDER BY doc LIMIT 2")
        .fetch_all(&db)
        .await
        .unwrap();

    // The held transaction takes its id first and commits last: the index
    // reads the log past the later one while it is still open.
    let mut held = db.begin().await.unwrap();
    add_brand(&mut *held, ids[0], "Held Brand").await;
    add_brand(&db, ids[1], "Later Brand").await;
    assert_eq!(count_of(&app, "Later Brand").await, Some(1));
    assert_eq!(count_of(&app, "Held Brand").await, None);
    held.commit().await.unwrap();

    assert_eq!(
        count_of(&app, "Held Brand").await,
        Some(1),
        "the change committed after the index had read past a later one is counted"
    );
    assert_eq!(count_of(&app, "Held Brand").await, Some(1), "and only once");
    assert_eq!(
        from_index(&app).await,
        4.0,
        "every answer came from the index"
    );
    app.stop().await;
}

#[sqlx::test]
async fn profiles_generated_with_the_triggers_off_are_counted_and_the_index_loads_again(
    db: PgPool,
) {
    generated(&db, 10).await;
    let app = spawn(db.clone(), Settings::sandbox()).await;
    let mut off = Settings::sandbox();
    off.facet_index = false;
    let database = spawn(db.clone(), off).await;
    let old_docs: i64 = sqlx::query_scalar("SELECT max(doc) FROM profiles")
        .fetch_one(&db)
        .await
        .unwrap();

    generated(&db, 25).await;
    // The brand the generated profiles carry most, and how many of the
    // earlier ones carry it.
    let (brand, earlier): (String, i64) = sqlx::query_as(
        "SELECT f.value, (SELECT count(*) FROM profile_facets o JOIN profiles q ON q.id = o.profile_id \
                           WHERE o.field = 'brand' AND o.value = f.value AND q.doc <= $1) \
           FROM profile_facets f JOIN profiles p ON p.id = f.profile_id \
          WHERE f.field = 'brand' AND p.doc > $1 \
          GROUP BY f.value ORDER BY count(*) DESC, f.value LIMIT 1",
    )
    .bind(old_docs)
    .fetch_one(&db)
    .await
    .unwrap();
    // (The two apps share this process's metrics.)
    let served = from_index(&app).await;
    let expected = brands_with(&database, &brand).await;
    assert_eq!(
        from_index(&app).await,
        served,
        "FACET_INDEX=false: no index"
    );
    let total = expected
        .iter()
        .find(|(v, _)| v.to_lowercase() == brand)
        .map(|(_, n)| *n);
    assert!(
        total > Some(earlier),
        "the generated profiles are counted: {brand} {total:?} against {earlier} before"
    );
    // Right at once (from the database while the index loads again), then
    // from the index.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let served = from_index(&app).await;
        assert_eq!(brands_with(&app, &brand).await, expected);
        if from_index(&app).await > served {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the index never answered again"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    app.stop().await;
    database.stop().await;
}

#[sqlx::test]
async fn a_follower_behind_pruned_or_bulk_loaded_rows_loads_again_and_one_past_them_does_not(
    db: PgPool,
) {
    generated(&db, 5).await;
    let behind = facet_log::load(&db, |_, _, _| {}).await.unwrap();
    let profile: Uuid = sqlx::query_scalar("SELECT id FROM profiles LIMIT 1")
        .fetch_one(&db)
        .await
        .unwrap();
    add_brand(&db, profile, "Pruned Brand").await;
    let seen = facet_log::changes(&db, &behind, &[]).await.unwrap();
    assert!(!seen.reload);
    // The profile's values went (-1) and came back with the brand (+1).
    let mut net: BTreeMap<(&str, &str), i32> = BTreeMap::new();
    for ((field, value), sign) in seen.fields.iter().zip(&seen.values).zip(&seen.signs) {
        *net.entry((field, value)).or_default() += i32::from(*sign);
    }
    net.retain(|_, n| *n != 0);
    assert_eq!(
        net.into_iter().collect::<Vec<_>>(),
        [(("brand", "pruned brand"), 1)],
        "the one change, case-folded"
    );
    let ahead = seen.snapshot;

    sqlx::query("UPDATE facet_log SET at = at - interval '1 hour'")
        .execute(&db)
        .await
        .unwrap();
    // Only rows below every running transaction's snapshot go (xids are
    // shared by the whole server: other tests' transactions hold it back).
    let mut pruned = 0;
    let deadline = tokio::time::Instant::now() + WAIT;
    while pruned < 2 {
        assert!(tokio::time::Instant::now() < deadline, "never pruned");
        pruned += facet_log::prune(&db).await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(pruned, 2, "the old and the new row");
    assert!(
        facet_log::changes(&db, &behind, &[]).await.unwrap().reload,
        "a follower that never read the pruned row loads again"
    );
    let current = facet_log::changes(&db, &ahead, &[]).await.unwrap();
    assert!(!current.reload && current.docs.is_empty());

    generated(&db, 3).await;
    assert!(
        facet_log::changes(&db, &current.snapshot, &[])
            .await
            .unwrap()
            .reload,
        "a bulk load with the triggers off is not in the log"
    );
    let after = facet_log::load(&db, |_, _, _| {}).await.unwrap();
    assert!(!facet_log::changes(&db, &after, &[]).await.unwrap().reload);
}
