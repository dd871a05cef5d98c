//! The door of the callback receiver (contract section 6): a delivery's
//! token is checked against the HMAC of its lookup id before any database
//! query and before its body is read, so forged traffic costs a hash and
//! an atomic increment, and leaves no row and no log line of its own.
//! Refusals are counted in memory, added to the database and summed up in
//! one log line every [`FLUSH_EVERY`].

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::secrets::ServiceSecret;
use crate::store::{forged, lookups};
use crate::token::secrets_equal;

/// How often refusal counts are written and summarised.
pub const FLUSH_EVERY: Duration = Duration::from_secs(10);

pub struct CallbackGate {
    secret: ServiceSecret,
    /// Some unfinished lookup still has a stored (pre-derivation) token;
    /// only then may a token that is not derived cost a database read.
    legacy: AtomicBool,
    /// Refusals not yet written to the database.
    unflushed: AtomicU64,
}

impl CallbackGate {
    pub async fn new(db: &PgPool, secret: ServiceSecret) -> sqlx::Result<Self> {
        Ok(CallbackGate {
            secret,
            legacy: AtomicBool::new(lookups::legacy_callback_tokens_remain(db).await?),
            unflushed: AtomicU64::new(0),
        })
    }

    /// The callback token of a lookup, for its callback URL. A lookup made
    /// before derivation keeps its stored token.
    pub fn token_for(&self, lookup_id: Uuid, stored: Option<&str>) -> String {
        stored.map_or_else(|| self.secret.callback_token(lookup_id), str::to_owned)
    }

    /// The lookup a callback path names, when its token is authentic.
    pub async fn check(
        &self,
        db: &PgPool,
        lookup_id: &str,
        token: &str,
    ) -> sqlx::Result<Option<Uuid>> {
        let Ok(id) = lookup_id.parse::<Uuid>() else {
            return Ok(None);
        };
        if self.secret.verify_callback_token(id, token) {
            return Ok(Some(id));
        }
        if self.legacy.load(Ordering::Relaxed)
            && let Some(stored) = lookups::legacy_callback_token(db, id).await?
            && secrets_equal(&stored, token)
        {
            return Ok(Some(id));
        }
        Ok(None)
    }

    /// Counts one refused (forged or mistyped) delivery.
    pub fn refuse(&self) {
        metrics::counter!("callback_deliveries_total", "outcome" => "forged").increment(1);
        self.unflushed.fetch_add(1, Ordering::Relaxed);
    }

    /// Refusals of this process not yet in the database.
    pub fn unflushed(&self) -> u64 {
        self.unflushed.load(Ordering::Relaxed)
    }

    /// Writes the refusal count and refreshes the legacy-token flag every
    /// [`FLUSH_EVERY`] until `shutdown`, then once more.
    pub async fn run(&self, db: PgPool, shutdown: CancellationToken) {
        loop {
            let stop = tokio::select! {
                biased;
                _ = shutdown.cancelled() => true,
                _ = tokio::time::sleep(FLUSH_EVERY) => false,
            };
            self.flush(&db).await;
            if stop {
                return;
            }
            if self.legacy.load(Ordering::Relaxed) {
                match lookups::legacy_callback_tokens_remain(&db).await {
                    Ok(remain) => self.legacy.store(remain, Ordering::Relaxed),
                    Err(e) => tracing::warn!(error = %e, "cannot check for stored callback tokens"),
                }
            }
        }
    }

    async fn flush(&self, db: &PgPool) {
        let n = self.unflushed.swap(0, Ordering::Relaxed);
        if n == 0 {
            return;
        }
        tracing::warn!(
            refused = n,
            period_secs = FLUSH_EVERY.as_secs(),
            "callbacks refused for a wrong token"
        );
        if let Err(e) = forged::add(db, n).await {
            // Kept for the next flush rather than lost.
            self.unflushed.fetch_add(n, Ordering::Relaxed);
            tracing::warn!(error = %e, "cannot record refused callbacks");
        }
    }
}
