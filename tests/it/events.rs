//! `GET /v1/events`: lookup status changes as Server-Sent Events, live and
//! resumable without gaps or repeats.

use std::time::Duration;

use crate::common::{Settings, TOKEN, TestApp, error_fields, insert_pending_of, problem, spawn};
use serde_json::{Value, json};
use sqlx::PgPool;

const WAIT: Duration = Duration::from_secs(20);

#[derive(Debug, Clone)]
pub(crate) struct SseEvent {
    pub(crate) id: i64,
    pub(crate) event: String,
    pub(crate) data: Value,
}

/// A minimal SSE reader over a streaming response.
pub(crate) struct SseClient {
    response: reqwest::Response,
    buffer: String,
}

impl SseClient {
    pub(crate) async fn connect(
        app: &TestApp,
        query: &str,
        last_event_id: Option<i64>,
    ) -> SseClient {
        let mut request = app
            .http
            .get(app.url(&format!("/v1/events{query}")))
            .bearer_auth(TOKEN);
        if let Some(id) = last_event_id {
            request = request.header("Last-Event-ID", id.to_string());
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 200);
        assert!(
            response.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/event-stream")
        );
        SseClient {
            response,
            buffer: String::new(),
        }
    }

    /// The next event (comments skipped), failing the test after `WAIT`.
    pub(crate) async fn next(&mut self) -> SseEvent {
        tokio::time::timeout(WAIT, async {
            loop {
                if let Some(end) = self.buffer.find("\n\n") {
                    let block: String = self.buffer.drain(..end + 2).collect();
                    let (mut id, mut event, mut data) = (None, None, None);
                    for line in block.lines() {
                        if let Some(v) = line.strip_prefix("id:") {
                            id = Some(v.trim().parse().unwrap());
                        } else if let Some(v) = line.strip_prefix("event:") {
                            event = Some(v.trim().to_owned());
                        } else if let Some(v) = line.strip_prefix("data:") {
                            data = Some(serde_json::from_str(v.trim()).unwrap());
                        }
                    }
                    if let (Some(id), Some(event), Some(data)) = (id, event, data) {
                        return SseEvent { id, event, data };
                    }
                    continue;
                }
                let chunk = self.response.chunk().await.unwrap().expect("stream open");
                self.buffer.push_str(std::str::from_utf8(&chunk).unwrap());
            }
        })
        .await
        .expect("an event within the wait")
    }

    /// Waits for a comment line (a keep-alive), failing after `within`.
    async fn comment(&mut self, within: Duration) {
        tokio::time::timeout(within, async {
            while !self.buffer.lines().any(|l| l.starts_with(':')) {
                let chunk = self.response.chunk().await.unwrap().expect("stream open");
                self.buffer.push_str(std::str::from_utf8(&chunk).unwrap());
            }
        })
        .await
        .expect("a keep-alive comment");
        self.buffer.clear();
    }

    /// Events until (and including) `event` for `lookup_id`.
    async fn until(&mut self, lookup_id: &Value, event: &str) -> Vec<SseEvent> {
        let mut seen = Vec::new();
        loop {
            let e = self.next().await;
            let done = e.event == event && &e.data["lookup_id"] == lookup_id;
            seen.push(e);
            if done {
                return seen;
            }
        }
    }
}

async fn new_lookup(app: &TestApp, email: &str) -> Value {
    let response = app.post_lookup(&json!({"email": email})).await;
    assert_eq!(response.status(), 202);
    response.json().await.unwrap()
}

/// Waits until every lookup is finished and every committed status change
/// has its place in `events` (the sequencer has emptied the inbox).
pub(crate) async fn wait_until_placed(app: &TestApp) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let unfinished = app
            .count(
                "SELECT count(*) FROM lookups \
                 WHERE status NOT IN ('completed', 'failed', 'expired')",
            )
            .await;
        let waiting = app.count("SELECT count(*) FROM event_inbox").await;
        if unfinished == 0 && waiting == 0 {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{unfinished} lookups unfinished, {waiting} events unplaced"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn all_event_ids(app: &TestApp) -> Vec<i64> {
    sqlx::query_scalar("SELECT id FROM events ORDER BY id")
        .fetch_all(&app.db)
        .await
        .unwrap()
}

#[sqlx::test]
async fn a_client_sees_a_lookup_complete_and_resumes_without_missing_or_repeating(db: PgPool) {
    let app = spawn(db, Settings::sandbox()).await;
    let mut live = SseClient::connect(&app, "", None).await;
    let mut first = SseClient::connect(&app, "?after=0", None).await;

    let a = new_lookup(&app, "sse-a@example.com").await;
    assert_eq!(a["status"], "pending");
    // The first client reads one event, then disconnects.
    let one = first.next().await;
    assert_eq!(one.data["lookup_id"], a["id"]);
    drop(first);

    let seen_live = live.until(&a["id"], "lookup.completed").await;
    let completed = seen_live.last().unwrap();
    let stored = app.lookup(a["id"].as_str().unwrap()).await;
    assert_eq!(stored["status"], "completed");
    assert_eq!(completed.data["status"], "completed");
    assert_eq!(completed.data["profile_id"], stored["profile"]["id"]);
    assert!(completed.data["at"].as_str().is_some());
    for e in &seen_live[..seen_live.len() - 1] {
        assert!(e.data["profile_id"].is_null());
        assert_eq!(
            e.event,
            format!("lookup.{}", e.data["status"].as_str().unwrap())
        );
    }

    // More happens while the first client is away.
    let b = new_lookup(&app, "sse-b@example.com").await;
    app.wait_for_status(b["id"].as_str().unwrap(), "completed", WAIT)
        .await;

    let mut resumed = SseClient::connect(&app, "", Some(one.id)).await;
    let rest = resumed.until(&b["id"], "lookup.completed").await;
    let mut ids = vec![one.id];
    ids.extend(rest.iter().map(|e| e.id));
    assert_eq!(ids, all_event_ids(&app).await, "every event once, in order");

    // The live client saw the same sequence.
    let more = live.until(&b["id"], "lookup.completed").await;
    let live_ids: Vec<i64> = seen_live.iter().chain(&more).map(|e| e.id).collect();
    assert_eq!(live_ids, ids);
    app.stop().await;
}

/// The replica's event feed reads on its own LISTEN connection: when that
/// connection (with every other one of the service) is cut, the feed
/// reconnects and reads on from the last event it had: a live stream goes
/// on, missing nothing and repeating nothing. (The feed reconnects within
/// milliseconds here; that it keeps its position over a longer outage is
/// by construction: `last` lives outside the connection's loop.)
#[sqlx::test]
async fn a_live_stream_goes_on_without_a_gap_when_the_database_connections_are_cut(db: PgPool) {
    let app = spawn(db.clone(), Settings::sandbox()).await;
    let mut live = SseClient::connect(&app, "", None).await;
    let a = new_lookup(&app, "cut-a@example.com").await;
    let mut seen = live.until(&a["id"], "lookup.completed").await;

    let cut: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = current_database() AND pid <> pg_backend_pid() \
           AND backend_type = 'client backend'",
    )
    .fetch_all(&db)
    .await
    .unwrap();
    assert!(
        cut.len() >= 2,
        "the LISTEN connection and the pool's were cut"
    );

    // Made at once: the service's pool reconnects too.
    let b = new_lookup(&app, "cut-b@example.com").await;
    seen.extend(live.until(&b["id"], "lookup.completed").await);
    let ids: Vec<i64> = seen.iter().map(|e| e.id).collect();
    let stored: Vec<i64> = all_event_ids(&app)
        .await
        .into_iter()
        .filter(|id| (ids[0]..=*ids.last().unwrap()).contains(id))
        .collect();
    assert_eq!(ids, stored, "every event once, in order, across the cut");
    app.stop().await;
}

#[sqlx::test]
async fn bad_resume_points_are_named_and_streams_are_bounded(db: PgPool) {
    let mut settings = Settings::sandbox();
    settings.options.max_event_streams = 2;
    let app = spawn(db, settings).await;

    let bad = problem(app.get("/v1/events?after=abc").await, 422).await;
    assert_eq!(error_fields(&bad), vec!["after"]);
    let response = app
        .http
        .get(app.url("/v1/events"))
        .bearer_auth(TOKEN)
        .header("Last-Event-ID", "-5")
        .send()
        .await
        .unwrap();
    let bad = problem(response, 422).await;
    assert_eq!(error_fields(&bad), vec!["Last-Event-ID"]);
    problem(
        app.http.get(app.url("/v1/events")).send().await.unwrap(),
        401,
    )
    .await;

    let one = SseClient::connect(&app, "", None).await;
    let _two = SseClient::connect(&app, "", None).await;
    let third = app.get("/v1/events").await;
    assert_eq!(third.headers()["retry-after"], "5");
    problem(third, 503).await;

    // A client that goes away frees its slot.
    drop(one);
    let started = tokio::time::Instant::now();
    loop {
        let response = app.get("/v1/events").await;
        if response.status() == 200 {
            break;
        }
        assert!(started.elapsed() < WAIT, "the slot was never freed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    app.stop().await;
}

#[sqlx::test]
async fn an_idle_stream_gets_keep_alive_comments_and_stays_live(db: PgPool) {
    let app = spawn(db, Settings::sandbox()).await;
    let mut client = SseClient::connect(&app, "", None).await;
    // The first keep-alive comes after 15 s: longer than any request
    // timeout, so the stream also outlives those.
    client.comment(Duration::from_secs(25)).await;
    let lookup = new_lookup(&app, "idle@example.com").await;
    let seen = client.until(&lookup["id"], "lookup.completed").await;
    assert!(!seen.is_empty());
    app.stop().await;
}

#[sqlx::test]
async fn a_status_change_is_recorded_only_when_it_commits_and_only_once(db: PgPool) {
    let app = spawn(db.clone(), Settings::sandbox()).await;
    let lookup = new_lookup(&app, "commit@example.com").await;
    let id = lookup["id"].as_str().unwrap().to_owned();
    app.wait_for_status(&id, "completed", WAIT).await;
    wait_until_placed(&app).await;
    app.stop().await;
    // Placed events and those still waiting for the sequencer (stopped
    // now, so a change below would stay in the inbox).
    let events_of = || {
        sqlx::query_scalar::<_, String>(
            "SELECT type FROM (SELECT id, type FROM events WHERE lookup_id = $1::uuid \
             UNION ALL SELECT id + 1000000000, type FROM event_inbox WHERE lookup_id = $1::uuid) e \
             ORDER BY id",
        )
        .bind(&id)
        .fetch_all(&db)
    };
    let before = events_of().await.unwrap();
    assert_eq!(before.last().unwrap(), "lookup.completed");
    assert!(before.contains(&"lookup.queued".to_owned()), "{before:?}");

    // A change that rolls back leaves no event; one that sets the same
    // status again is no change.
    let mut tx = db.begin().await.unwrap();
    sqlx::query("UPDATE lookups SET status = 'expired' WHERE id = $1::uuid")
        .bind(&id)
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.rollback().await.unwrap();
    sqlx::query("UPDATE lookups SET status = 'completed' WHERE id = $1::uuid")
        .bind(&id)
        .execute(&db)
        .await
        .unwrap();
    assert_eq!(events_of().await.unwrap(), before);
}

#[sqlx::test]
async fn events_older_than_seven_days_are_purged_and_newer_ones_kept(db: PgPool) {
    let app = spawn(db, Settings::sandbox()).await;
    let lookup = new_lookup(&app, "old@example.com").await;
    let id = lookup["id"].as_str().unwrap();
    app.wait_for_status(id, "completed", WAIT).await;
    wait_until_placed(&app).await;
    let all = all_event_ids(&app).await;
    assert!(all.len() >= 2);
    // The oldest event is backdated past the retention; one just inside it.
    sqlx::query("UPDATE events SET at = now() - interval '8 days' WHERE id = $1")
        .bind(all[0])
        .execute(&app.db)
        .await
        .unwrap();
    sqlx::query("UPDATE events SET at = now() - interval '6 days' WHERE id = $1")
        .bind(all[1])
        .execute(&app.db)
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + WAIT;
    while all_event_ids(&app).await.contains(&all[0]) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "old event not purged"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(all_event_ids(&app).await, all[1..].to_vec());
    app.stop().await;
}

/// Up to `n` events, each within `within`; fewer when the stream goes quiet.
async fn read_some(client: &mut SseClient, n: usize, within: Duration) -> Vec<SseEvent> {
    let mut got = Vec::new();
    while got.len() < n {
        match tokio::time::timeout(within, client.next()).await {
            Ok(e) => got.push(e),
            Err(_) => break,
        }
    }
    got
}

#[sqlx::test]
async fn readers_resuming_anywhere_on_either_replica_miss_nothing_and_see_nothing_twice(
    db: PgPool,
) {
    // Two replicas on one database: both write events, one sequences them.
    let a = spawn(db.clone(), Settings::sandbox()).await;
    let b = spawn(db, Settings::sandbox()).await;
    let people = 40;
    let writers = async {
        let posts = (0..people).map(|i| {
            let app = if i % 2 == 0 { &a } else { &b };
            async move { new_lookup(app, &format!("seq{i}@example.com")).await }
        });
        futures::future::join_all(posts).await
    };
    // One reader hops between the replicas while the writers commit,
    // reading a few events each time and resuming from the last id seen.
    let reader = async {
        let mut seen: Vec<SseEvent> = Vec::new();
        let mut hop = 0usize;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let app = if hop.is_multiple_of(2) { &a } else { &b };
            let last = seen.last().map_or(0, |e| e.id);
            let mut client = SseClient::connect(app, "", Some(last)).await;
            let got = read_some(&mut client, 1 + hop % 7, Duration::from_millis(500)).await;
            drop(client);
            hop += 1;
            let quiet = got.is_empty();
            seen.extend(got);
            if quiet {
                let finished = a
                    .count(
                        "SELECT count(*) FROM lookups \
                         WHERE status IN ('completed', 'failed', 'expired')",
                    )
                    .await;
                let waiting = a.count("SELECT count(*) FROM event_inbox").await;
                let newest = a.count("SELECT COALESCE(max(id), 0) FROM events").await;
                let last = seen.last().map_or(0, |e| e.id);
                if finished == people && waiting == 0 && newest == last {
                    return (seen, hop);
                }
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the reader never caught up"
            );
        }
    };
    let (created, (seen, hops)) = tokio::join!(writers, reader);
    assert_eq!(created.len(), people as usize);
    assert!(hops > 4, "the reader resumed only {hops} times");

    let ids: Vec<i64> = seen.iter().map(|e| e.id).collect();
    assert!(
        ids.windows(2).all(|w| w[0] < w[1]),
        "ids not strictly increasing: {ids:?}"
    );
    assert_eq!(ids, all_event_ids(&a).await, "every event, once, in order");
    // Each lookup's changes, once each and in their order.
    for lookup in &created {
        let mine: Vec<&str> = seen
            .iter()
            .filter(|e| e.data["lookup_id"] == lookup["id"])
            .map(|e| e.event.as_str())
            .collect();
        assert_eq!(mine.last(), Some(&"lookup.completed"), "{mine:?}");
        let unique: std::collections::HashSet<_> = mine.iter().collect();
        assert_eq!(unique.len(), mine.len(), "an event twice: {mine:?}");
    }
    a.stop().await;
    b.stop().await;
}

#[sqlx::test]
async fn a_replaced_sequencer_cannot_place_events(db: PgPool) {
    use interests_receiver::store::sequencer::{self, Batch};
    let app = spawn(db.clone(), Settings::sandbox()).await;
    let lookup = new_lookup(&app, "fence@example.com").await;
    app.wait_for_status(lookup["id"].as_str().unwrap(), "completed", WAIT)
        .await;
    wait_until_placed(&app).await;
    let placed = all_event_ids(&app).await;
    app.stop().await;
    let ids = || sqlx::query_scalar::<_, i64>("SELECT id FROM events ORDER BY id").fetch_all(&db);
    let waiting =
        || sqlx::query_scalar::<_, i64>("SELECT count(*) FROM event_inbox").fetch_one(&db);
    // A status change committed while no sequencer runs.
    sqlx::query("INSERT INTO event_inbox (lookup_id, type) VALUES ($1::uuid, 'lookup.expired')")
        .bind(lookup["id"].as_str().unwrap())
        .execute(&db)
        .await
        .unwrap();

    // Two would-be leaders, one after the other (the first resigned).
    let mut old = db.acquire().await.unwrap().detach();
    let stale = sequencer::try_lead(&mut old, uuid::Uuid::new_v4())
        .await
        .unwrap()
        .expect("nobody leads");
    sequencer::resign(&mut old).await.unwrap();
    let mut new = db.acquire().await.unwrap().detach();
    let current = sequencer::try_lead(&mut new, uuid::Uuid::new_v4())
        .await
        .unwrap()
        .expect("the lock is free again");
    assert!(current > stale);
    // Only one holds the lock at a time.
    assert_eq!(
        sequencer::try_lead(&mut old, uuid::Uuid::new_v4())
            .await
            .unwrap(),
        None
    );

    let outcome = sequencer::batch(&mut old, stale, 100, async {})
        .await
        .unwrap();
    assert_eq!(outcome, Batch::Superseded);
    assert_eq!(
        ids().await.unwrap(),
        placed,
        "the stale leader placed an event"
    );
    assert_eq!(waiting().await.unwrap(), 1);

    let outcome = sequencer::batch(&mut new, current, 100, async {})
        .await
        .unwrap();
    let newest = *placed.last().unwrap();
    assert!(matches!(outcome, Batch::Done { taken: 1, newest: Some(id) } if id > newest));
    assert_eq!(waiting().await.unwrap(), 0);
}

#[sqlx::test]
async fn a_refresh_that_changed_the_profile_is_followed_by_profile_changed_and_one_that_did_not_by_nothing(
    db: PgPool,
) {
    let app = spawn(db, Settings::sandbox()).await;
    let mut live = SseClient::connect(&app, "", None).await;

    // Unchanged: a person whose every lookup gives the same profile.
    let same = new_lookup(&app, "steady@example.com").await;
    live.until(&same["id"], "lookup.completed").await;
    let again = app
        .post_lookup(&json!({"email": "steady@example.com", "refresh": true}))
        .await
        .json::<Value>()
        .await
        .unwrap();
    live.until(&again["id"], "lookup.completed").await;

    // Changed: the sandbox's changing person.
    let email = "shifty+sandbox-changing@example.com";
    let first = new_lookup(&app, email).await;
    live.until(&first["id"], "lookup.completed").await;
    let refresh = app
        .post_lookup(&json!({"email": email, "refresh": true}))
        .await
        .json::<Value>()
        .await
        .unwrap();
    let completed = live.until(&refresh["id"], "lookup.completed").await;
    let completed = completed.last().unwrap();
    let changed = live.next().await;
    assert_eq!(changed.event, "profile.changed");
    assert_eq!(changed.id, completed.id + 1, "right after lookup.completed");

    let first_done = app.lookup(first["id"].as_str().unwrap()).await;
    let refreshed = app.lookup(refresh["id"].as_str().unwrap()).await;
    let profile_id = refreshed["profile"]["id"].as_str().unwrap();
    let change = &app
        .get_json(&format!("/v1/profiles/{profile_id}/changes"))
        .await["items"][0];
    let keys: Vec<&str> = changed
        .data
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let mut keys = keys;
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "added",
            "at",
            "following_count",
            "lookup_id",
            "previous_profile_id",
            "profile_id",
            "removed"
        ]
    );
    assert_eq!(changed.data["lookup_id"], refresh["id"]);
    assert_eq!(changed.data["profile_id"], profile_id);
    assert_eq!(
        changed.data["previous_profile_id"],
        first_done["profile"]["id"]
    );
    assert!(changed.data["at"].as_str().is_some());
    for field in ["added", "removed", "following_count"] {
        assert_eq!(changed.data[field], change[field], "{field} as in /changes");
    }

    // Once everything is placed, the only profile.changed is that one.
    wait_until_placed(&app).await;
    let types: Vec<(String, String)> =
        sqlx::query_as("SELECT type, lookup_id::text FROM events WHERE type = 'profile.changed'")
            .fetch_all(&app.db)
            .await
            .unwrap();
    assert_eq!(
        types,
        [(
            "profile.changed".to_owned(),
            refresh["id"].as_str().unwrap().to_owned()
        )]
    );
    // A resumed reader replays it with the same shape.
    let mut resumed = SseClient::connect(&app, "", Some(completed.id)).await;
    let replayed = resumed.next().await;
    assert_eq!((replayed.id, &replayed.event), (changed.id, &changed.event));
    assert_eq!(replayed.data, changed.data);
    app.stop().await;
}

#[sqlx::test]
async fn an_events_time_is_its_commit_not_its_transactions_start(db: PgPool) {
    let mut conn = db.acquire().await.unwrap();
    let id = insert_pending_of(&mut conn, "at@example.com").await;
    let mut tx = db.begin().await.unwrap();
    let began: chrono::DateTime<chrono::Utc> = sqlx::query_scalar("SELECT now()")
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    sqlx::query("SELECT pg_sleep(0.3)")
        .execute(&mut *tx)
        .await
        .unwrap();
    sqlx::query("UPDATE lookups SET status = 'queued', request_id = 'req-at' WHERE id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await
        .unwrap();

    tx.commit().await.unwrap();

    let at: chrono::DateTime<chrono::Utc> = sqlx::query_scalar(
        "SELECT at FROM event_inbox WHERE lookup_id = $1 AND type = 'lookup.queued'",
    )
    .bind(id)
    .fetch_one(&db)
    .await
    .unwrap();
    assert!(
        at >= began + chrono::Duration::milliseconds(300),
        "the event's at ({at}) is its transaction's start ({began}), not its commit"
    );
}
