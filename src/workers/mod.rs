//! Background work of a replica: one dispatcher that takes a rate slot,
//! claims the most urgent job (submits before polls) and runs it, plus a
//! maintenance loop. Everything in flight is in PostgreSQL; a replica that
//! dies leaves leases that run out and are taken over.

mod maintenance;
mod poll;
mod submit;

use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use sqlx::PgPool;
use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use url::Url;
use uuid::Uuid;

use crate::store::work;
use crate::upstream::{Pacer, UpstreamClient};

/// How long an idle dispatcher sleeps before looking for due work again
/// (a local new lookup wakes it at once).
const IDLE_NAP: Duration = Duration::from_millis(250);

/// Everything a worker needs; cheap to clone.
#[derive(Clone)]
pub struct WorkerContext {
    pub db: PgPool,
    pub client: UpstreamClient,
    pub pacer: Pacer,
    /// Identifies this process's leases.
    pub owner: Uuid,
    /// Base of callback URLs; `None`: results arrive by polling alone.
    pub callback_base: Option<Url>,
    pub poll_after: Duration,
    /// `None`: an ambiguous submit is never re-sent automatically.
    pub ambiguous_wait: Option<Duration>,
    pub job_deadline: Duration,
    /// Lease of a claimed job; longer than one upstream call can take.
    pub lease: Duration,
    pub concurrency: usize,
    /// Woken when a lookup is created, so it is submitted without delay.
    pub wake: Arc<Notify>,
    /// Callback tokens.
    pub gate: Arc<crate::callbacks::CallbackGate>,
    /// What is written of polled payloads.
    pub intake: crate::callbacks::Intake,
    /// Keys identity hashes (the re-keying pass after a rotation).
    pub secret: crate::secrets::ServiceSecret,
    pub retention: Retention,
    /// REFRESH_AFTER_DAYS; `None`: no scheduled refresh.
    pub refresh: Option<RefreshSchedule>,
}

/// The scheduled refresh: its period and the lookup policy its refreshes
/// are requested under.
#[derive(Clone)]
pub struct RefreshSchedule {
    pub after: Duration,
    pub secret: crate::secrets::ServiceSecret,
    pub synthetic: bool,
    pub profile_cache: Duration,
    pub credit_budget_daily: Option<u64>,
    pub refresh_credits_daily: Option<u64>,
}

impl RefreshSchedule {
    pub fn policy(&self) -> crate::lookups::Policy<'_> {
        crate::lookups::Policy {
            secret: &self.secret,
            synthetic: self.synthetic,
            profile_cache: self.profile_cache,
            credit_budget_daily: self.credit_budget_daily,
            refresh_credits_daily: self.refresh_credits_daily,
            service_refresh: true,
            // The person was looked up before, under the policy of then.
            name_only: crate::config::NameOnlyLookups::Allow,
        }
    }
}

/// How long records are kept (contract section 4).
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    /// RETENTION_DELIVERY_DAYS.
    pub deliveries: Duration,
    /// RETENTION_PROFILE_DAYS; `None`: finished lookups are kept.
    pub lookups: Option<Duration>,
}

impl WorkerContext {
    pub fn callback_url(&self, lookup_id: Uuid, token: &str) -> Option<String> {
        self.callback_base.as_ref().map(|base| {
            format!(
                "{}/callbacks/{lookup_id}/{token}",
                base.as_str().trim_end_matches('/')
            )
        })
    }
}

/// Runs the dispatcher and maintenance until `shutdown`, then waits for the
/// calls in flight and gives back this replica's leases.
pub async fn run(ctx: WorkerContext, shutdown: CancellationToken) {
    let tasks = TaskTracker::new();
    tasks.spawn(maintenance::run(ctx.clone(), shutdown.clone()));
    dispatch(&ctx, &tasks, &shutdown).await;
    tasks.close();
    tasks.wait().await;
    match work::release_leases(&ctx.db, ctx.owner).await {
        Ok(n) => tracing::info!(released = n, "workers stopped"),
        Err(e) => tracing::warn!(error = %e, "workers stopped; leases will run out instead"),
    }
}

async fn dispatch(ctx: &WorkerContext, tasks: &TaskTracker, shutdown: &CancellationToken) {
    let permits = Arc::new(Semaphore::new(ctx.concurrency));
    loop {
        // `biased`: once shutdown began, no new work starts, even when a
        // permit is free at the same moment.
        let permit = tokio::select! {
            biased;
            _ = shutdown.cancelled() => return,
            p = permits.clone().acquire_owned() => p.expect("semaphore never closed"),
        };
        match work::work_is_due(&ctx.db).await {
            Ok(true) => {}
            Ok(false) => {
                drop(permit);
                nap(ctx, shutdown).await;
                continue;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the work queue");
                drop(permit);
                nap(ctx, shutdown).await;
                continue;
            }
        }
        let Some(slot) = ctx.pacer.acquire(shutdown).await else {
            return;
        };
        if shutdown.is_cancelled() {
            ctx.pacer.cancel(slot).await;
            return;
        }
        // Submits first: a new paid job matters more than a poll.
        match work::claim_submit(&ctx.db, ctx.owner, ctx.lease).await {
            Ok(Some(claim)) => {
                let ctx = ctx.clone();
                tasks.spawn(async move {
                    submit::run(&ctx, claim, slot).await;
                    drop(permit);
                });
                continue;
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "cannot claim a submit"),
        }
        match work::claim_poll(&ctx.db, ctx.owner, ctx.lease).await {
            Ok(Some(claim)) => {
                let ctx = ctx.clone();
                tasks.spawn(async move {
                    poll::run(&ctx, claim, slot).await;
                    drop(permit);
                });
            }
            Ok(None) => {
                // Another replica took it first.
                ctx.pacer.cancel(slot).await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot claim a poll");
                ctx.pacer.cancel(slot).await;
            }
        }
    }
}

async fn nap(ctx: &WorkerContext, shutdown: &CancellationToken) {
    tokio::select! {
        biased;
        _ = shutdown.cancelled() => {}
        _ = ctx.wake.notified() => {}
        _ = tokio::time::sleep(IDLE_NAP) => {}
    }
}

/// A write after an upstream call found that another worker took the job
/// over (this worker's lease ran out: a stalled network, an overloaded
/// pool). Nothing was written; the new owner's outcome stands.
fn lease_lost(kind: &'static str) {
    metrics::counter!("worker_leases_lost_total", "kind" => kind).increment(1);
    tracing::warn!(
        kind,
        "lease lost: another worker took this job over; this outcome was not written"
    );
}

/// Capped exponential backoff with jitter for attempt `n` (1-based): about
/// 2 s, 4 s, 8 s, ... up to 5 minutes, each scaled by a random 50-100 %.
pub(crate) fn backoff(attempt: u32) -> Duration {
    let base = Duration::from_secs(2).saturating_mul(1 << attempt.saturating_sub(1).min(16));
    let capped = base.min(Duration::from_secs(300));
    capped.mul_f64(rand::rng().random_range(0.5..=1.0))
}

/// Interval before the next poll of a job still running: grows by half each
/// time from `first`, up to 30 minutes (or `first`, if that is longer).
pub(crate) fn next_poll_interval(first: Duration, polls_made: i32) -> Duration {
    let cap = first.max(Duration::from_secs(1800));
    let grown = first.mul_f64(1.5f64.powi(polls_made.clamp(0, 40)));
    grown.min(cap)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        assert!(backoff(1) <= Duration::from_secs(2));
        assert!(backoff(3) >= Duration::from_secs(4));
        assert!(backoff(40) <= Duration::from_secs(300));
    }

    #[test]
    fn poll_intervals_grow_to_a_cap() {
        let first = Duration::from_secs(15);
        assert_eq!(next_poll_interval(first, 0), first);
        assert!(next_poll_interval(first, 3) > next_poll_interval(first, 2));
        assert_eq!(next_poll_interval(first, 40), Duration::from_secs(1800));
    }
}
