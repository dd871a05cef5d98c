//! Pacing of upstream calls against the built-in simulator, whose rate
//! limit is the app's own over the same (scaled) windows: the app must
//! stay under it on its own, put submits before polls, and honour a 429.

use crate::common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use std::sync::{Arc, Mutex};

use crate::common::{Settings, TestApp, spawn};
use futures::future::join_all;
use serde_json::{Value, json};
use sqlx::PgPool;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

/// The simulator's minute at time scale 0.01; the app's pacing minute is
/// set to the same length.
const MINUTE: Duration = Duration::from_millis(600);

fn paced(rate_per_minute: u32) -> Settings {
    let mut settings = Settings::sandbox();
    settings.rate_per_minute = rate_per_minute;
    settings.rate_per_hour = 100_000;
    settings.options.pacing_minute = MINUTE;
    settings
}

/// Creates one lookup per body, `batch` requests at a time; returns ids.
async fn create_all(app: &TestApp, bodies: Vec<Value>, batch: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for chunk in bodies.chunks(batch) {
        let responses = join_all(chunk.iter().map(|b| app.post_lookup(b))).await;
        for response in responses {
            assert_eq!(response.status(), 202);
            let created: Value = response.json().await.unwrap();
            ids.push(created["id"].as_str().unwrap().to_owned());
        }
    }
    ids
}

/// Waits until `n` lookups are completed.
async fn wait_for_completed(app: &TestApp, n: i64, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let done = app
            .count("SELECT count(*) FROM lookups WHERE status = 'completed'")
            .await;
        if done >= n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{done} of {n} lookups completed in {timeout:?}: {}",
            queue_summary(app).await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// (status, lookups, ambiguous submits, submit attempts) per status, for
/// failure messages.
async fn queue_summary(app: &TestApp) -> String {
    let states: Vec<(String, i64, i64, i64)> = sqlx::query_as(
        "SELECT status, count(*), sum(ambiguous_submits), sum(submit_attempts) \
         FROM lookups GROUP BY status ORDER BY status",
    )
    .fetch_all(&app.db)
    .await
    .unwrap();
    format!("(status, lookups, ambiguous submits, submit attempts): {states:?}")
}

/// The most upstream calls the ledger holds within any window of `window`.
async fn busiest_window(app: &TestApp, window: Duration) -> i64 {
    sqlx::query_scalar(
        "SELECT COALESCE(max(n), 0) FROM ( \
           SELECT (SELECT count(*) FROM upstream_calls b \
                   WHERE b.at >= a.at AND b.at < a.at + make_interval(secs => $1)) AS n \
           FROM upstream_calls a) w",
    )
    .bind(window.as_secs_f64())
    .fetch_one(&app.db)
    .await
    .unwrap()
}

/// The most of `times` (sorted) within any window of `window`.
fn busiest(times: &[Instant], window: Duration) -> usize {
    (0..times.len())
        .map(|i| {
            times[i..]
                .iter()
                .take_while(|t| t.duration_since(times[i]) < window)
                .count()
        })
        .max()
        .unwrap_or(0)
}

#[sqlx::test]
async fn the_own_rate_ceiling_holds_when_upstream_sends_no_rate_hints(db: PgPool) {
    // An upstream that accepts everything and never says to slow down:
    // only the service's own pacer keeps it under UPSTREAM_RATE_PER_MINUTE.
    let upstream = MockServer::start().await;
    let arrivals = Arc::new(Mutex::new(Vec::new()));
    let seen = arrivals.clone();
    Mock::given(method("POST"))
        .and(path("/person/interests"))
        .respond_with(move |_: &Request| {
            seen.lock().unwrap().push(Instant::now());
            ResponseTemplate::new(202).set_body_json(json!({
                "success": true,
                "data": {"request_id": common::new_request_id(), "status": "queued"},
                "timestamp": "2026-01-15T10:30:00"
            }))
        })
        .mount(&upstream)
        .await;
    let mut settings = Settings::with_upstream_url(upstream.uri().parse().unwrap());
    settings.rate_per_minute = 20;
    settings.options.pacing_minute = MINUTE;
    let app = spawn(db, settings).await;
    let bodies = (0..100)
        .map(|i| json!({"email": format!("quick{i}@example.com")}))
        .collect();

    create_all(&app, bodies, 100).await;
    let deadline = Instant::now() + Duration::from_secs(15);
    while app
        .count("SELECT count(*) FROM lookups WHERE status = 'queued'")
        .await
        < 100
    {
        assert!(
            Instant::now() < deadline,
            "not all lookups were submitted: {}",
            queue_summary(&app).await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let times = arrivals.lock().unwrap().clone();
    assert_eq!(times.len(), 100);
    let most = busiest(&times, MINUTE);
    assert!(most <= 20, "{most} submits arrived within one minute");
    assert!(busiest_window(&app, MINUTE).await <= 20);
    app.stop().await;
}

#[sqlx::test]
async fn a_burst_of_300_lookups_stays_under_the_rate_limit_and_each_person_is_paid_once(
    db: PgPool,
) {
    let app = spawn(db, paced(30)).await;
    let bodies = (0..300)
        .map(|i| json!({"email": format!("person{i}@example.com")}))
        .collect();

    create_all(&app, bodies, 50).await;
    // The deadline only detects a stall: the wait ends when all are done.
    wait_for_completed(&app, 300, Duration::from_secs(120)).await;

    let stats = app.sandbox_json("stats").await;
    assert_eq!(stats["rate_limited"], 0, "{stats}");
    assert_eq!(stats["submits_accepted"], 300, "{stats}");
    assert_eq!(stats["submits_refused"], 0, "{stats}");
    assert_eq!(stats["credits_charged"], 1500, "{stats}");
    let jobs = app.sandbox_json("jobs").await;
    let jobs = jobs.as_array().unwrap();
    let subjects: HashSet<String> = jobs
        .iter()
        .map(|j| j["subject"]["email"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(jobs.len(), 300);
    assert_eq!(subjects.len(), 300);
    assert_eq!(
        app.count("SELECT COALESCE(sum(credits_charged), 0) FROM lookups")
            .await,
        1500
    );
    assert_eq!(
        app.count("SELECT count(*) FROM lookups WHERE credits_charged = 5")
            .await,
        300
    );
    assert_eq!(
        app.count("SELECT count(*) FROM upstream_calls WHERE kind = 'submit'")
            .await,
        300
    );
    let busiest = busiest_window(&app, MINUTE).await;
    assert!(busiest <= 30, "{busiest} upstream calls within one minute");
    app.stop().await;
}

#[sqlx::test]
async fn due_submits_go_upstream_before_due_polls(db: PgPool) {
    const N: usize = 20;
    let mut settings = paced(5);
    settings.poll_after = Duration::from_secs(1);
    let app = spawn(db, settings).await;
    // No callbacks: every job is finished by one poll, due 1 s after its
    // submit, while the backlog of submits takes several seconds.
    let bodies = (0..N)
        .map(|i| json!({"email": format!("p{i}+sandbox-no-callback@example.com")}))
        .collect();

    create_all(&app, bodies, N).await;
    wait_for_completed(&app, N as i64, Duration::from_secs(20)).await;

    let kinds: Vec<Option<String>> =
        sqlx::query_scalar("SELECT kind FROM upstream_calls ORDER BY id")
            .fetch_all(&app.db)
            .await
            .unwrap();
    // No poll went out while a submit was waiting: the submits made after
    // any poll were all of lookups created after it (100 ms before it, for
    // the claim's own moment); each lookup is submitted once (below).
    // Asserted per poll, so it holds however slowly the lookups were
    // created under load.
    let polls_before_waiting_submits: Vec<(i64, i64, i64)> = sqlx::query_as(
        "SELECT id, later_submits, created_later FROM ( \
           SELECT p.id, \
             (SELECT count(*) FROM upstream_calls s WHERE s.kind = 'submit' AND s.id > p.id) \
               AS later_submits, \
             (SELECT count(*) FROM lookups l WHERE l.created_at >= p.at - interval '100 milliseconds') \
               AS created_later \
           FROM upstream_calls p WHERE p.kind = 'poll') c \
         WHERE later_submits > created_later ORDER BY id",
    )
    .fetch_all(&app.db)
    .await
    .unwrap();
    assert!(
        polls_before_waiting_submits.is_empty(),
        "(poll, submits after it, lookups created after it) for polls made while submits \
         waited: {polls_before_waiting_submits:?}; calls: {kinds:?}"
    );
    // Polls were due while submits were still going out.
    let overlapped: bool = sqlx::query_scalar(
        "SELECT (SELECT min(submitted_at) FROM lookups) + interval '1 second' \
              < (SELECT max(at) FROM upstream_calls WHERE kind = 'submit')",
    )
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert!(overlapped, "no poll was due before the last submit");
    assert_eq!(
        kinds
            .iter()
            .filter(|k| k.as_deref() == Some("submit"))
            .count(),
        N
    );
    assert_eq!(
        app.count("SELECT count(*) FROM profiles WHERE received_via = 'poll'")
            .await,
        N as i64
    );
    let stats = app.sandbox_json("stats").await;
    assert_eq!(stats["rate_limited"], 0, "{stats}");
    app.stop().await;
}

#[sqlx::test]
async fn a_429_from_upstream_pauses_and_the_lookup_is_then_accepted_once(db: PgPool) {
    let app = spawn(db, paced(6000)).await;
    let email = "rae+sandbox-rate-limit@example.com";

    let created: Value = app
        .post_lookup(&json!({"email": email}))
        .await
        .json()
        .await
        .unwrap();
    let id = created["id"].as_str().unwrap();
    let done = app
        .wait_for_status(id, "completed", Duration::from_secs(10))
        .await;

    assert_eq!(done["credits_charged"], 5);
    let stats = app.sandbox_json("stats").await;
    assert_eq!(stats["rate_limited"], 1, "{stats}");
    assert_eq!(stats["submits_refused"], 1, "{stats}");
    assert_eq!(stats["submits_accepted"], 1, "{stats}");
    let jobs = app.sandbox_json("jobs").await;
    let for_rae: Vec<&Value> = jobs
        .as_array()
        .unwrap()
        .iter()
        .filter(|j| j["subject"]["email"] == email)
        .collect();
    assert_eq!(for_rae.len(), 1, "{jobs}");
    assert_eq!(done["request_id"], for_rae[0]["request_id"]);
    let attempts: i32 =
        sqlx::query_scalar("SELECT submit_attempts FROM lookups WHERE id = $1::uuid")
            .bind(id)
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert_eq!(attempts, 2);
    // Upstream saw the pause: its 429 asked for 1 s (Retry-After: 1), and
    // the next request it received came no sooner.
    let refused_at: chrono::DateTime<chrono::Utc> =
        serde_json::from_value(stats["last_rate_limited_at"].clone()).unwrap();
    let accepted_at: chrono::DateTime<chrono::Utc> =
        serde_json::from_value(for_rae[0]["accepted_at"].clone()).unwrap();
    let gap = accepted_at - refused_at;
    assert!(
        gap >= chrono::Duration::seconds(1),
        "upstream's next request came {gap} after its 429 asked for 1 s"
    );
    app.stop().await;
}

#[sqlx::test]
async fn no_upstream_slot_is_taken_once_shutdown_began(db: PgPool) {
    use interests_receiver::store::pacing::Limits;
    use interests_receiver::upstream::Pacer;
    interests_receiver::store::migrate(&db).await.unwrap();
    let pacer = Pacer::new(
        db.clone(),
        Limits {
            per_minute: 60,
            per_hour: 1000,
            minute: Duration::from_secs(60),
            hour: Duration::from_secs(3600),
            in_flight: Duration::from_secs(35),
        },
    );
    let shutdown = tokio_util::sync::CancellationToken::new();
    shutdown.cancel();

    let slot = pacer.acquire(&shutdown).await;

    assert!(slot.is_none(), "a slot was granted after shutdown began");
    let reserved: i64 = sqlx::query_scalar("SELECT count(*) FROM upstream_calls")
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(reserved, 0);
}

#[sqlx::test]
async fn two_replicas_share_one_rate_limit(db: PgPool) {
    // Each replica alone would allow 20 calls per minute; together they
    // must stay under 20, not 40: the ledger is in PostgreSQL.
    let a = spawn(db.clone(), paced(20)).await;
    let b = spawn(db, paced(20)).await;
    let bodies = |prefix: &str| {
        (0..30)
            .map(|i| json!({"email": format!("{prefix}{i}@example.com")}))
            .collect::<Vec<_>>()
    };
    let (left, right) = tokio::join!(
        create_all(&a, bodies("left"), 30),
        create_all(&b, bodies("right"), 30)
    );
    assert_eq!(left.len() + right.len(), 60);
    // The deadline only detects a stall: 60 calls at 20 per MINUTE take
    // about 3 MINUTEs (under 2 s); the wait ends as soon as all are done.
    wait_for_completed(&a, 60, Duration::from_secs(120)).await;

    let busiest = busiest_window(&a, MINUTE).await;
    assert!(busiest <= 20, "{busiest} upstream calls within one minute");
    let submits = a
        .count("SELECT count(*) FROM upstream_calls WHERE kind = 'submit'")
        .await;
    assert_eq!(submits, 60);
    // Both replicas submitted (each through its own simulator): the limit
    // was shared by two working replicas, not met by one idle one.
    for app in [&a, &b] {
        let stats = app.sandbox_json("stats").await;
        assert_eq!(stats["rate_limited"], 0, "{stats}");
        assert!(stats["submits_accepted"].as_i64().unwrap() > 0, "{stats}");
    }
    a.stop().await;
    b.stop().await;
}

#[sqlx::test]
async fn a_reserved_call_counts_until_it_can_no_longer_reach_upstream(db: PgPool) {
    // Upstream counts a call from when it arrives. A call reserved and then
    // delayed on its way out (a stalled task, a slow connect) may arrive a
    // whole window after its reservation; until it is recorded it must keep
    // its slot, or the next window would let one call too many through.
    use interests_receiver::store::pacing::{self, Reservation};
    interests_receiver::store::migrate(&db).await.unwrap();
    let limits = one_call_per_200_ms(Duration::from_secs(3));
    let Reservation::Granted(stalled) = pacing::reserve(&db, limits).await.unwrap() else {
        panic!("the first slot of an empty ledger was refused");
    };
    let reserved = Instant::now();
    tokio::time::sleep(limits.minute * 2).await;

    // Two windows later, the call is still on its way: no slot.
    let second = pacing::reserve(&db, limits).await.unwrap();
    assert!(
        matches!(second, Reservation::Wait(_)),
        "a slot was granted while the call reserved {:?} ago could still reach upstream: {second:?}",
        reserved.elapsed()
    );

    // Answered now: it counts for a window from its answer, then frees.
    pacing::record(&db, stalled, "submit", "accepted")
        .await
        .unwrap();
    let recorded = Instant::now();
    let after_answer = pacing::reserve(&db, limits).await.unwrap();
    if recorded.elapsed() < limits.minute {
        assert!(
            matches!(after_answer, Reservation::Wait(_)),
            "{after_answer:?}"
        );
    }
    tokio::time::sleep(limits.minute).await;
    let Reservation::Granted(lost) = pacing::reserve(&db, limits).await.unwrap() else {
        panic!("a recorded call still held its slot a window after its answer");
    };

    // A slot never recorded (its replica died) holds its place, and frees
    // once the call could no longer arrive and a window has passed since.
    let second = pacing::reserve(&db, limits).await.unwrap();
    assert!(matches!(second, Reservation::Wait(_)), "{second:?}");
    tokio::time::sleep(limits.minute + limits.in_flight).await;
    assert!(
        matches!(
            pacing::reserve(&db, limits).await.unwrap(),
            Reservation::Granted(_)
        ),
        "a dead replica's slot {lost} was never freed"
    );
}

#[sqlx::test]
async fn a_call_sent_long_after_its_reservation_counts_from_when_it_was_sent(db: PgPool) {
    // Between its reservation and its send a call may wait (a claim, a
    // pool wait) longer than any fixed margin: dated when it is sent, it
    // counts from then.
    use interests_receiver::store::pacing::{self, Reservation};
    interests_receiver::store::migrate(&db).await.unwrap();
    let limits = one_call_per_200_ms(Duration::from_secs(2));
    let Reservation::Granted(late) = pacing::reserve(&db, limits).await.unwrap() else {
        panic!("the first slot of an empty ledger was refused");
    };
    // Longer than a window plus `in_flight` after its reservation.
    tokio::time::sleep(limits.in_flight + limits.minute * 2).await;

    pacing::sending(&db, late).await.unwrap();
    let next = pacing::reserve(&db, limits).await.unwrap();
    assert!(
        matches!(next, Reservation::Wait(_)),
        "a slot was granted while a call sent just now could still reach upstream: {next:?}"
    );
}

/// One call per 200 ms window, counting an unanswered call for `in_flight`.
fn one_call_per_200_ms(in_flight: Duration) -> interests_receiver::store::pacing::Limits {
    interests_receiver::store::pacing::Limits {
        per_minute: 1,
        per_hour: 1000,
        minute: Duration::from_millis(200),
        hour: Duration::from_secs(12),
        in_flight,
    }
}
