//! `kill -9` at every dangerous moment loses no lookup and pays for none
//! twice. The real binary runs as a child process; an environment variable
//! makes it stop at a named point (see src/crashpoint.rs), the test kills it
//! there with SIGKILL and starts it again on the same database and port.

// Without the hooks these tests would wait for a stop that never comes:
// refuse to build rather than skip them.
#[cfg(not(feature = "crashpoints"))]
compile_error!(
    "the integration tests need the crash hooks: run scripts/test.sh, or pass --features crashpoints"
);

use std::time::Duration;

use crate::common::TOKEN;
use crate::common::child::{Child, TestSandbox, database_url, free_port, serve_env};
use serde_json::{Value, json};
use sqlx::PgPool;

const RECOVERY: Duration = Duration::from_secs(45);

struct Scenario {
    point: &'static str,
    email: &'static str,
    time_scale: f64,
    extra: &'static [(&'static str, &'static str)],
}

/// Starts the service armed at `point`, asks for one lookup, kills the
/// process when it stops at the point, restarts it, and returns the final
/// lookup once it is finished, with the simulator for counting and the
/// restarted service.
async fn crash_and_recover(db: PgPool, s: Scenario) -> (Value, TestSandbox, PgPool, Child) {
    let sandbox = TestSandbox::start(s.time_scale).await;
    let port = free_port();
    let mut env = serve_env(&database_url(&db), &sandbox, port, port);
    env.extend(s.extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let mut armed = env.clone();
    armed.push(("INTERESTS_RECEIVER_CRASHPOINT".into(), s.point.into()));

    let first = Child::serve(&armed).await;
    let http = reqwest::Client::new();
    let created: Value = http
        .post(format!("{}/v1/lookups", first.base))
        .bearer_auth(TOKEN)
        .json(&json!({"email": s.email}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = created["id"].as_str().unwrap().to_owned();
    first
        .wait_for_line(&format!("CRASHPOINT {}", s.point), Duration::from_secs(20))
        .await;
    first.kill9().await;

    let second = Child::serve(&env).await;
    // Not finished in time means lost.
    let finished =
        |l: &Value| ["completed", "failed", "expired"].contains(&l["status"].as_str().unwrap());
    let lookup =
        crate::common::wait_for_lookup_at(&http, &second.base, TOKEN, &id, RECOVERY, finished)
            .await;
    // The restarted process is returned alive (killed on drop): late
    // deliveries may still reach it.
    (lookup, sandbox, db, second)
}

async fn count(db: &PgPool, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(db).await.unwrap()
}

#[sqlx::test]
async fn a_crash_after_claiming_but_before_sending_loses_nothing_and_sends_once(db: PgPool) {
    let (lookup, sandbox, db, _service) = crash_and_recover(
        db,
        Scenario {
            point: "before_submit",
            email: "ann@example.com",
            time_scale: 0.05,
            // The interrupted submit is ambiguous to the restarted process:
            // it waits this long for a callback, then re-submits.
            extra: &[("AMBIGUOUS_RESUBMIT_AFTER_SECS", "2")],
        },
    )
    .await;

    assert_eq!(lookup["status"], "completed");
    // Nothing had left: exactly one send after the restart, none lost.
    assert_eq!(
        sandbox.jobs_for("ann@example.com"),
        1,
        "never sent, or sent twice"
    );
    assert_eq!(count(&db, "SELECT count(*) FROM profiles").await, 1);
}

#[sqlx::test]
async fn a_crash_after_upstream_accepted_but_before_recording_it_pays_once(db: PgPool) {
    let (lookup, sandbox, db, _service) = crash_and_recover(
        db,
        Scenario {
            point: "after_submit_accepted",
            // A slow job finishes after the dead process's lease ran out,
            // so the restarted one must choose between waiting and
            // re-sending.
            email: "bo+sandbox-slow@example.com",
            time_scale: 0.2,
            // AMBIGUOUS_RESUBMIT_AFTER_SECS unset (the default): never
            // re-sent, so only the callback (which carries the token) can
            // complete the lookup; a re-submit would be a double charge.
            extra: &[],
        },
    )
    .await;

    assert_eq!(lookup["status"], "completed");
    assert_eq!(lookup["profile"]["received_via"], "callback");
    assert_eq!(
        sandbox.jobs_for("bo+sandbox-slow@example.com"),
        1,
        "paid twice"
    );
    assert_eq!(
        lookup["request_id"],
        sandbox.sandbox.jobs()[0].request_id.as_str(),
        "the request_id was learnt from the callback"
    );
    assert_eq!(count(&db, "SELECT count(*) FROM profiles").await, 1);
}

#[sqlx::test]
async fn a_crash_while_the_submit_is_on_the_wire_pays_once(db: PgPool) {
    // Slow (6 s at this scale): the job is still running when the dead
    // process's lease runs out (3 s), which is when a wrong recovery would
    // re-send it.
    let email = "fay.sandbox-submit-timeout.sandbox-slow@example.com";
    let (lookup, sandbox, db, _service) = crash_and_recover(
        db,
        Scenario {
            // The submit reached upstream (the job exists and will be
            // charged) but its answer, held back 3 s, never reached the
            // process. A restart that took the lookup for unsent would pay
            // twice; the job's callback, which carries the lookup's token,
            // must complete it instead.
            point: "submit_in_flight",
            email,
            time_scale: 0.2,
            // AMBIGUOUS_RESUBMIT_AFTER_SECS unset: the default never re-sends.
            extra: &[],
        },
    )
    .await;

    assert_eq!(lookup["status"], "completed");
    assert_eq!(lookup["profile"]["received_via"], "callback");
    assert_eq!(sandbox.jobs_for(email), 1, "paid twice");
    assert_eq!(count(&db, "SELECT count(*) FROM profiles").await, 1);
}

#[sqlx::test]
async fn a_crash_in_a_delivery_before_commit_is_healed_by_upstream_retry(db: PgPool) {
    let (lookup, sandbox, db, _service) = crash_and_recover(
        db,
        Scenario {
            point: "callback_before_commit",
            email: "cy@example.com",
            time_scale: 0.05,
            extra: &[],
        },
    )
    .await;

    assert_eq!(lookup["status"], "completed");
    assert_eq!(sandbox.jobs_for("cy@example.com"), 1);
    assert_eq!(count(&db, "SELECT count(*) FROM profiles").await, 1);
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM deliveries WHERE outcome = 'applied'"
        )
        .await,
        1
    );
}

#[sqlx::test]
async fn a_crash_in_a_delivery_after_commit_answers_the_retry_as_duplicate(db: PgPool) {
    let (lookup, sandbox, db, _service) = crash_and_recover(
        db,
        Scenario {
            point: "callback_after_commit",
            email: "di@example.com",
            time_scale: 0.05,
            extra: &[],
        },
    )
    .await;

    assert_eq!(lookup["status"], "completed");
    assert_eq!(sandbox.jobs_for("di@example.com"), 1);
    assert_eq!(count(&db, "SELECT count(*) FROM profiles").await, 1);
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM deliveries WHERE outcome = 'applied'"
        )
        .await,
        1
    );
    // The lookup was complete the moment the commit landed; upstream saw
    // that attempt fail with the process, retries, and gets a 2xx that
    // changes nothing.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while sandbox.sandbox.jobs()[0].callbacks_acknowledged == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "retry never acknowledged"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM deliveries WHERE outcome = 'duplicate'"
        )
        .await,
        1
    );
    assert_eq!(count(&db, "SELECT count(*) FROM profiles").await, 1);
}

#[sqlx::test]
async fn a_crash_in_the_middle_of_a_poll_loses_nothing(db: PgPool) {
    let (lookup, sandbox, db, _service) = crash_and_recover(
        db,
        Scenario {
            point: "after_poll_answer",
            email: "ed+sandbox-no-callback@example.com",
            time_scale: 0.05,
            extra: &[("POLL_AFTER_SECS", "1")],
        },
    )
    .await;

    assert_eq!(lookup["status"], "completed");
    assert_eq!(lookup["profile"]["received_via"], "poll");
    assert_eq!(sandbox.jobs_for("ed+sandbox-no-callback@example.com"), 1);
    assert_eq!(count(&db, "SELECT count(*) FROM profiles").await, 1);
}

#[sqlx::test]
async fn the_event_sequencer_killed_mid_batch_is_replaced_and_no_event_is_lost_or_doubled(
    db: PgPool,
) {
    let sandbox = TestSandbox::start(0.02).await;
    let (port_a, port_b) = (free_port(), free_port());
    let url = database_url(&db);
    // Callbacks go to B, the replica that survives.
    // A's workers run too: a submit A has on the wire when it is killed is
    // ambiguous, and by default never sent again (it waits for a callback
    // that may never come). This test is about the sequencer, so such a
    // submit is re-sent after a second.
    let resend = ("AMBIGUOUS_RESUBMIT_AFTER_SECS".to_owned(), "1".to_owned());
    let mut armed = serve_env(&url, &sandbox, port_a, port_b);
    armed.push((
        "INTERESTS_RECEIVER_CRASHPOINT".into(),
        "sequencer_before_commit".into(),
    ));
    armed.push(resend.clone());
    let leader = Child::serve(&armed).await;
    // A leads (epoch 1) before B exists; B waits as a follower.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while count(&db, "SELECT epoch FROM event_sequencer").await < 1 {
        assert!(tokio::time::Instant::now() < deadline, "A never led");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut follower_env = serve_env(&url, &sandbox, port_b, port_b);
    follower_env.push(resend);
    let follower = Child::serve(&follower_env).await;

    let http = reqwest::Client::new();
    let mut ids = Vec::new();
    for i in 0..10 {
        let created: Value = http
            .post(format!("{}/v1/lookups", follower.base))
            .bearer_auth(TOKEN)
            .json(&json!({"email": format!("seq{i}@example.com")}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        ids.push(created["id"].as_str().unwrap().to_owned());
    }
    // A has moved a batch into `events`, uncommitted, and stops there.
    leader
        .wait_for_line(
            "CRASHPOINT sequencer_before_commit",
            Duration::from_secs(20),
        )
        .await;
    assert_eq!(count(&db, "SELECT count(*) FROM events").await, 0);
    leader.kill9().await;

    // B takes over and places everything: every lookup completes and each
    // status change is in `events` exactly once.
    for id in &ids {
        crate::common::wait_for_lookup_at(&http, &follower.base, TOKEN, id, RECOVERY, |l| {
            l["status"] == "completed"
        })
        .await;
    }
    let deadline = tokio::time::Instant::now() + RECOVERY;
    while count(&db, "SELECT count(*) FROM event_inbox").await > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "events left unplaced"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(count(&db, "SELECT epoch FROM event_sequencer").await, 2);
    let doubled = count(
        &db,
        "SELECT count(*) FROM (SELECT lookup_id, type FROM events \
         GROUP BY 1, 2 HAVING count(*) > 1) d",
    )
    .await;
    assert_eq!(doubled, 0, "an event was placed twice");
    let completed = count(
        &db,
        "SELECT count(DISTINCT lookup_id) FROM events WHERE type = 'lookup.completed'",
    )
    .await;
    assert_eq!(completed, ids.len() as i64, "a completion event was lost");
}
