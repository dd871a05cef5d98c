//! `GET /v1/deliveries`: the callback deliveries that reached the service.

use std::time::Duration;

use crate::common::{Settings, error_fields, problem, spawn};
use serde_json::{Value, json};
use sqlx::PgPool;

#[sqlx::test]
async fn deliveries_are_listed_newest_first_by_lookup_and_outcome_without_bodies(db: PgPool) {
    let app = spawn(db, Settings::sandbox()).await;
    let response = app
        .post_lookup(&json!({"email": "dup+sandbox-duplicate-callback@example.com"}))
        .await;
    let id = response.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let other = app
        .post_lookup(&json!({"email": "other@example.com"}))
        .await;
    let other_id = other.json::<Value>().await.unwrap()["id"].clone();
    app.wait_for_status(&id, "completed", Duration::from_secs(20))
        .await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let sql = format!("SELECT count(*) FROM deliveries WHERE lookup_id = '{id}'");
    while app.count(&sql).await < 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no duplicate delivery"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }

    let page = app
        .get_json(&format!("/v1/deliveries?lookup_id={id}"))
        .await;
    let items = page["items"].as_array().unwrap();
    assert_eq!(items.len() as i64, app.count(&sql).await);
    for item in items {
        assert_eq!(item["lookup_id"], json!(id));
        assert!(item.get("body").is_none(), "{item}");
        assert!(item["received_at"].as_str().is_some());
        assert!(item["request_id"].as_str().is_some());
        assert_eq!(item["payload_status"], "completed");
    }
    let ids: Vec<i64> = items.iter().map(|i| i["id"].as_i64().unwrap()).collect();
    let mut sorted = ids.clone();
    sorted.sort_unstable_by(|a, b| b.cmp(a));
    assert_eq!(ids, sorted, "newest first");
    assert!(items.iter().any(|i| i["outcome"] == "applied"));
    assert!(items.iter().all(|i| i["lookup_id"] != other_id));

    let duplicates = app
        .get_json(&format!("/v1/deliveries?lookup_id={id}&outcome=duplicate"))
        .await;
    let duplicates = duplicates["items"].as_array().unwrap();
    assert!(!duplicates.is_empty());
    assert!(duplicates.iter().all(|i| i["outcome"] == "duplicate"));

    // Paging one at a time walks the same list.
    let mut walked = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/v1/deliveries?lookup_id={id}&limit=1&cursor={c}"),
            None => format!("/v1/deliveries?lookup_id={id}&limit=1"),
        };
        let page = app.get_json(&path).await;
        walked.extend(
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| i["id"].as_i64().unwrap()),
        );
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!(walked, ids);

    let bad = problem(
        app.get("/v1/deliveries?outcome=maybe&lookup_id=x").await,
        422,
    )
    .await;
    let mut fields = error_fields(&bad);
    fields.sort();
    assert_eq!(fields, vec!["lookup_id", "outcome"]);
    let bad = problem(app.get("/v1/deliveries?cursor=zzz").await, 422).await;
    assert_eq!(error_fields(&bad), vec!["cursor"]);
    app.stop().await;
}
