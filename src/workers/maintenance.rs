//! Periodic housekeeping: abandoned submits become ambiguous, overdue jobs
//! expire, the pacing ledger is pruned.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::WorkerContext;
use crate::store::{pacing, work};

const EVERY: Duration = Duration::from_secs(2);
/// Ledger rows older than this count in no window and no statistic.
const LEDGER_KEEP: Duration = Duration::from_secs(2 * 86_400);

pub(super) async fn run(ctx: WorkerContext, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(EVERY);
    loop {
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        if let Err(e) = once(&ctx).await {
            tracing::warn!(error = %e, "maintenance failed; retrying");
        }
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
    crate::store::events::purge(&ctx.db, crate::store::events::MIN_KEEP).await?;
    Ok(())
}
