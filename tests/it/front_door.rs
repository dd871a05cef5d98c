//! What a new user meets first (issue 11, "the front door"): the README's
//! examples and metric list match what the service does, and a lookup with
//! no identifier says which fields would do.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::json;
use sqlx::PgPool;

use crate::common::{Settings, error_fields, problem, spawn};

fn readme() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap()
}

#[sqlx::test]
async fn a_lookup_with_no_identifier_names_all_four_identifier_fields(db: PgPool) {
    let app = spawn(db, Settings::sandbox()).await;
    let response = app.post_lookup(&json!({"company": "Acme"})).await;
    let body = problem(response, 422).await;
    let fields: BTreeSet<String> = error_fields(&body).into_iter().collect();
    let expected: BTreeSet<String> = ["email", "phone", "social_media_url", "name"]
        .map(String::from)
        .into();
    assert_eq!(fields, expected, "{body}");
    assert_eq!(app.count("select count(*) from lookups").await, 0);
}

#[sqlx::test]
async fn every_metric_the_service_exposes_is_in_the_readme(db: PgPool) {
    let app = spawn(db, Settings::sandbox()).await;
    let created = app
        .post_lookup(&json!({"email": "metrics.readme@example.com"}))
        .await;
    assert_eq!(created.status(), 202);
    let id = created.json::<serde_json::Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    app.wait_for_status(&id, "completed", Duration::from_secs(30))
        .await;

    let page = reqwest::get(app.url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let exposed: BTreeSet<String> = page
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let name = l.split(['{', ' ']).next().unwrap();
            // Histogram series share their base name.
            ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s))
                .unwrap_or(name)
                .to_owned()
        })
        .collect();
    assert!(exposed.contains("http_requests_total"), "{exposed:?}");
    let readme = readme();
    let metrics_line = readme
        .split("- `/metrics`:")
        .nth(1)
        .expect("README has a `/metrics` list")
        .split("\n- ")
        .next()
        .unwrap()
        .to_owned();
    let missing: Vec<&String> = exposed
        .iter()
        .filter(|m| {
            !metrics_line.contains(&format!("`{m}`")) && !metrics_line.contains(&format!("`{m}{{"))
        })
        .collect();
    assert!(
        missing.is_empty(),
        "/metrics exposes these, the README's list does not name them: {missing:?}"
    );
}

/// Does this comment promise an HTTP status code (a number 100..=599)?
fn promises_a_status(comment: &str) -> bool {
    comment
        .split(|c: char| !c.is_ascii_digit())
        .any(|n| n.len() == 3 && ('1'..='5').contains(&n.chars().next().unwrap()))
}

#[test]
fn every_readme_curl_example_that_promises_a_status_code_prints_it() {
    let readme = readme();
    let mut promising = 0;
    for block in readme
        .split("```sh")
        .skip(1)
        .filter_map(|block| block.split("```").next())
    {
        // The comment lines right above each curl say what it answers.
        let mut comment = String::new();
        for line in block.lines().map(str::trim_start) {
            if let Some(text) = line.strip_prefix('#') {
                comment.push_str(text);
            } else if line.starts_with("curl ") {
                if promises_a_status(&comment) {
                    promising += 1;
                    assert!(
                        line.contains("%{http_code}"),
                        "this README example promises a status code ({comment}) but does not show it: {line}"
                    );
                }
                comment.clear();
            } else if line.is_empty() {
                comment.clear();
            }
        }
    }
    assert!(promising >= 4, "the Try it examples promise status codes");
}
