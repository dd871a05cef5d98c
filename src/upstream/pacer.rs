//! One scheduler for every upstream call: waits for a slot in the shared
//! ledger (see `store::pacing`) and feeds back what upstream said about its
//! limits, so that all replicas slow down together.

use std::time::Duration;

use chrono::Utc;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use super::RateInfo;
use crate::store::pacing::{self, Limits, Reservation};

/// Longest single sleep while waiting for a slot, so that a pause lifted or
/// a slot freed elsewhere is noticed.
const MAX_NAP: Duration = Duration::from_secs(1);

#[derive(Clone)]
pub struct Pacer {
    db: PgPool,
    limits: Limits,
}

/// A reserved slot: use it (`record`) or give it back (`cancel`).
#[must_use]
#[derive(Debug)]
pub struct Slot(i64);

impl Pacer {
    pub fn new(db: PgPool, limits: Limits) -> Self {
        Pacer { db, limits }
    }

    /// Waits for a free slot; `None` when shutdown came first.
    pub async fn acquire(&self, shutdown: &CancellationToken) -> Option<Slot> {
        loop {
            // Checked before every reservation: a slot taken after shutdown
            // began would send a request that may not finish in time.
            if shutdown.is_cancelled() {
                return None;
            }
            let nap = match pacing::reserve(&self.db, self.limits).await {
                Ok(Reservation::Granted(id)) => return Some(Slot(id)),
                Ok(Reservation::Wait(wait)) => wait.min(MAX_NAP),
                Err(e) => {
                    tracing::warn!(error = %e, "pacing ledger unavailable; retrying");
                    MAX_NAP
                }
            };
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => return None,
                _ = tokio::time::sleep(nap) => {}
            }
        }
    }

    /// Dates the slot's call now, just before it is sent (see
    /// `store::pacing::sending`).
    pub async fn sending(&self, slot: &Slot) {
        if let Err(e) = pacing::sending(&self.db, slot.0).await {
            // It then counts from its reservation, which the margin of
            // `in_flight` covers for a short delay.
            tracing::warn!(error = %e, "could not date an upstream call as sent");
        }
    }

    pub async fn cancel(&self, slot: Slot) {
        if let Err(e) = pacing::cancel(&self.db, slot.0).await {
            tracing::warn!(error = %e, "could not release an unused upstream slot");
        }
    }

    /// Records how a call went and turns upstream's rate hints into an
    /// account-wide pause.
    pub async fn record(&self, slot: Slot, kind: &str, outcome: &str, rate: &RateInfo) {
        metrics::counter!("upstream_calls_total", "kind" => kind.to_owned(), "result" => outcome.to_owned())
            .increment(1);
        if let Err(e) = pacing::record(&self.db, slot.0, kind, outcome).await {
            tracing::warn!(error = %e, "could not record an upstream call");
        }
        let pause = if let Some(after) = rate.retry_after {
            Some(Utc::now() + chrono::Duration::from_std(after).unwrap_or_default())
        } else if rate.remaining == Some(0) {
            rate.reset_at
        } else {
            None
        };
        if let Some(until) = pause.filter(|u| *u > Utc::now()) {
            tracing::info!(%until, "upstream asked to slow down; pausing upstream calls");
            if let Err(e) = pacing::pause_until(&self.db, until).await {
                tracing::warn!(error = %e, "could not record the upstream pause");
            }
        }
    }
}
