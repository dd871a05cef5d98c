//! Callback delivery to a real receiver: retries, the delivery hard cases
//! and their counts.

use std::time::Duration;

use axum::http::StatusCode;
use serde_json::json;

use super::*;

fn body(email: &str, callback_url: &str) -> String {
    json!({"email": email, "callback_url": callback_url}).to_string()
}

#[tokio::test]
async fn a_finished_job_is_posted_to_its_callback_and_retried_after_a_500() {
    let sandbox = sandbox(0.01);
    let (receiver, url) = Receiver::start(&[StatusCode::INTERNAL_SERVER_ERROR]).await;
    let id = submit_ok(&sandbox, &body("ann@example.com", &url)).await;
    // The receiver sees the retry before the sandbox records its answer:
    // wait for the acknowledgement too.
    eventually(|| async {
        receiver.received().len() == 2 && sandbox.stats().callbacks_acknowledged == 1
    })
    .await;
    let bodies = receiver.received();
    for delivered in &bodies {
        assert_eq!(delivered["success"], true);
        assert_eq!(delivered["data"]["request_id"], id.as_str());
        assert_eq!(delivered["data"]["status"], "completed");
        assert!(delivered["data"]["result"]["interest_graph"].is_object());
    }
    assert_eq!(bodies[0]["data"]["result"], bodies[1]["data"]["result"]);
    let stats = sandbox.stats();
    assert_eq!(
        (stats.callbacks_attempted, stats.callbacks_acknowledged),
        (2, 1)
    );
    let job = &sandbox.jobs()[0];
    assert_eq!((job.callback_attempts, job.callbacks_acknowledged), (2, 1));
    assert_eq!(job.callback_url.as_deref(), Some(url.as_str()));
}

#[tokio::test]
async fn delivery_gives_up_after_five_retries() {
    let sandbox = sandbox(0.001);
    let (receiver, url) = Receiver::start(&[StatusCode::BAD_GATEWAY; 10]).await;
    submit_ok(&sandbox, &body("ann@example.com", &url)).await;
    // Given up: the delivery has ended, so no attempt can follow.
    eventually(|| async { sandbox.stats().callbacks_abandoned == 1 }).await;
    assert_eq!(receiver.received().len(), 6);
    let stats = sandbox.stats();
    assert_eq!(stats.callbacks_attempted, 6);
    assert_eq!(stats.callbacks_acknowledged, 0);
}

#[tokio::test]
async fn a_failed_job_is_delivered_too() {
    let sandbox = sandbox(0.001);
    let (receiver, url) = Receiver::start(&[]).await;
    submit_ok(&sandbox, &body("ann+sandbox-fail@example.com", &url)).await;
    eventually(|| async { receiver.received().len() == 1 }).await;
    let delivered = &receiver.received()[0];
    assert_eq!(delivered["data"]["status"], "failed");
    assert!(delivered["data"]["error"].is_string());
}

#[tokio::test]
async fn no_callback_and_expire_deliver_nothing() {
    let sandbox = sandbox(0.001);
    let (receiver, url) = Receiver::start(&[]).await;
    let kept = submit_ok(&sandbox, &body("a+sandbox-no-callback@example.com", &url)).await;
    submit_ok(&sandbox, &body("b+sandbox-expire@example.com", &url)).await;
    let done = poll_until_done(&sandbox, &kept).await;
    assert_eq!(done.body["data"]["status"], "completed");
    eventually(|| async { sandbox.jobs()[1].status == "expired" }).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(receiver.received().is_empty());
    assert_eq!(sandbox.stats().callbacks_attempted, 0);
}

#[tokio::test]
async fn duplicate_callback_delivers_twice_and_concurrent_callback_three_times() {
    let sandbox = sandbox(0.001);
    let (twice, twice_url) = Receiver::start(&[]).await;
    let (thrice, thrice_url) = Receiver::start(&[]).await;
    let a = submit_ok(
        &sandbox,
        &body("a+sandbox-duplicate-callback@example.com", &twice_url),
    )
    .await;
    let b = submit_ok(
        &sandbox,
        &body("b+sandbox-concurrent-callback@example.com", &thrice_url),
    )
    .await;
    // A delivery counts as acknowledged once its 2xx came back, after the
    // receiver saw it: wait for that, not for the receivers alone.
    eventually(|| async { sandbox.stats().callbacks_acknowledged == 5 }).await;
    assert_eq!(twice.received().len(), 2);
    assert_eq!(thrice.received().len(), 3);
    assert!(
        twice
            .received()
            .iter()
            .all(|d| d["data"]["request_id"] == a.as_str())
    );
    assert!(
        thrice
            .received()
            .iter()
            .all(|d| d["data"]["request_id"] == b.as_str())
    );
    assert_eq!(sandbox.stats().callbacks_acknowledged, 5);
}

#[tokio::test]
async fn callback_first_delivers_the_result_before_the_submit_is_answered() {
    let sandbox = sandbox(0.01);
    let (receiver, url) = Receiver::start(&[]).await;
    let id = submit_ok(
        &sandbox,
        &body("ann+sandbox-callback-first@example.com", &url),
    )
    .await;
    let delivered = receiver.received();
    assert_eq!(delivered.len(), 1, "no callback before the submit answer");
    assert_eq!(delivered[0]["data"]["request_id"], id.as_str());
    assert_eq!(delivered[0]["data"]["status"], "completed");
    assert_eq!(
        poll(&sandbox, &id).await.body["data"]["status"],
        "completed"
    );
}
