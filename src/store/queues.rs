//! Queue tables: rows written by one path and soon deleted by another
//! (`event_inbox` by the sequencer, `facet_changes` by the facet fold,
//! `webhook_sends` by the webhook sender's recorder).
//! Each taken row leaves a dead one, and every read of the queue's head
//! walks past the dead rows in front of it until vacuum removes them:
//! during first deliveries the sequencer's two reads per 10 ms tick each
//! walked some 850 index pages (5 ms apiece, auto_explain), more database
//! time than the deliveries' own statements. Autovacuum comes once a
//! minute at best, so whoever takes the rows vacuums the queue itself.

use std::time::{Duration, Instant};

use sqlx::{PgConnection, PgPool};

/// A queue table.
#[derive(Debug, Clone, Copy)]
pub enum Queue {
    EventInbox,
    FacetChanges,
    WebhookSends,
}

/// Vacuums `queue` (a cheap pass: the live rows are few), unless another
/// vacuum of it is running (`SKIP_LOCKED`). Outside any transaction. It
/// never gives the emptied pages back to the system (`TRUNCATE false`):
/// that takes an exclusive lock which every writer of the queue waits for
/// (`Timeout:VacuumTruncate` among the first deliveries' waits), and the
/// queue fills them again within seconds.
pub async fn vacuum(db: &mut PgConnection, queue: Queue) -> sqlx::Result<()> {
    let sql = match queue {
        Queue::EventInbox => "VACUUM (SKIP_LOCKED, TRUNCATE false) event_inbox",
        Queue::FacetChanges => "VACUUM (SKIP_LOCKED, TRUNCATE false) facet_changes",
        Queue::WebhookSends => "VACUUM (SKIP_LOCKED, TRUNCATE false) webhook_sends",
    };
    sqlx::query(sql).persistent(false).execute(db).await?;
    Ok(())
}

/// [`vacuum`] on a connection of `db`, for takers that work on a pool: a
/// vacuum that fails is only a slower queue, so it is logged, not returned.
pub async fn vacuum_logged(db: &PgPool, queue: Queue) {
    let vacuumed = match db.acquire().await {
        Ok(mut conn) => vacuum(&mut conn, queue).await,
        Err(e) => Err(e),
    };
    if let Err(e) = vacuumed {
        tracing::warn!(error = %e, ?queue, "cannot vacuum a queue table");
    }
}

/// Says when a taker should vacuum its queue: after [`Self::EVERY_ROWS`]
/// rows taken, at most once per [`Self::AT_MOST_EVERY`].
#[derive(Debug)]
pub struct VacuumPacer {
    taken: u64,
    last: Instant,
}

impl VacuumPacer {
    pub const EVERY_ROWS: u64 = 2_000;
    pub const AT_MOST_EVERY: Duration = Duration::from_secs(1);

    pub fn new() -> Self {
        VacuumPacer {
            taken: 0,
            last: Instant::now(),
        }
    }

    /// Counts `n` rows taken; true when it is time to vacuum (the count
    /// starts again).
    pub fn took(&mut self, n: u64) -> bool {
        self.taken += n;
        if self.taken < Self::EVERY_ROWS || self.last.elapsed() < Self::AT_MOST_EVERY {
            return false;
        }
        self.taken = 0;
        self.last = Instant::now();
        true
    }
}

impl Default for VacuumPacer {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vacuum_comes_after_enough_rows_and_not_more_often_than_the_pace() {
        let mut p = VacuumPacer::new();
        p.last -= VacuumPacer::AT_MOST_EVERY;
        assert!(!p.took(VacuumPacer::EVERY_ROWS - 1));
        assert!(p.took(1));
        // Enough rows again at once, but too soon.
        assert!(!p.took(VacuumPacer::EVERY_ROWS));
        p.last -= VacuumPacer::AT_MOST_EVERY;
        assert!(p.took(0));
    }
}
