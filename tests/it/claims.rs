//! Work-queue claims (contract section 7, issue "outcome writes check who
//! holds the lease"): one claim leases exactly one row, and every write
//! after a claim proves it still owns it, so a worker whose lease ran out
//! can neither overwrite the outcome nor clear its successor's lease.

use std::time::Duration;

use crate::common::{Settings, TestApp, accepting_upstream, spawn};
use interests_receiver::app::Options;
use interests_receiver::lifecycle::LookupStatus;
use interests_receiver::store::work;
use serde_json::json;
use sqlx::PgPool;
use uuid::Uuid;

/// Two due lookups, `first` created first but sorted after `second`, whose
/// rows lie in the table in the opposite order of the queue's.
async fn two_due_lookups(db: PgPool, status: &str) -> (TestApp, String, String) {
    let mut settings = Settings::with_upstream_url("http://127.0.0.1:9".parse().unwrap());
    settings.options.run_workers = false;
    let app = spawn(db, settings).await;
    let first = app.create(&json!({"email": "pat@example.com"})).await;
    let second = app.create(&json!({"email": "quinn@example.com"})).await;
    sqlx::query(
        "UPDATE lookups SET next_action_at = now() - interval '2 seconds' WHERE id = $1::uuid",
    )
    .bind(&second)
    .execute(&app.db)
    .await
    .unwrap();
    // Rewriting the first row moves it behind the second in the heap.
    sqlx::query(
        "UPDATE lookups SET next_action_at = now() - interval '1 second' WHERE id = $1::uuid",
    )
    .bind(&first)
    .execute(&app.db)
    .await
    .unwrap();
    if status != "pending" {
        sqlx::query(
            "UPDATE lookups SET status = $1, request_id = md5(id::text) || '_1717000000_1', \
               submitted_at = now()",
        )
        .bind(status)
        .execute(&app.db)
        .await
        .unwrap();
    }
    (app, first, second)
}

async fn leased(app: &TestApp) -> Vec<String> {
    sqlx::query_scalar("SELECT id::text FROM lookups WHERE lease_owner IS NOT NULL ORDER BY id")
        .fetch_all(&app.db)
        .await
        .unwrap()
}

#[sqlx::test]
async fn one_submit_claim_leases_exactly_the_most_urgent_lookup(db: PgPool) {
    let (app, _first, second) = two_due_lookups(db, "pending").await;

    let claim = until_claimed(
        || {
            interests_receiver::store::work::claim_submit(
                &app.db,
                uuid::Uuid::new_v4(),
                Duration::from_secs(5),
            )
        },
        "a due lookup is claimed",
    )
    .await;

    assert_eq!(claim.id.to_string(), second);
    // A second leased row would never be sent: its claim was dropped, its
    // lease runs out and it is then taken for an ambiguous submit.
    assert_eq!(leased(&app).await, vec![second.clone()]);
    assert_eq!(
        app.count("SELECT count(*) FROM lookups WHERE submit_attempts > 0")
            .await,
        1
    );
    app.stop().await;
}

#[sqlx::test]
async fn new_lookups_are_claimed_before_the_services_refreshes(db: PgPool) {
    // `second` is the more urgent one, but a refresh made by the service.
    let (app, first, second) = two_due_lookups(db, "pending").await;
    sqlx::query("UPDATE lookups SET refresh = true WHERE id = $1::uuid")
        .bind(&second)
        .execute(&app.db)
        .await
        .unwrap();
    let mut order = Vec::new();
    for _ in 0..2 {
        let claim = until_claimed(
            || work::claim_submit(&app.db, Uuid::new_v4(), Duration::from_secs(5)),
            "a due lookup is claimed",
        )
        .await;
        order.push(claim.id.to_string());
    }
    assert_eq!(order, [first, second]);
    app.stop().await;
}

#[sqlx::test]
async fn one_poll_claim_leases_exactly_the_most_urgent_job(db: PgPool) {
    let (app, _first, second) = two_due_lookups(db, "queued").await;

    let claim = until_claimed(
        || {
            interests_receiver::store::work::claim_poll(
                &app.db,
                uuid::Uuid::new_v4(),
                Duration::from_secs(5),
            )
        },
        "a due job is claimed",
    )
    .await;

    assert_eq!(claim.id.to_string(), second);
    assert_eq!(leased(&app).await, vec![second.clone()]);
    app.stop().await;
}

/// An app with no workers of its own (the test plays the workers), and one
/// lookup, accepted upstream as `queued`, due for a poll.
async fn one_due_job(db: PgPool) -> (TestApp, Uuid) {
    let upstream = accepting_upstream().await;
    let mut settings = Settings::with_upstream_url(upstream.uri().parse().unwrap());
    settings.options = Options {
        run_workers: false,
        ..Options::default()
    };
    let app = spawn(db, settings).await;
    let created: serde_json::Value = app
        .post_lookup(&json!({"email": "lease@example.com"}))
        .await
        .json()
        .await
        .unwrap();
    let id: Uuid = created["id"].as_str().unwrap().parse().unwrap();
    sqlx::query(
        "UPDATE lookups SET status = 'queued', request_id = 'r_1717000000_1', \
           submitted_at = now(), next_action_at = now() - interval '1 second' WHERE id = $1",
    )
    .bind(id)
    .execute(&app.db)
    .await
    .unwrap();
    (app, id)
}

async fn lease_of(app: &TestApp, id: Uuid) -> (Option<Uuid>, String) {
    sqlx::query_as("SELECT lease_owner, status FROM lookups WHERE id = $1")
        .bind(id)
        .fetch_one(&app.db)
        .await
        .unwrap()
}

#[sqlx::test]
async fn a_worker_whose_lease_ran_out_cannot_overwrite_its_successors_job(db: PgPool) {
    let (app, id) = one_due_job(db).await;
    let (slow, fast) = (Uuid::new_v4(), Uuid::new_v4());
    let stale = until_claimed(
        || work::claim_poll(&app.db, slow, Duration::from_millis(50)),
        "due job claimed",
    )
    .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let current = until_claimed(
        || work::claim_poll(&app.db, fast, Duration::from_secs(60)),
        "a job whose lease ran out is taken over",
    )
    .await;
    assert_eq!(current.id, id);

    // The stalled worker comes back with an outdated answer.
    let owned = work::poll_not_found(&app.db, stale.claim(), "request_not_found")
        .await
        .unwrap();
    let retried = work::poll_retry(&app.db, stale.claim(), chrono::Utc::now())
        .await
        .unwrap();

    assert!(!owned && !retried, "a stale claim's writes must be refused");
    assert_eq!(lease_of(&app, id).await, (Some(fast), "queued".into()));
    // The current owner's write goes through.
    let owned = work::poll_running(
        &app.db,
        current.claim(),
        LookupStatus::Processing,
        chrono::Utc::now(),
    )
    .await
    .unwrap();
    assert!(owned);
    assert_eq!(lease_of(&app, id).await, (None, "processing".into()));
    app.stop().await;
}

#[sqlx::test]
async fn a_submit_answer_after_recovery_still_records_its_request_id(db: PgPool) {
    let (app, id) = one_due_job(db).await;
    sqlx::query("UPDATE lookups SET status = 'pending', request_id = NULL WHERE id = $1")
        .bind(id)
        .execute(&app.db)
        .await
        .unwrap();
    let stale = until_claimed(
        || work::claim_submit(&app.db, Uuid::new_v4(), Duration::from_millis(50)),
        "due lookup claimed",
    )
    .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    // Maintenance saw the lease run out with the submit in flight.
    let recovered = work::recover_abandoned_submits(&app.db, Some(Duration::from_secs(3600)))
        .await
        .unwrap();
    assert_eq!(recovered, 1);

    // A refusal from the stale claim is not written: the row stays
    // waiting as ambiguous, which is the safe side.
    let owned = work::submit_not_accepted(&app.db, stale.claim(), chrono::Utc::now())
        .await
        .unwrap();
    assert!(!owned);
    // But an acceptance is the proof that stops a second payment: it is
    // kept while nobody else is submitting the lookup.
    work::submit_accepted(
        &app.db,
        stale.claim(),
        "late_1717000000_2",
        Duration::from_secs(600),
    )
    .await
    .unwrap();
    let (status, request_id): (String, Option<String>) =
        sqlx::query_as("SELECT status, request_id FROM lookups WHERE id = $1")
            .bind(id)
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert_eq!(
        (status.as_str(), request_id.as_deref()),
        ("queued", Some("late_1717000000_2"))
    );
    app.stop().await;
}

/// Claims with `claim` until it returns a row. A claim skips rows another
/// transaction holds for a moment (`FOR UPDATE SKIP LOCKED`: the event
/// sequencer's foreign-key check takes a share lock on the lookup while it
/// places the lookup's event); a worker simply takes it on its next round.
async fn until_claimed<T, F, Fut>(claim: F, what: &str) -> T
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = sqlx::Result<Option<T>>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(claimed) = claim().await.unwrap() {
            return claimed;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: nothing claimable"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
