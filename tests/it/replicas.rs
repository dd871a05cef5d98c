//! Two `serve` processes on one database share the work: no double submits,
//! no duplicate profiles, and a callback may land on either replica.

use std::collections::HashMap;
use std::time::Duration;

use crate::common::TOKEN;
use crate::common::child::{Child, TestSandbox, database_url, free_port, serve_env};
use futures::future::join_all;
use serde_json::{Value, json};
use sqlx::PgPool;

#[sqlx::test]
async fn two_replicas_share_the_work_without_double_submits(db: PgPool) {
    let sandbox = TestSandbox::start(0.02).await;
    let (port_a, port_b) = (free_port(), free_port());
    let url = database_url(&db);
    // Each replica announces the *other* one as its callback address, so
    // every delivery lands on a replica that did not submit the job.
    let a = Child::serve(&serve_env(&url, &sandbox, port_a, port_b)).await;
    let b = Child::serve(&serve_env(&url, &sandbox, port_b, port_a)).await;
    let http = reqwest::Client::new();

    let cases = [
        "",
        "+sandbox-duplicate-callback",
        "+sandbox-concurrent-callback",
    ];
    let people: Vec<String> = (0..30)
        .map(|i| format!("p{i}{}@example.com", cases[i % 3]))
        .collect();
    // Every person is asked for on both replicas at the same time.
    let posts = people.iter().flat_map(|email| {
        [&a.base, &b.base].map(|base| {
            http.post(format!("{base}/v1/lookups"))
                .bearer_auth(TOKEN)
                .json(&json!({"email": email}))
                .send()
        })
    });
    let mut ids: HashMap<String, Vec<String>> = HashMap::new();
    for response in join_all(posts).await {
        let body: Value = response.unwrap().json().await.unwrap();
        ids.entry(body["subject"]["email"].as_str().unwrap().to_owned())
            .or_default()
            .push(body["id"].as_str().unwrap().to_owned());
    }
    for (email, both) in &ids {
        assert_eq!(both[0], both[1], "{email} got two lookups");
    }

    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let completed: i64 =
            sqlx::query_scalar("SELECT count(*) FROM lookups WHERE status = 'completed'")
                .fetch_one(&db)
                .await
                .unwrap();
        if completed == people.len() as i64 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {completed} completed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Every extra delivery has arrived too: a "duplicate-callback" person
    // is delivered twice (1 duplicate), a "concurrent-callback" one three
    // times at once (2 duplicates); 10 people of each.
    let expected_duplicates = 10 + 2 * 10;
    loop {
        let duplicates: i64 =
            sqlx::query_scalar("SELECT count(*) FROM deliveries WHERE outcome = 'duplicate'")
                .fetch_one(&db)
                .await
                .unwrap();
        if duplicates == expected_duplicates {
            break;
        }
        assert!(
            duplicates < expected_duplicates && tokio::time::Instant::now() < deadline,
            "{duplicates} of {expected_duplicates} duplicate deliveries"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let jobs = sandbox.sandbox.jobs();
    assert_eq!(jobs.len(), people.len(), "some person was submitted twice");
    for email in &people {
        assert_eq!(sandbox.jobs_for(email), 1, "{email} submitted twice");
    }
    let profiles: i64 = sqlx::query_scalar("SELECT count(*) FROM profiles")
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(profiles, people.len() as i64);
    let applied: i64 =
        sqlx::query_scalar("SELECT count(*) FROM deliveries WHERE outcome = 'applied'")
            .fetch_one(&db)
            .await
            .unwrap();
    assert_eq!(applied, people.len() as i64);
    a.kill9().await;
    b.kill9().await;
}
