//! Polling one claimed job whose result has not arrived by callback.

use chrono::Utc;
use tracing::Instrument;

use super::{WorkerContext, backoff, next_poll_interval};
use crate::crashpoint;
use crate::lifecycle::{JobState, JobUpdate, Outcome};
use crate::store::results;
use crate::store::work::{self, PollClaim};
use crate::upstream::PollOutcome;
use crate::upstream::pacer::Slot;

pub(super) async fn run(ctx: &WorkerContext, claim: PollClaim, slot: Slot) {
    let span = tracing::info_span!("poll", lookup_id = %claim.id, request_id = %claim.request_id);
    poll(ctx, claim, slot).instrument(span).await;
}

async fn poll(ctx: &WorkerContext, claim: PollClaim, slot: Slot) {
    ctx.pacer.sending(&slot).await;
    let (outcome, rate) = ctx.client.poll(&claim.request_id).await;
    let label = match &outcome {
        PollOutcome::Job(_) => "ok",
        PollOutcome::NotFound => "not_found",
        PollOutcome::Retry { .. } => "error",
    };
    ctx.pacer.record(slot, "poll", label, &rate).await;
    crashpoint::reach("after_poll_answer").await;

    let recorded = match outcome {
        PollOutcome::Job(update) => match update.state {
            JobState::Completed { .. } | JobState::Failed { .. } => {
                let mut update = update;
                ctx.intake.update(&mut update);
                apply(ctx, &claim, &update).await
            }
            JobState::Queued | JobState::Processing => {
                let wait = next_poll_interval(ctx.poll_after, claim.poll_count);
                let at = Utc::now() + chrono::Duration::from_std(wait).unwrap_or_default();
                work::poll_running(&ctx.db, claim.claim(), update.status(), at).await
            }
        },
        PollOutcome::NotFound => {
            tracing::warn!("upstream no longer knows the job; expired");
            work::poll_not_found(
                &ctx.db,
                claim.claim(),
                "request_not_found: upstream does not know this request_id (unknown or expired)",
            )
            .await
        }
        PollOutcome::Retry { reason } => {
            let wait = rate
                .retry_after
                .unwrap_or_else(|| backoff((claim.poll_count + 1) as u32));
            tracing::warn!(%reason, retry_in = ?wait, "poll failed; will retry");
            let at = Utc::now() + chrono::Duration::from_std(wait).unwrap_or_default();
            work::poll_retry(&ctx.db, claim.claim(), at).await
        }
    };
    match recorded {
        Ok(true) => {}
        Ok(false) => super::lease_lost("poll"),
        Err(e) => {
            tracing::error!(error = %e, "could not record the poll outcome; the lease will run out")
        }
    }
}

/// Applies a final answer. The result itself is applied whoever holds the
/// lease (it is authentic and paid for, and applying is idempotent); only
/// the poll bookkeeping needs the claim.
async fn apply(
    ctx: &WorkerContext,
    claim: &PollClaim,
    update: &JobUpdate,
) -> sqlx::Result<work::Owned> {
    let mut tx = ctx.db.begin().await?;
    let outcome = results::apply(&mut tx, claim.id, update).await?;
    // Erased (or purged) while the poll was on its way: its credits are
    // counted, nothing else is left to record.
    let owned =
        outcome == Outcome::Gone || work::poll_retry(&mut *tx, claim.claim(), Utc::now()).await?;
    tx.commit().await?;
    metrics::counter!("results_total", "via" => "poll", "outcome" => outcome.as_str()).increment(1);
    tracing::info!(
        outcome = outcome.as_str(),
        status = update.status().as_str(),
        "poll result"
    );
    Ok(owned)
}
