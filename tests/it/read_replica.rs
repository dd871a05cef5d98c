//! `DATABASE_READ_URL` against a real streaming standby (a primary and a
//! `pg_basebackup -R` standby of it, `common::standby`): searches, facets
//! and the console's lists are read from the standby, writes and reads of
//! one's own writes from the primary; a stopped standby, or one further
//! behind than `DATABASE_READ_MAX_LAG_SECS`, is bypassed until it is back.
//!
//! Which server answered is shown by what it can know: with WAL replay
//! paused, a profile written since exists on the primary only.

use std::time::Duration;

use serde_json::json;
use sqlx::PgPool;

use crate::common::standby::ReplicatedPair;
use crate::common::{Settings, TestApp, spawn};

const WAIT: Duration = Duration::from_secs(30);

/// A sandbox-mode service on the pair's primary, reading from its standby.
async fn app_reading_from(pair: &ReplicatedPair, max_lag: Duration) -> TestApp {
    let primary = PgPool::connect(&pair.primary.url()).await.unwrap();
    let mut settings = Settings::sandbox();
    settings.database_read_url = Some(pair.standby.url());
    settings.database_read_max_lag = max_lag;
    spawn(primary, settings).await
}

/// A primary and standby, and a service on them reading from the standby
/// at most `max_lag` behind, which has already answered a search finding
/// Ann's profile.
async fn ann_read_from_a_standby(max_lag: Duration) -> (ReplicatedPair, TestApp) {
    let pair = ReplicatedPair::start().await;
    let app = app_reading_from(&pair, max_lag).await;
    completed(&app, "ann@example.com").await;
    until_the_standby_finds(&app, "ann@example.com").await;
    (pair, app)
}

/// Looks `email` up and waits until the simulator's result completed it.
async fn completed(app: &TestApp, email: &str) -> String {
    let id = app.create(&json!({ "email": email })).await;
    app.wait_for_status(&id, "completed", WAIT).await;
    id
}

/// Emails of the profiles `GET /v1/profiles?<query>` finds.
async fn found(app: &TestApp, query: &str) -> Vec<String> {
    let page = app.get_json(&format!("/v1/profiles?{query}")).await;
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["subject"]["email"].as_str().unwrap().to_owned())
        .collect()
}

/// Ids of the lookups the console's list (`GET /v1/lookups`) shows.
async fn listed_lookups(app: &TestApp) -> Vec<String> {
    let page = app.get_json("/v1/lookups?limit=50").await;
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["id"].as_str().unwrap().to_owned())
        .collect()
}

async fn reads_from(app: &TestApp, pool: &str) -> f64 {
    app.metric(&format!("db_reads_total{{pool=\"{pool}\"}}"))
        .await
}

/// Tries `check` until it holds, failing the test after [`WAIT`].
async fn eventually(what: &str, check: impl AsyncFn() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what} did not happen within {WAIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Searches for `email` until the standby answers and finds it: the
/// monitor found the standby usable, and it replayed the profile.
async fn until_the_standby_finds(app: &TestApp, email: &str) {
    let query = format!("email={email}");
    eventually(
        &format!("a search by the standby finding {email}"),
        async || {
            let before = reads_from(app, "replica").await;
            found(app, &query).await == [email] && reads_from(app, "replica").await > before
        },
    )
    .await;
}

/// Searches for `email` until it is found (by whichever server answers).
async fn until_found(app: &TestApp, email: &str) {
    let query = format!("email={email}");
    eventually(&format!("a search finding {email}"), async || {
        found(app, &query).await == [email]
    })
    .await;
}

#[tokio::test]
async fn searches_facets_and_lists_are_read_from_the_standby_while_writes_go_to_the_primary() {
    let (pair, app) = ann_read_from_a_standby(Duration::from_secs(3600)).await;

    pair.pause_replay().await;
    // The whole write path works while reads go to a read-only standby:
    // a lookup made, sent upstream, its result stored, read back by id.
    let bob = completed(&app, "bob@example.com").await;
    let replica_reads = reads_from(&app, "replica").await;

    // Searches, facets and lists come from the standby, which has not
    // replayed Bob's lookup.
    assert!(found(&app, "email=bob@example.com").await.is_empty());
    assert_eq!(found(&app, "").await, ["ann@example.com"]);
    let facets = app
        .get_json("/v1/facets?field=archetype&email=bob@example.com")
        .await;
    assert_eq!(facets["values"], json!([]), "{facets}");
    assert!(!listed_lookups(&app).await.contains(&bob));
    let deliveries = app
        .get_json(&format!("/v1/deliveries?lookup_id={bob}"))
        .await;
    assert_eq!(deliveries["items"], json!([]), "{deliveries}");
    // The export stream too (one page: one read); its audit record, a
    // write, goes to the primary.
    let exported = app.get("/v1/profiles/export").await;
    assert_eq!(exported.status(), 200);
    let emails: Vec<String> = exported
        .text()
        .await
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["subject"]["email"].to_string()
        })
        .collect();
    assert_eq!(emails, ["\"ann@example.com\""]);
    assert_eq!(reads_from(&app, "replica").await, replica_reads + 6.0);

    // Control: once replayed, the same reads find Bob.
    pair.resume_replay().await;
    until_the_standby_finds(&app, "bob@example.com").await;
    let facets = app
        .get_json("/v1/facets?field=archetype&email=bob@example.com")
        .await;
    assert_ne!(facets["values"], json!([]), "{facets}");
    assert!(listed_lookups(&app).await.contains(&bob));
    app.stop().await;
}

#[tokio::test]
async fn when_the_standby_stops_reads_fall_back_to_the_primary_until_it_is_back() {
    let (mut pair, app) = ann_read_from_a_standby(Duration::from_secs(3600)).await;

    pair.stop_standby().await;
    let primary_reads = reads_from(&app, "primary").await;

    // Answered at once, by the primary: no error, nothing missing.
    assert_eq!(
        found(&app, "email=ann@example.com").await,
        ["ann@example.com"]
    );
    assert!(reads_from(&app, "primary").await > primary_reads);
    completed(&app, "bob@example.com").await;
    assert_eq!(
        found(&app, "email=bob@example.com").await,
        ["bob@example.com"]
    );

    pair.start_standby().await;
    until_the_standby_finds(&app, "bob@example.com").await;
    app.stop().await;
}

#[tokio::test]
async fn a_standby_further_behind_than_the_bound_is_bypassed_until_it_catches_up() {
    let (pair, app) = ann_read_from_a_standby(Duration::from_secs(1)).await;

    pair.pause_replay().await;
    completed(&app, "bob@example.com").await;

    // Only the primary has Bob: finding him means reads left the standby
    // once it was more than a second behind.
    until_found(&app, "bob@example.com").await;
    assert_eq!(app.metric("db_read_replica_usable").await, 0.0);
    assert!(app.metric("db_read_replica_lag_seconds").await > 1.0);

    pair.resume_replay().await;
    until_the_standby_finds(&app, "bob@example.com").await;
    app.stop().await;
}

#[sqlx::test]
async fn a_read_url_holding_another_database_stops_the_service_naming_it(db: PgPool) {
    // The same server, another database: never a replica of this one.
    let mut other = url::Url::parse(&crate::common::child::database_url(&db)).unwrap();
    other.set_path("/postgres");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut settings = Settings::sandbox();
    settings.database_read_url = Some(other.to_string());
    let config = crate::common::config_for(listener.local_addr().unwrap(), &settings);

    let refused =
        interests_receiver::app::Application::build_on(config, db, settings.options, listener)
            .await;

    let error = format!("{:#}", refused.err().expect("the service refuses to start"));
    assert!(error.contains("DATABASE_READ_URL"), "{error}");
}
