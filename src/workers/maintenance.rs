//! Periodic housekeeping: abandoned submits become ambiguous, overdue jobs
//! expire, the pacing ledger is pruned; about once a minute, retention;
//! after a start, lookups' identities are re-keyed under the current
//! SERVICE_SECRET until none is left; every 20 s, the scheduled refresh
//! (REFRESH_AFTER_DAYS).

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::WorkerContext;
use crate::store::queues::{self, Queue, VacuumPacer};
use crate::store::{events, facets, pacing, retention, work};

const EVERY: Duration = Duration::from_secs(2);
/// Ledger rows older than this count in no window and no statistic.
const LEDGER_KEEP: Duration = Duration::from_secs(2 * 86_400);
/// Retention runs on one tick in this many.
const RETENTION_EVERY_TICKS: u64 = 30;
/// Lookups re-keyed per tick.
const REKEY_BATCH: i64 = 500;
/// The scheduled refresh looks for stale profiles on one tick in this many
/// (the contract asks for at least once a minute).
const REFRESH_EVERY_TICKS: u64 = 10;

pub(super) async fn run(ctx: WorkerContext, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(EVERY);
    let mut ticks: u64 = 0;
    // The secret does not change while the process runs: once every lookup
    // is under it, there is nothing more to look for.
    let mut rekeying = true;
    loop {
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        if let Err(e) = once(&ctx).await {
            tracing::warn!(error = %e, "maintenance failed; retrying");
        }
        if ticks.is_multiple_of(RETENTION_EVERY_TICKS)
            && let Err(e) = retention(&ctx).await
        {
            tracing::warn!(error = %e, "retention purge failed; retrying later");
        }
        if rekeying {
            match crate::lookups::rekey_identities(&ctx.db, &ctx.secret, REKEY_BATCH).await {
                Ok(None) => rekeying = false,
                // Every one left is locked by a request just now.
                Ok(Some(0)) => {}
                Ok(Some(n)) => {
                    tracing::info!(lookups = n, "identities re-keyed under the current secret")
                }
                Err(e) => tracing::warn!(error = %e, "re-keying identities failed; retrying"),
            }
        }
        if ticks.is_multiple_of(REFRESH_EVERY_TICKS)
            && let Some(schedule) = &ctx.refresh
        {
            match crate::refresh::scheduled(&ctx.db, schedule.policy(), schedule.after).await {
                Ok(0) => {}
                Ok(queued) => {
                    ctx.wake.notify_one();
                    tracing::info!(queued, "scheduled refreshes queued");
                }
                Err(e) => tracing::warn!(error = %e, "scheduled refresh failed; retrying later"),
            }
        }
        ticks += 1;
    }
}

async fn once(ctx: &WorkerContext) -> sqlx::Result<()> {
    let abandoned = work::recover_abandoned_submits(&ctx.db, ctx.ambiguous_wait).await?;
    if abandoned > 0 {
        tracing::warn!(
            abandoned,
            "submits interrupted by a crash are treated as ambiguous"
        );
    }
    let expired = work::expire_overdue(
        &ctx.db,
        ctx.job_deadline,
        "job_deadline_exceeded: no result within JOB_DEADLINE_SECS",
    )
    .await?;
    if expired > 0 {
        tracing::warn!(expired, "jobs passed their deadline");
    }
    pacing::prune(&ctx.db, LEDGER_KEEP).await?;
    let folded = facets::fold(&ctx.db, false).await?;
    if folded >= VacuumPacer::EVERY_ROWS as i64 {
        // The fold takes its queue's rows as the sequencer does its own.
        queues::vacuum_logged(&ctx.db, Queue::FacetChanges).await;
    }
    // Events are the replay window of `GET /v1/events` and webhook replays:
    // 7 days (and they go earlier with an erased or purged lookup).
    events::purge(&ctx.db, events::MIN_KEEP).await?;
    Ok(())
}

async fn retention(ctx: &WorkerContext) -> sqlx::Result<()> {
    let deliveries = retention::purge_deliveries(&ctx.db, ctx.retention.deliveries).await?;
    let lookups = match ctx.retention.lookups {
        Some(keep) => retention::purge_lookups(&ctx.db, keep).await?,
        None => 0,
    };
    if deliveries + lookups > 0 {
        tracing::info!(deliveries, lookups, "retention purge");
    }
    Ok(())
}
