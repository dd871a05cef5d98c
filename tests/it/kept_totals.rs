//! `/v1/stats`, `/metrics` and the budget read kept totals, not the tables:
//! they must equal what the tables hold (counted the slow way here), also
//! after an erasure.

use std::time::Duration;

use crate::common::{Settings, TOKEN, TestApp, spawn};
use serde_json::{Value, json};
use sqlx::{ConnectOptions, Connection, PgConnection, PgPool};

const WAIT: Duration = Duration::from_secs(30);

/// The figures of `/v1/stats` as the old full-table queries counted them.
async fn counted_the_slow_way(app: &TestApp) -> Value {
    let status = |s: &str| format!("SELECT count(*) FROM lookups WHERE status = '{s}'");
    let mut lookups = serde_json::Map::new();
    for s in [
        "pending",
        "queued",
        "processing",
        "completed",
        "failed",
        "expired",
    ] {
        lookups.insert(s.into(), json!(app.count(&status(s)).await));
    }
    let mut deliveries = serde_json::Map::new();
    for o in ["applied", "duplicate", "refused"] {
        let sql = format!("SELECT count(*) FROM deliveries WHERE outcome = '{o}'");
        deliveries.insert(o.into(), json!(app.count(&sql).await));
    }
    json!({
        "lookups": lookups,
        "deliveries": deliveries,
        "credits_today": app.count(
            "SELECT COALESCE(sum(credits_charged), 0)::bigint FROM lookups \
             WHERE completed_at >= date_trunc('day', now())").await,
        "polls": app.count("SELECT COALESCE(sum(poll_count), 0)::bigint FROM lookups").await,
        "submits": app.count("SELECT COALESCE(sum(submit_attempts), 0)::bigint FROM lookups").await,
        "synthetic": app.count("SELECT count(*) FROM lookups WHERE synthetic").await,
    })
}

fn as_read(stats: &Value) -> Value {
    let pick = |section: &str, keys: &[&str]| {
        keys.iter()
            .map(|k| ((*k).to_owned(), stats[section][*k].clone()))
            .collect::<serde_json::Map<_, _>>()
    };
    json!({
        "lookups": pick("lookups", &["pending", "queued", "processing", "completed", "failed", "expired"]),
        "deliveries": pick("deliveries", &["applied", "duplicate", "refused"]),
        "credits_today": stats["credits"]["today"],
        "polls": stats["polls"],
        "submits": stats["submits"],
        "synthetic": stats["synthetic_lookups"],
    })
}

#[sqlx::test]
async fn stats_from_kept_totals_equal_the_tables_also_after_an_erasure(db: PgPool) {
    let mut settings = Settings::sandbox();
    // The no-callback person is found by a poll, soon.
    settings.poll_after = Duration::from_secs(1);
    let app = spawn(db, settings).await;
    let emails = [
        "kt1@example.com",
        "kt2+sandbox-duplicate-callback@example.com",
        "kt3+sandbox-fail@example.com",
        "kt4+sandbox-no-match@example.com",
        "kt5+sandbox-no-callback@example.com",
        "kt6+sandbox-concurrent-callback@example.com",
    ];
    let mut ids = Vec::new();
    for email in emails {
        let created: Value = app
            .post_lookup(&json!({"email": email}))
            .await
            .json()
            .await
            .unwrap();
        ids.push(created["id"].as_str().unwrap().to_owned());
    }
    for id in &ids {
        app.wait_for(id, WAIT, |l| {
            ["completed", "failed"].contains(&l["status"].as_str().unwrap())
        })
        .await;
    }
    // Late duplicate deliveries are counted as they arrive: compare once
    // every expected one is in (2 + 3 deliveries for the two cases).
    let deadline = tokio::time::Instant::now() + WAIT;
    while app
        .count("SELECT count(*) FROM deliveries WHERE outcome = 'duplicate'")
        .await
        < 3
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "duplicates never came"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let stats = app.get_json("/v1/stats").await;
    let slow = counted_the_slow_way(&app).await;
    assert_eq!(as_read(&stats), slow, "{stats}");
    assert_eq!(stats["credits"]["today"], 5 * 4, "{stats}");

    // After an erasure the kept totals still equal the tables: the erased
    // lookup leaves the counts by status, and its spend (a real lookup's)
    // moves to the spend ledger. These are sandbox lookups, whose spend
    // is not real: it leaves no ledger row (see `erased_results` for the
    // real-mode case, where it stays counted).
    let erased = app
        .http
        .delete(app.url("/v1/subjects?email=kt1@example.com"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(erased.status(), 200);
    let after = app.get_json("/v1/stats").await;
    let mut slow = counted_the_slow_way(&app).await;
    let ledger = app
        .count("SELECT COALESCE(sum(credits), 0)::bigint FROM spend_ledger")
        .await;
    slow["credits_today"] = json!(slow["credits_today"].as_i64().unwrap() + ledger);
    assert_eq!(as_read(&after), slow, "{after}");
    assert_eq!(
        after["lookups"]["completed"],
        stats["lookups"]["completed"].as_i64().unwrap() - 1
    );
    let chart = app.get_json("/v1/stats/credits").await;
    let today = chart["days"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(today["credits"], after["credits"]["today"], "{chart}");
    app.stop().await;
}

/// Lookups inserted and deleted many to a statement (a bulk load, a purge)
/// are counted once per statement and still equal the tables.
#[sqlx::test]
async fn bulk_inserts_and_deletes_keep_the_totals_equal_to_the_tables(db: PgPool) {
    let mut settings = Settings::sandbox();
    settings.options.run_workers = false;
    let app = spawn(db, settings).await;
    sqlx::query(
        "INSERT INTO lookups (id, status, email, subject_key, request_id, created_at, \
           submitted_at, completed_at, credits_charged, poll_count, submit_attempts, synthetic) \
         SELECT gen_random_uuid(), s, 'bulk' || i || '@example.com', md5('bulk' || i), \
           md5('r' || i) || '_1717000000_0001', now(), now(), \
           CASE WHEN s = 'completed' THEN now() END, \
           CASE WHEN s = 'completed' THEN 5 ELSE 0 END, i % 3, 1, i % 2 = 0 \
         FROM generate_series(1, 3000) i, \
           LATERAL (SELECT (ARRAY['queued', 'completed', 'failed'])[1 + i % 3] AS s) st",
    )
    .execute(&app.db)
    .await
    .unwrap();
    let stats = app.get_json("/v1/stats").await;
    assert_eq!(as_read(&stats), counted_the_slow_way(&app).await, "{stats}");
    assert_eq!(stats["lookups"]["completed"], 1000, "{stats}");

    sqlx::query("DELETE FROM lookups WHERE email LIKE 'bulk1%' OR status = 'failed'")
        .execute(&app.db)
        .await
        .unwrap();
    let stats = app.get_json("/v1/stats").await;
    let mut slow = counted_the_slow_way(&app).await;
    // The deleted lookups' real spend stays counted (the spend ledger).
    slow["credits_today"] = json!(
        slow["credits_today"].as_i64().unwrap()
            + app
                .count("SELECT COALESCE(sum(credits), 0)::bigint FROM spend_ledger WHERE day = current_date")
                .await
    );
    assert_eq!(as_read(&stats), slow, "{stats}");
    assert_eq!(stats["lookups"]["failed"], 0, "{stats}");
}

async fn pid(c: &mut PgConnection) -> i32 {
    sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(c)
        .await
        .unwrap()
}

#[sqlx::test]
async fn writers_on_two_connections_never_wait_on_one_kept_total_row(db: PgPool) {
    // Each of the service's connections claims a shard of its own when it
    // connects (store::claim_kept_shard): a status change held uncommitted
    // on one connection never makes a change on another wait for its
    // commit, even when the two backends' pids share a remainder modulo 32
    // (the shard they fell back to before the claim, which the two
    // connections below are picked to share).
    interests_receiver::store::migrate(&db).await.unwrap();
    sqlx::query(
        "INSERT INTO lookups (id, status, email, subject_key, request_id, submitted_at) \
         SELECT gen_random_uuid(), 'queued', 'shard' || i || '@example.com', \
                'shard-' || i, 'rid-shard-' || i, now() \
         FROM generate_series(0, 50) i",
    )
    .execute(&db)
    .await
    .unwrap();
    let options = db.connect_options().as_ref().clone();
    let mut holder = PgConnection::connect_with(&options).await.unwrap();
    let held_pid = pid(&mut holder).await;
    let mut others = Vec::new();
    let mut writer = loop {
        let mut c = PgConnection::connect_with(&options).await.unwrap();
        if pid(&mut c).await % 32 == held_pid % 32 {
            break c;
        }
        others.push(c);
        assert!(others.len() < 500, "no backend pid shared a remainder");
    };
    drop(others);
    let mut shards = Vec::new();
    for c in [&mut holder, &mut writer] {
        interests_receiver::store::claim_kept_shard(c)
            .await
            .unwrap();
        let shard: i16 = sqlx::query_scalar("SELECT kept_total_shard()")
            .fetch_one(&mut *c)
            .await
            .unwrap();
        shards.push(shard);
    }
    assert_ne!(shards[0], shards[1], "two connections claimed one shard");
    assert!(shards.iter().all(|s| (100..=163).contains(s)), "{shards:?}");

    let mut held = sqlx::Connection::begin(&mut holder).await.unwrap();
    sqlx::query("UPDATE lookups SET status = 'processing' WHERE email = 'shard0@example.com'")
        .execute(&mut *held)
        .await
        .unwrap();
    sqlx::query("SET lock_timeout = '2s'")
        .execute(&mut writer)
        .await
        .unwrap();
    for i in 1..=50 {
        sqlx::query("UPDATE lookups SET status = 'processing' WHERE email = $1")
            .bind(format!("shard{i}@example.com"))
            .execute(&mut writer)
            .await
            .unwrap_or_else(|e| panic!("change {i} waited for the held transaction: {e}"));
    }
    held.commit().await.unwrap();
    let processing: i64 = sqlx::query_scalar(
        "SELECT sum(lookups)::bigint FROM lookup_totals WHERE status = 'processing'",
    )
    .fetch_one(&db)
    .await
    .unwrap();
    assert_eq!(processing, 51);
}

#[sqlx::test]
async fn the_service_pool_claims_distinct_shards_and_a_closed_connection_frees_its_own(db: PgPool) {
    interests_receiver::store::migrate(&db).await.unwrap();
    let url = db.connect_options().to_url_lossy().to_string();
    let pool = interests_receiver::store::connect(&url, 4).await.unwrap();
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(pool.acquire().await.unwrap());
    }
    let mut shards = Vec::new();
    for c in &mut held {
        let shard: String =
            sqlx::query_scalar("SELECT current_setting('interests_receiver.kept_shard')")
                .fetch_one(&mut **c)
                .await
                .unwrap();
        shards.push(shard);
    }
    shards.sort();
    assert_eq!(shards, ["100", "101", "102", "103"]);
    // A connection that goes gives its shard back (its backend ends, and
    // with it the session lock; that takes a moment after the close).
    let mut gone = held.remove(0).detach();
    let freed: String = sqlx::query_scalar("SELECT kept_total_shard()::text")
        .fetch_one(&mut gone)
        .await
        .unwrap();
    gone.close().await.unwrap();
    for attempt in 0.. {
        let mut next = PgConnection::connect(&url).await.unwrap();
        interests_receiver::store::claim_kept_shard(&mut next)
            .await
            .unwrap();
        let claimed: String = sqlx::query_scalar("SELECT kept_total_shard()::text")
            .fetch_one(&mut next)
            .await
            .unwrap();
        if claimed == freed {
            break;
        }
        assert!(
            attempt < 50,
            "the freed shard {freed} was not claimed again"
        );
        next.close().await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
