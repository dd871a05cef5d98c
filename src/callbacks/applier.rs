//! Authentic deliveries applied in groups: each request hands its parsed
//! delivery to a few applier tasks and waits for its own outcome, which it
//! gets only once its group has committed. An idle applier takes a delivery
//! at once, alone, so a quiet service answers as fast as before; under a
//! burst the deliveries that arrived while every applier was busy go
//! together in one statement and one commit (`apply_job_updates`): one
//! round trip and one WAL flush for the group instead of four round trips
//! and a flush each. Measured in BENCHMARKS.md (issue 16).
//!
//! A group that fails is applied again one delivery at a time, so one bad
//! delivery (or a deadlock) never costs the others their answer, and every
//! request still gets the outcome of its own delivery.

use std::sync::Arc;

use serde_json::Value;
use sqlx::PgPool;
use tokio::sync::{Mutex, mpsc, oneshot};
use uuid::Uuid;

use crate::crashpoint;
use crate::lifecycle::{JobUpdate, Outcome};
use crate::store::results::{self, DeliveryRecord, Received};

/// Most deliveries applied in one group: enough that a group's commit
/// covers a burst on 32 connections, few enough that one group's locks
/// and statement stay short.
const MAX_GROUP: usize = 64;
/// Most applier tasks, each holding a pool connection while it applies.
const MAX_APPLIERS: u32 = 4;
/// A group's transaction, begun with a bound on how long it waits for a
/// lookup's row lock before it is applied again one delivery at a time
/// (then that delivery alone answers 5xx and upstream retries it). One
/// round trip for both.
const BEGIN: &str = "BEGIN; SET LOCAL lock_timeout = '5s'";
/// Deliveries waiting for an applier before a request waits to hand its
/// own over.
const QUEUE: usize = 1024;

/// A delivery ready to apply: parsed and made fit to store.
pub struct Ready {
    pub lookup_id: Uuid,
    pub update: JobUpdate,
    pub body_sha256: String,
    pub body: Value,
}

impl Ready {
    /// This delivery as the store applies it.
    pub fn received(&self) -> Received<'_> {
        Received {
            lookup_id: self.lookup_id,
            update: &self.update,
            delivery: DeliveryRecord {
                body_sha256: &self.body_sha256,
                body: &self.body,
            },
        }
    }
}

struct Job {
    ready: Ready,
    reply: oneshot::Sender<sqlx::Result<Outcome>>,
}

/// The handle requests hand their deliveries to.
#[derive(Clone)]
pub struct Applier {
    queue: mpsc::Sender<Job>,
}

impl Applier {
    /// Starts the appliers on `db`: at most half its connections, so that
    /// requests always find one. They stop when every handle is dropped.
    pub fn start(db: PgPool, max_connections: u32) -> Applier {
        let (queue, rx) = mpsc::channel(QUEUE);
        let rx = Arc::new(Mutex::new(rx));
        for _ in 0..(max_connections / 2).clamp(1, MAX_APPLIERS) {
            tokio::spawn(run(db.clone(), rx.clone()));
        }
        Applier { queue }
    }

    /// Applies `ready` and records it, durably, and answers its outcome.
    pub async fn apply(&self, ready: Ready) -> sqlx::Result<Outcome> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send(Job { ready, reply })
            .await
            .map_err(|_| sqlx::Error::WorkerCrashed)?;
        answer.await.map_err(|_| sqlx::Error::WorkerCrashed)?
    }
}

async fn run(db: PgPool, rx: Arc<Mutex<mpsc::Receiver<Job>>>) {
    loop {
        let group = {
            let mut rx = rx.lock().await;
            let Some(first) = rx.recv().await else {
                return;
            };
            let mut group = vec![first];
            while group.len() < MAX_GROUP {
                match rx.try_recv() {
                    Ok(job) => group.push(job),
                    Err(_) => break,
                }
            }
            group
        };
        // A task of its own per group: a panic there drops the group's
        // replies (its requests answer 503, nothing of it committed) and
        // this applier goes on with the next group.
        let _ = tokio::spawn(apply_group(db.clone(), group)).await;
    }
}

async fn apply_group(db: PgPool, group: Vec<Job>) {
    metrics::histogram!("callback_group_size").record(group.len() as f64);
    let readies: Vec<&Ready> = group.iter().map(|j| &j.ready).collect();
    match commit(&db, &readies).await {
        Ok(outcomes) => {
            for (job, outcome) in group.into_iter().zip(outcomes) {
                let _ = job.reply.send(Ok(outcome));
            }
        }
        // The database refused the group (a deadlock, a lock wait past
        // the lock timeout of BEGIN, one delivery it cannot take): nothing of it was
        // committed, and each delivery alone gets its own answer.
        Err(sqlx::Error::Database(e)) if group.len() > 1 => {
            tracing::warn!(error = %e, deliveries = group.len(),
                "a group of deliveries failed; applying them one at a time");
            for job in group {
                let result = commit(&db, &[&job.ready]).await.map(|mut o| o.remove(0));
                let _ = job.reply.send(result);
            }
        }
        // Anything else (no connection, the connection lost, maybe during
        // the commit): trying each again would wait as long once per
        // delivery, and after a lost commit would record them twice.
        // Every request answers 503 and upstream retries; a retry of a
        // delivery that did commit is a duplicate.
        Err(e) => {
            let text = e.to_string();
            let mut first = Some(e);
            for job in group {
                let e = first
                    .take()
                    .unwrap_or_else(|| sqlx::Error::Io(std::io::Error::other(text.clone())));
                let _ = job.reply.send(Err(e));
            }
        }
    }
}

/// Applies `group` in one transaction and commits it.
async fn commit(db: &PgPool, group: &[&Ready]) -> sqlx::Result<Vec<Outcome>> {
    let received: Vec<Received<'_>> = group.iter().map(|r| r.received()).collect();
    crashpoint::reach("callback_before_commit").await;
    // A group waits for its slowest lookup lock: bounded, so that one
    // delivery stuck behind a long transaction (an erasure, say) fails
    // alone in the one-by-one retry instead of holding up its group.
    let mut tx = db.begin_with(BEGIN).await?;
    let outcomes = results::apply_deliveries(&mut tx, &received).await?;
    tx.commit().await?;
    crashpoint::reach("callback_after_commit").await;
    Ok(outcomes)
}
