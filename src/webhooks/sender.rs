//! The webhook sender: claims due sends from PostgreSQL in batches (so
//! replicas share the queue and each send is made by one of them), reads
//! what they need in one query per table for the whole batch, posts each
//! signed event, and hands the attempt to a recorder, which records the
//! attempts that ended meanwhile and reschedules or finishes their sends in
//! one transaction. No transaction is held across the HTTP call. It has a
//! small pool of its own, so that its sends neither wait behind requests
//! for a connection nor make requests wait.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sqlx::PgPool;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use url::Url;
use uuid::Uuid;

use super::guard::{self, GuardedResolver};
use super::{SEND_TIMEOUT, retry_delay, secret, signing};
use crate::secrets::ServiceSecret;
use crate::store::events::EventRecord;
use crate::store::queues::{self, Queue, VacuumPacer};
use crate::store::webhooks::{self as store, Attempt, Claim, Next, WebhookRecord};
use crate::store::{events, lookups};
use crate::views::LookupView;

/// Sends one replica makes at once; also the most it claims in one batch.
const CONCURRENCY: usize = 128;
/// Connections of the sender's own pool: claims, batch reads and the
/// recording of attempts.
pub const POOL_SIZE: u32 = 4;
/// Sends in flight to one endpoint, counting every replica's leases (two
/// replicas claiming at the same moment may each take up to this many): an
/// endpoint that never answers holds at most these slots (for
/// `SEND_TIMEOUT` each), and the others stay free for every other endpoint.
pub const PER_ENDPOINT: i64 = 32;
/// How long an idle sender waits before looking for due retries again (a
/// new event, or a send that ended, wakes it at once).
pub const IDLE_NAP: Duration = Duration::from_millis(250);
/// Longest error text kept per attempt.
const MAX_ERROR: usize = 500;

/// Everything the sender needs; cheap to clone.
#[derive(Clone)]
pub struct Sender {
    pub db: PgPool,
    pub keys: ServiceSecret,
    /// Identifies this process's leases.
    pub owner: Uuid,
    /// Factor applied to the retry schedule (tests make it small).
    pub retry_scale: f64,
    /// An endpoint failing every attempt for this long is disabled
    /// (`WEBHOOK_DISABLE_AFTER_DAYS`).
    pub disable_after: Duration,
    /// Changes when new events may exist.
    pub wake: watch::Receiver<u64>,
    pub allow_private: bool,
    client: reqwest::Client,
    /// How long an idle sender waits before looking for due retries again.
    idle_nap: Duration,
    /// Signalled when recorded attempts ended leases: an endpoint at its
    /// limit of sends in flight may take more now.
    freed: Arc<Notify>,
}

/// A claimed send with everything its POST needs.
struct Ready {
    claim: Claim,
    webhook: WebhookRecord,
    event: EventRecord,
    data: Value,
}

impl Sender {
    pub fn new(
        db: PgPool,
        keys: ServiceSecret,
        wake: watch::Receiver<u64>,
        allow_private: bool,
        retry_scale: f64,
        disable_after: Duration,
    ) -> Self {
        let client = reqwest::Client::builder()
            .timeout(SEND_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .dns_resolver(Arc::new(GuardedResolver { allow_private }))
            .user_agent(concat!("interests-receiver/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("webhook HTTP client builds");
        Sender {
            db,
            keys,
            owner: Uuid::new_v4(),
            retry_scale,
            disable_after,
            wake,
            allow_private,
            client,
            freed: Arc::new(Notify::new()),
            idle_nap: IDLE_NAP,
        }
    }

    /// The sender with another idle nap (tests make it long, to show that
    /// nothing waits for it).
    pub fn with_idle_nap(mut self, nap: Duration) -> Self {
        self.idle_nap = nap;
        self
    }

    /// A send is leased for longer than one attempt can take.
    fn lease(&self) -> Duration {
        SEND_TIMEOUT + Duration::from_secs(15)
    }

    /// Works the queue until `shutdown`, then gives back its leases.
    pub async fn run(mut self, shutdown: CancellationToken) {
        let tasks = TaskTracker::new();
        let permits = Arc::new(Semaphore::new(CONCURRENCY));
        // Each send holds its slot until its attempt is recorded; there are
        // never more attempts waiting than slots.
        let (record, recorded) = mpsc::channel(CONCURRENCY);
        let recorder = tokio::spawn(self.clone().record(recorded));
        loop {
            // One free slot at least, then every other free one: a batch
            // claims as many sends as can start now.
            let first = tokio::select! {
                _ = shutdown.cancelled() => break,
                p = permits.clone().acquire_owned() => p.expect("semaphore never closed"),
            };
            if record.is_closed() {
                // The recorder is gone (it panicked): a send made now could
                // not be recorded and would be made again.
                tracing::error!("the webhook recorder stopped; webhook sends stop");
                break;
            }
            let mut held = vec![first];
            while let Ok(p) = permits.clone().try_acquire_owned() {
                held.push(p);
            }
            match self.claim_ready(held.len()).await {
                Ok(ready) if !ready.is_empty() => {
                    // Slots beyond the batch go back as `held` is dropped.
                    for (send, permit) in ready.into_iter().zip(held) {
                        self.spawn_send(&tasks, &shutdown, &record, send, permit);
                    }
                    continue;
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "cannot claim webhook sends"),
            }
            drop(held);
            tokio::select! {
                _ = shutdown.cancelled() => break,
                // Without this, an endpoint whose sends all ended waited for
                // the next event or the nap for more (63 sends/s to a healthy
                // endpoint with a backlog and nothing new arriving).
                _ = self.freed.notified() => {}
                changed = self.wake.changed() => {
                    if changed.is_err() {
                        // The hub is gone (shutting down): nap instead of
                        // spinning, but stop as soon as asked.
                        tokio::select! {
                            _ = shutdown.cancelled() => break,
                            _ = tokio::time::sleep(self.idle_nap) => {}
                        }
                    }
                }
                _ = tokio::time::sleep(self.idle_nap) => {}
            }
        }
        tasks.close();
        tasks.wait().await;
        // Every send has ended: the recorder stops once it has recorded
        // what they handed it.
        drop(record);
        if recorder.await.is_err() {
            tracing::warn!("the webhook recorder panicked; unrecorded sends are made again");
        }
        if let Err(e) = store::release_leases(&self.db, self.owner).await {
            tracing::warn!(error = %e, "cannot release webhook leases; they will run out");
        }
        // The pool is the sender's own: nothing else uses it after this.
        self.db.close().await;
    }

    fn spawn_send(
        &self,
        tasks: &TaskTracker,
        shutdown: &CancellationToken,
        record: &mpsc::Sender<(Attempt, OwnedSemaphorePermit)>,
        send: Ready,
        permit: OwnedSemaphorePermit,
    ) {
        let sender = self.clone();
        let stop = shutdown.clone();
        let record = record.clone();
        tasks.spawn(async move {
            tokio::select! {
                biased;
                // Stopping mid-send: no attempt is recorded and the lease
                // is given back by `run`; the send is made again.
                _ = stop.cancelled() => {}
                attempt = sender.attempt(&send) => {
                    // The recorder outlives every send (see `run`).
                    let _ = record.send((attempt, permit)).await;
                }
            }
        });
    }

    /// Records attempts as they end, as many at once as have ended, until
    /// every send is over; then frees their slots.
    async fn record(self, mut ended: mpsc::Receiver<(Attempt, OwnedSemaphorePermit)>) {
        let mut batch = Vec::with_capacity(CONCURRENCY);
        let mut vacuum = VacuumPacer::new();
        while ended.recv_many(&mut batch, CONCURRENCY).await > 0 {
            let (attempts, permits): (Vec<Attempt>, Vec<OwnedSemaphorePermit>) =
                batch.drain(..).unzip();
            if vacuum.took(attempts.len() as u64) {
                // Each recorded attempt left a dead send row (deleted or
                // rescheduled) that the claims walk past.
                queues::vacuum_logged(&self.db, Queue::WebhookSends).await;
            }
            match store::record_attempts(&self.db, self.owner, &attempts, self.disable_after).await
            {
                Ok(disabled) => self.disabled(disabled),
                // One attempt must not cost the others their record (a
                // deadlock with a replay, say): each on its own.
                Err(e) if attempts.len() > 1 => {
                    tracing::warn!(error = %e, sends = attempts.len(), "webhook attempts failed to record together; recording each alone");
                    for attempt in &attempts {
                        self.record_alone(attempt).await;
                    }
                }
                Err(_) => self.record_alone(&attempts[0]).await,
            }
            drop(permits);
            // Stored if the claim loop is not waiting yet: it looks again.
            self.freed.notify_one();
        }
    }

    async fn record_alone(&self, attempt: &Attempt) {
        let one = std::slice::from_ref(attempt);
        match store::record_attempts(&self.db, self.owner, one, self.disable_after).await {
            Ok(disabled) => self.disabled(disabled),
            // The lease runs out and the send is made again.
            Err(e) => tracing::warn!(
                error = %e,
                event_id = attempt.claim.event_id,
                "webhook attempt failed to record"
            ),
        }
    }

    fn disabled(&self, endpoints: Vec<(Uuid, chrono::DateTime<chrono::Utc>)>) {
        for (webhook_id, failing_since) in endpoints {
            metrics::counter!("webhook_endpoints_disabled_total").increment(1);
            tracing::warn!(
                %webhook_id,
                %failing_since,
                "webhook endpoint disabled: every attempt failed since then; PATCH {{\"disabled\": false}} enables it"
            );
        }
    }

    /// Claims up to `n` due sends and reads their endpoints, events and
    /// lookups: four queries for the whole batch. A send whose endpoint,
    /// event or lookup is gone (deleted, purged, erased) is dropped: there
    /// is nothing left to send.
    async fn claim_ready(&self, n: usize) -> sqlx::Result<Vec<Ready>> {
        let claims =
            store::claim_due(&self.db, self.owner, self.lease(), PER_ENDPOINT, n as i64).await?;
        if claims.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<i64> = claims.iter().map(|c| c.send_id).collect();
        match self.ready(claims).await {
            Ok(ready) => Ok(ready),
            Err(e) => {
                // Given back at once, not when their leases run out.
                if let Err(e) = store::release(&self.db, self.owner, &ids).await {
                    tracing::warn!(error = %e, "cannot give back claimed webhook sends");
                }
                Err(e)
            }
        }
    }

    /// Reads what the claimed sends need: one query per table.
    async fn ready(&self, claims: Vec<Claim>) -> sqlx::Result<Vec<Ready>> {
        let webhook_ids: Vec<Uuid> = claims.iter().map(|c| c.webhook_id).collect();
        let event_ids: Vec<i64> = claims.iter().map(|c| c.event_id).collect();
        let (webhooks, events) = tokio::try_join!(
            store::get_many(&self.db, &webhook_ids),
            events::get_many(&self.db, &event_ids),
        )?;
        let lookup_ids: Vec<Uuid> = events
            .iter()
            .filter(|e| e.carried_data().is_none())
            .filter_map(|e| e.lookup_id)
            .collect();
        let lookups = if lookup_ids.is_empty() {
            Vec::new()
        } else {
            lookups::get_many(&self.db, &lookup_ids).await?
        };
        let webhooks: HashMap<Uuid, WebhookRecord> =
            webhooks.into_iter().map(|w| (w.id, w)).collect();
        let events: HashMap<i64, EventRecord> = events.into_iter().map(|e| (e.id, e)).collect();
        let lookups: HashMap<Uuid, Value> = lookups
            .into_iter()
            .map(|l| (l.id, json!(LookupView::from(l))))
            .collect();

        let mut ready = Vec::with_capacity(claims.len());
        for claim in claims {
            let webhook = webhooks.get(&claim.webhook_id);
            let event = events.get(&claim.event_id);
            let data = event.and_then(|e| match (e.carried_data(), e.lookup_id) {
                (Some(data), _) => Some(data),
                (None, Some(lookup_id)) => lookups.get(&lookup_id).cloned(),
                (None, None) => None,
            });
            match (webhook, event, data) {
                (Some(webhook), Some(event), Some(data)) => ready.push(Ready {
                    webhook: webhook.clone(),
                    event: event.clone(),
                    data,
                    claim,
                }),
                _ => store::drop_send(&self.db, claim.send_id).await?,
            }
        }
        Ok(ready)
    }

    /// Makes one attempt of a send: what it came to and what comes next.
    async fn attempt(&self, send: &Ready) -> Attempt {
        let Ready {
            claim,
            webhook,
            event,
            data,
        } = send;
        let body = serde_json::to_vec(&json!({
            "type": event.kind,
            "timestamp": event.at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "data": data,
        }))
        .expect("JSON serialises");

        let started = Instant::now();
        let outcome = match secret::open(&self.keys, webhook.id, &webhook.secret_sealed) {
            None => Err(
                "cannot decrypt the endpoint secret (SERVICE_SECRET changed without \
                 SERVICE_SECRET_PREVIOUS?)"
                    .to_owned(),
            ),
            Some(secret) => self.post(&webhook.url, &secret, event.id, &body).await,
        };
        let duration_ms = started.elapsed().as_millis().min(i32::MAX as u128) as i32;
        let failed = claim.attempts as u32 + 1;
        let attempt = match outcome {
            Ok(status) if (200..300).contains(&status) => Attempt {
                claim: claim.clone(),
                ok: true,
                status_code: Some(status),
                error: None,
                duration_ms,
                at: chrono::Utc::now(),
                next: Next::Done,
            },
            other => {
                let next = match retry_delay(failed, self.retry_scale) {
                    Some(delay) => Next::RetryAfter(delay),
                    None => {
                        tracing::warn!(
                            webhook_id = %webhook.id,
                            event_id = event.id,
                            "webhook send given up after the last retry"
                        );
                        Next::Done
                    }
                };
                let (status_code, error) = match other {
                    Ok(status) if (300..400).contains(&status) => {
                        (Some(status), Some("redirects are not followed".to_owned()))
                    }
                    Ok(status) => (Some(status), None),
                    Err(e) => (None, Some(e)),
                };
                Attempt {
                    claim: claim.clone(),
                    ok: false,
                    status_code,
                    error,
                    duration_ms,
                    at: chrono::Utc::now(),
                    next,
                }
            }
        };
        metrics::counter!(
            "webhook_attempts_total",
            "outcome" => if attempt.ok { "ok" } else { "failed" }
        )
        .increment(1);
        attempt
    }

    /// One signed POST; the status code, or why there was none.
    async fn post(
        &self,
        url: &str,
        secret: &str,
        event_id: i64,
        body: &[u8],
    ) -> Result<u16, String> {
        let url: Url = url.parse().map_err(|e| format!("invalid URL: {e}"))?;
        if !self.allow_private
            && let Some(ip) = guard::literal_is_forbidden(&url)
        {
            return Err(format!(
                "{ip} is a loopback, private or non-public address; refused"
            ));
        }
        let msg_id = event_id.to_string();
        let timestamp = chrono::Utc::now().timestamp();
        let signature =
            signing::sign(secret, &msg_id, timestamp, body).ok_or("malformed endpoint secret")?;
        let response = self
            .client
            .post(url)
            .header("content-type", "application/json")
            .header("webhook-id", &msg_id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(body.to_vec())
            .send()
            .await
            .map_err(describe)?;
        Ok(response.status().as_u16())
    }
}

/// A send error in words, its causes included (reqwest's own text is
/// terse), cut to a sane length.
fn describe(e: reqwest::Error) -> String {
    let mut text = if e.is_timeout() {
        format!("no answer within {} s", SEND_TIMEOUT.as_secs())
    } else {
        e.to_string()
    };
    let mut source = std::error::Error::source(&e);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text.chars().take(MAX_ERROR).collect()
}
