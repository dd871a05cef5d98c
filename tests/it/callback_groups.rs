//! Deliveries applied in groups (`callbacks::applier`): every request gets
//! the outcome of its own delivery, whatever else shared its group, and a
//! group that fails costs the others nothing.
//!
//! The group is made deterministic: the only applier is held on a lookup's
//! row lock (an open transaction of the test) while the other deliveries
//! queue behind it, so they all go in one group once the lock is released.

use std::time::Duration;

use serde_json::{Value, json};
use sqlx::PgPool;

use crate::common::{completed_for, wait_for_lock_waiters};
use interests_receiver::callbacks::applier::{Applier, Ready};
use interests_receiver::lifecycle::Outcome;
use interests_receiver::token::sha256_hex;
use interests_receiver::upstream::payload::parse_job;

/// `n` queued lookups `g0..`, request_ids `rid-g0..`; their ids in order.
async fn queued(db: &PgPool, n: i32) -> Vec<uuid::Uuid> {
    interests_receiver::store::migrate(db).await.unwrap();
    sqlx::query_scalar(
        "INSERT INTO lookups (id, status, email, subject_key, request_id, submitted_at) \
         SELECT gen_random_uuid(), 'queued', 'g' || i || '@example.com', 'g-' || i, \
                'rid-g' || i, now() \
         FROM generate_series(0, $1 - 1) i RETURNING id",
    )
    .bind(n)
    .fetch_all(db)
    .await
    .unwrap()
}

fn ready(lookup_id: uuid::Uuid, body: Value) -> Ready {
    let bytes = serde_json::to_vec(&body).unwrap();
    Ready {
        lookup_id,
        update: parse_job(&body).unwrap(),
        body_sha256: sha256_hex(&bytes),
        body,
    }
}

/// Holds lookup `id`'s row lock until the returned transaction ends.
async fn hold(db: &PgPool, id: uuid::Uuid) -> sqlx::Transaction<'static, sqlx::Postgres> {
    let mut tx = db.begin().await.unwrap();
    sqlx::query("SELECT 1 FROM lookups WHERE id = $1 FOR UPDATE")
        .bind(id)
        .execute(&mut *tx)
        .await
        .unwrap();
    tx
}

/// Applies `queued` through an applier whose only task is first held on
/// lookup `first` (a row lock of the test, released once all of `queued`
/// wait on the queue, in their order), so that they go as one group; the
/// answers, in the order of `queued`.
async fn as_one_group(
    db: &PgPool,
    first: uuid::Uuid,
    queued: Vec<Ready>,
) -> Vec<sqlx::Result<Outcome>> {
    // One applier: a pool of 2 connections.
    let applier = Applier::start(db.clone(), 2);
    let held = hold(db, first).await;
    let alone = tokio::spawn({
        let applier = applier.clone();
        let r = ready(first, completed_for("rid-g0"));
        async move { applier.apply(r).await }
    });
    wait_for_lock_waiters(db, 1).await;
    let mut answers = Vec::new();
    for r in queued {
        let applier = applier.clone();
        answers.push(tokio::spawn(async move { applier.apply(r).await }));
        // In this order on the queue.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    held.commit().await.unwrap();
    assert_eq!(alone.await.unwrap().unwrap(), Outcome::Applied);
    let mut results = Vec::new();
    for a in answers {
        let answer = tokio::time::timeout(Duration::from_secs(30), a)
            .await
            .expect("the group waited for a held lock without end");
        results.push(answer.unwrap());
    }
    results
}

/// Completed results for lookups `ids[1..]`, each with its own request_id.
fn first_results(ids: &[uuid::Uuid]) -> Vec<Ready> {
    ids.iter()
        .enumerate()
        .skip(1)
        .map(|(i, id)| ready(*id, completed_for(&format!("rid-g{i}"))))
        .collect()
}

#[sqlx::test]
async fn every_delivery_of_a_group_gets_its_own_outcome(db: PgPool) {
    let ids = queued(&db, 6).await;
    // Queued behind lookup 0, to go together: first results for 1..4, the
    // same result of lookup 1 again (a duplicate inside the group), a late
    // `processing` for lookup 2, lookup 5's request_id sent to lookup 3's
    // callback (refused), and a failure for lookup 4.
    let mut failed = completed_for("rid-g4");
    failed["data"] = json!({"request_id": "rid-g4", "status": "failed", "error": "no data"});
    let queued = vec![
        ready(ids[1], completed_for("rid-g1")),
        ready(ids[2], completed_for("rid-g2")),
        ready(ids[1], completed_for("rid-g1")),
        ready(
            ids[2],
            json!({"data": {"request_id": "rid-g2", "status": "processing"}}),
        ),
        ready(ids[3], completed_for("rid-g5")),
        ready(ids[4], failed),
    ];
    let outcomes: Vec<Outcome> = as_one_group(&db, ids[0], queued)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert_eq!(
        outcomes,
        [
            Outcome::Applied,
            Outcome::Applied,
            Outcome::Duplicate,
            Outcome::Duplicate,
            Outcome::Refused("request_id belongs to another lookup".into()),
            Outcome::Applied,
        ]
    );
    let statuses: Vec<(String, i64)> =
        sqlx::query_as("SELECT status, count(*) FROM lookups GROUP BY status ORDER BY status")
            .fetch_all(&db)
            .await
            .unwrap();
    assert_eq!(
        statuses,
        [
            ("completed".to_owned(), 3),
            ("failed".to_owned(), 1),
            ("queued".to_owned(), 2)
        ]
    );
    let profiles: i64 = sqlx::query_scalar("SELECT count(*) FROM profiles")
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(profiles, 3, "one profile per completed lookup");
    let recorded: Vec<(String, String)> =
        sqlx::query_as("SELECT request_id, outcome FROM deliveries ORDER BY id")
            .fetch_all(&db)
            .await
            .unwrap();
    assert_eq!(recorded.len(), 7, "every delivery recorded: {recorded:?}");
    // The six queued ones went in one transaction: two in all.
    let transactions: i64 = sqlx::query_scalar("SELECT count(DISTINCT xmin::text) FROM deliveries")
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(transactions, 2, "the queued deliveries were not one group");
    assert_eq!(
        recorded.iter().filter(|(_, o)| o == "duplicate").count(),
        2,
        "{recorded:?}"
    );
    // Lookup 5 never received its own result: nothing of it was applied.
    let lookup5: String = sqlx::query_scalar("SELECT status FROM lookups WHERE id = $1")
        .bind(ids[5])
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(lookup5, "queued");
}

#[sqlx::test]
async fn a_group_that_fails_is_applied_one_by_one_and_only_the_bad_delivery_fails(db: PgPool) {
    let ids = queued(&db, 4).await;
    // A delivery the database refuses (a trigger of the test stands in for
    // whatever makes one statement fail): it must fail alone.
    sqlx::query(
        "CREATE FUNCTION refuse_boom() RETURNS trigger LANGUAGE plpgsql AS $$ \
         BEGIN IF NEW.request_id = 'rid-g2' THEN RAISE EXCEPTION 'boom'; END IF; RETURN NEW; END $$",
    )
    .execute(&db)
    .await
    .unwrap();
    sqlx::query(
        "CREATE TRIGGER refuse_boom BEFORE INSERT ON deliveries \
         FOR EACH ROW EXECUTE FUNCTION refuse_boom()",
    )
    .execute(&db)
    .await
    .unwrap();
    let results = as_one_group(&db, ids[0], first_results(&ids)).await;
    assert_eq!(results[0].as_ref().unwrap(), &Outcome::Applied);
    let err = results[1].as_ref().unwrap_err().to_string();
    assert!(err.contains("boom"), "{err}");
    assert_eq!(results[2].as_ref().unwrap(), &Outcome::Applied);
    let statuses = statuses_of(&db, &ids).await;
    assert_eq!(statuses, ["completed", "completed", "queued", "completed"]);
}

/// The statuses of lookups `ids`, in their order.
async fn statuses_of(db: &PgPool, ids: &[uuid::Uuid]) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT status FROM lookups WHERE id = ANY($1) ORDER BY array_position($1, id)",
    )
    .bind(ids)
    .fetch_all(db)
    .await
    .unwrap()
}

#[sqlx::test]
async fn a_delivery_never_waits_for_the_sequencer_placing_an_earlier_event(db: PgPool) {
    // The sequencer's insert of events checks their lookups' foreign key,
    // which locks each lookup KEY SHARE until its batch commits, in inbox
    // order; a group locks its lookups in id order. Were a delivery's lock
    // to conflict with KEY SHARE, the two would deadlock; it must not.
    let ids = queued(&db, 2).await;
    let mut placing = db.begin().await.unwrap();
    sqlx::query("SELECT 1 FROM lookups WHERE id = ANY($1) FOR KEY SHARE")
        .bind(&ids)
        .execute(&mut *placing)
        .await
        .unwrap();
    let mut conn = db.acquire().await.unwrap();
    sqlx::query("SET lock_timeout = '2s'")
        .execute(&mut *conn)
        .await
        .unwrap();
    let mut tx = sqlx::Connection::begin(&mut *conn).await.unwrap();
    let received: Vec<Ready> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| ready(*id, completed_for(&format!("rid-g{i}"))))
        .collect();
    let group: Vec<_> = received.iter().map(Ready::received).collect();
    let outcomes = interests_receiver::store::results::apply_deliveries(&mut tx, &group)
        .await
        .expect("the group waited for the KEY SHARE locks");
    assert_eq!(outcomes, [Outcome::Applied, Outcome::Applied]);
    tx.commit().await.unwrap();
    placing.commit().await.unwrap();
}

#[sqlx::test]
async fn a_delivery_stuck_behind_a_lock_fails_alone_and_its_group_is_applied(db: PgPool) {
    // A group waits for its slowest lookup lock only up to the applier's
    // lock timeout (5 s); then it is applied one by one, and only the
    // delivery whose lookup is still held fails (upstream retries it).
    let ids = queued(&db, 4).await;
    let stuck = hold(&db, ids[1]).await;
    let results = as_one_group(&db, ids[0], first_results(&ids)).await;
    let err = results[0].as_ref().unwrap_err().to_string();
    assert!(err.contains("lock timeout"), "{err}");
    assert_eq!(results[1].as_ref().unwrap(), &Outcome::Applied);
    assert_eq!(results[2].as_ref().unwrap(), &Outcome::Applied);
    stuck.commit().await.unwrap();
    let statuses = statuses_of(&db, &ids).await;
    assert_eq!(statuses, ["completed", "queued", "completed", "completed"]);
}
