//! The lifecycle's forward-only rule (`LookupStatus::may_become`) is the
//! rule the schema's `apply_job_update` applies: every status a lookup can
//! be in, against every state upstream can report.

use crate::common::insert_pending_of;
use interests_receiver::lifecycle::{JobState, JobUpdate, LookupStatus, Outcome};
use interests_receiver::store::lookups;
use interests_receiver::store::results;
use serde_json::json;
use sqlx::PgPool;
use uuid::Uuid;

/// A lookup of its own person, moved straight to `status`.
async fn lookup_in(db: &PgPool, status: LookupStatus, n: usize) -> (Uuid, String) {
    let mut conn = db.acquire().await.unwrap();
    let id = insert_pending_of(&mut conn, &format!("person-{n}@example.com")).await;
    let request_id = format!("req-{n}");
    sqlx::query("UPDATE lookups SET status = $2, request_id = $3 WHERE id = $1")
        .bind(id)
        .bind(status)
        .bind(&request_id)
        .execute(db)
        .await
        .unwrap();
    (id, request_id)
}

#[sqlx::test]
async fn the_schema_moves_a_lookup_exactly_when_the_lifecycle_says_it_may(db: PgPool) {
    let reports = [
        JobState::Queued,
        JobState::Processing,
        JobState::Completed {
            result: json!({"brands": [{"name": "Acme"}]}),
            completed_on: None,
            credits: 5,
        },
        JobState::Failed { error: "no".into() },
    ];
    let mut n = 0;
    for from in LookupStatus::ALL {
        for state in &reports {
            n += 1;
            let (id, request_id) = lookup_in(&db, from, n).await;
            let update = JobUpdate {
                request_id,
                state: state.clone(),
            };
            let mut tx = db.begin().await.unwrap();
            let outcome = results::apply(&mut tx, id, &update).await.unwrap();
            tx.commit().await.unwrap();
            let now: LookupStatus = sqlx::query_scalar("SELECT status FROM lookups WHERE id = $1")
                .bind(id)
                .fetch_one(&db)
                .await
                .unwrap();
            let allowed = from.may_become(update.status());
            assert_eq!(
                outcome == Outcome::Applied,
                allowed,
                "{from} reported as {}: {outcome:?}",
                update.status()
            );
            let expected = if allowed { update.status() } else { from };
            assert_eq!(now, expected, "{from} reported as {}", update.status());
        }
    }
}

#[sqlx::test]
async fn the_budget_counts_exactly_the_lookups_the_lifecycle_calls_in_flight(db: PgPool) {
    // `credits_committed_today` (SQL) spells the in-flight statuses itself;
    // a lookup in each status shows it spells them as `LookupStatus` does.
    for (n, status) in LookupStatus::ALL.into_iter().enumerate() {
        lookup_in(&db, status, n).await;
    }
    let in_flight = LookupStatus::ALL
        .into_iter()
        .filter(|s| s.is_in_flight())
        .count();
    let mut conn = db.acquire().await.unwrap();

    let committed = lookups::credits_committed_today(&mut conn, 5, false)
        .await
        .unwrap();
    // The service's refreshes have a budget of their own, counted apart
    // (with a status list of its own in the SQL).
    sqlx::query("UPDATE lookups SET refresh = true")
        .execute(&db)
        .await
        .unwrap();
    let refreshes = lookups::credits_committed_today(&mut conn, 5, true)
        .await
        .unwrap();
    let others = lookups::credits_committed_today(&mut conn, 5, false)
        .await
        .unwrap();

    assert_eq!(committed, 5 * in_flight as i64);
    assert_eq!(refreshes, 5 * in_flight as i64);
    assert_eq!(others, 0);
}
