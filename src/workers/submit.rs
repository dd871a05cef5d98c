//! Sending one claimed lookup upstream and recording what came of it.

use chrono::Utc;
use tracing::Instrument;

use super::{WorkerContext, backoff};
use crate::crashpoint;
use crate::store::work::{self, SubmitClaim};
use crate::upstream::SubmitOutcome;
use crate::upstream::pacer::Slot;

pub(super) async fn run(ctx: &WorkerContext, claim: SubmitClaim, slot: Slot) {
    let span =
        tracing::info_span!("submit", lookup_id = %claim.id, attempt = claim.submit_attempts);
    submit(ctx, claim, slot).instrument(span).await;
}

async fn submit(ctx: &WorkerContext, claim: SubmitClaim, slot: Slot) {
    let token = ctx
        .gate
        .token_for(claim.id, claim.callback_token.as_deref());
    let callback_url = ctx.callback_url(claim.id, &token);
    crashpoint::reach("before_submit").await;
    ctx.pacer.sending(&slot).await;
    let sent = ctx.client.submit(&claim.subject, callback_url.as_deref());
    let (outcome, rate) = crashpoint::during("submit_in_flight", sent).await;
    let label = match &outcome {
        SubmitOutcome::Accepted { .. } => "accepted",
        SubmitOutcome::NotAccepted { .. } => "refused",
        SubmitOutcome::Ambiguous { .. } => "ambiguous",
    };
    ctx.pacer.record(slot, "submit", label, &rate).await;

    let recorded = match outcome {
        SubmitOutcome::Accepted { request_id } => {
            crashpoint::reach("after_submit_accepted").await;
            tracing::info!(request_id = %request_id, "submitted");
            work::submit_accepted(&ctx.db, claim.claim(), &request_id, ctx.poll_after).await
        }
        SubmitOutcome::NotAccepted {
            reason,
            permanent: true,
        } => {
            tracing::warn!(%reason, "upstream refused the lookup; it fails");
            work::submit_rejected(&ctx.db, claim.claim(), &reason).await
        }
        SubmitOutcome::NotAccepted { reason, .. } => {
            let wait = rate
                .retry_after
                .unwrap_or_else(|| backoff(claim.submit_attempts.max(1) as u32));
            tracing::warn!(%reason, retry_in = ?wait, "submit not accepted; will retry");
            let retry_at = Utc::now() + chrono::Duration::from_std(wait).unwrap_or_default();
            work::submit_not_accepted(&ctx.db, claim.claim(), retry_at).await
        }
        SubmitOutcome::Ambiguous { reason } => {
            metrics::counter!("upstream_ambiguous_submits_total").increment(1);
            match ctx.ambiguous_wait {
                Some(wait) => tracing::warn!(
                    %reason,
                    ?wait,
                    "submit outcome unknown; not re-sent until its callback had time to arrive"
                ),
                None => tracing::warn!(
                    %reason,
                    "submit outcome unknown; never re-sent automatically (AMBIGUOUS_RESUBMIT_AFTER_SECS unset): waiting for its callback or the job deadline"
                ),
            }
            work::submit_ambiguous(&ctx.db, claim.claim(), ctx.ambiguous_wait).await
        }
    };
    match recorded {
        Ok(true) => {}
        Ok(false) => super::lease_lost("submit"),
        // The lease runs out and maintenance treats the row as an ambiguous
        // submit: never re-sent blindly, and its callback still lands.
        Err(e) => tracing::error!(error = %e, "could not record the submit outcome"),
    }
}
