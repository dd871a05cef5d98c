//! The read-replica monitor: four times a second, is the replica reachable, a
//! standby of this very primary and database, and how far behind? Its
//! verdict decides where [`Reads`] sends the next reads, and is exported as
//! the gauges `db_read_replica_usable` and `db_read_replica_lag_seconds`.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::bail;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use super::Reads;
use super::lag::Staleness;
use crate::store::replication::{self, ServerPosition};

/// Time between two checks (two one-row queries): how long a replica that
/// falls behind may keep serving before the monitor sees it (a read that
/// fails on it moves to the primary at once), and how far the lag
/// estimate may err on the stale side under a steady stream of writes.
const CHECK_EVERY: Duration = Duration::from_millis(250);
/// A replica that takes longer to answer a check counts as unreachable.
const CHECK_TIMEOUT: Duration = Duration::from_secs(3);

/// What one check found.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Verdict {
    /// Reachable and at most the bound behind (by this much).
    Usable(Duration),
    /// Behind by more than the bound, or further than anything noted.
    Behind(Option<Duration>),
    Unreachable,
    /// Reachable but not in recovery: a promoted or independent server,
    /// which no longer follows the primary.
    NotAStandby,
    /// Another cluster, or another database of it.
    Elsewhere,
}

impl Verdict {
    fn judge(
        primary: &ServerPosition,
        standby: &ServerPosition,
        behind: Option<Duration>,
        bound: Duration,
    ) -> Verdict {
        if !same_data(primary, standby) {
            return Verdict::Elsewhere;
        }
        if !standby.in_recovery {
            return Verdict::NotAStandby;
        }
        match behind {
            Some(lag) if lag <= bound => Verdict::Usable(lag),
            other => Verdict::Behind(other),
        }
    }

    /// Same kind of verdict (a transition is logged, not every lag figure).
    fn same_kind(self, other: Verdict) -> bool {
        std::mem::discriminant(&self) == std::mem::discriminant(&other)
    }

    fn log(self) {
        match self {
            Verdict::Usable(_) => tracing::info!("read replica in use"),
            Verdict::Behind(lag) => tracing::warn!(
                lag_seconds = lag.map(|l| l.as_secs_f64()),
                "read replica is behind more than DATABASE_READ_MAX_LAG_SECS; reading from the primary"
            ),
            Verdict::Unreachable => {
                tracing::warn!("read replica does not answer; reading from the primary")
            }
            Verdict::NotAStandby => tracing::warn!(
                "DATABASE_READ_URL is not a standby in recovery (promoted?); reading from the primary"
            ),
            Verdict::Elsewhere => tracing::error!(
                "DATABASE_READ_URL holds another cluster or database than DATABASE_URL; reading from the primary"
            ),
        }
    }
}

fn same_data(primary: &ServerPosition, standby: &ServerPosition) -> bool {
    primary.system_identifier == standby.system_identifier && primary.database == standby.database
}

async fn standby_position(replica: &PgPool) -> Option<ServerPosition> {
    tokio::time::timeout(CHECK_TIMEOUT, replication::position(replica))
        .await
        .ok()?
        .ok()
}

/// At start: a replica that answers must hold the primary's data, else the
/// service refuses to start (a wrong URL would serve another database's
/// profiles). One that does not answer yet only delays its use.
pub async fn check_at_start(reads: &Reads) -> anyhow::Result<()> {
    let Some(replica) = &reads.replica else {
        return Ok(());
    };
    let primary = replication::position(&reads.primary).await?;
    match standby_position(&replica.pool).await {
        Some(standby) if !same_data(&primary, &standby) => bail!(
            "DATABASE_READ_URL is not a replica of DATABASE_URL: it holds another cluster or \
             database (compare `SELECT system_identifier FROM pg_control_system()` and the \
             database name on both)"
        ),
        Some(standby) if !standby.in_recovery => Verdict::NotAStandby.log(),
        Some(_) => {}
        None => tracing::warn!(
            "DATABASE_READ_URL does not answer yet; reads go to the primary until it does"
        ),
    }
    Ok(())
}

/// Checks the replica until `shutdown`, switching reads to and from it.
pub async fn run(reads: Reads, bound: Duration, shutdown: CancellationToken) {
    let Some(replica) = reads.replica.clone() else {
        return;
    };
    let mut staleness = Staleness::default();
    let mut last: Option<Verdict> = None;
    loop {
        let noted = Instant::now();
        // With the primary down nothing works; the replica's verdict waits.
        if let Ok(primary) = replication::position(&reads.primary).await {
            staleness.primary_at(noted, primary.wal_position);
            let verdict = match standby_position(&replica.pool).await {
                None => Verdict::Unreachable,
                Some(standby) => {
                    let behind = staleness.behind(standby.wal_position, Instant::now());
                    Verdict::judge(&primary, &standby, behind, bound)
                }
            };
            let usable = matches!(verdict, Verdict::Usable(_));
            // A read that failed on the replica since the last check also
            // cleared the flag: a change of kind, or of the flag, is news.
            let was_usable = replica.usable.swap(usable, Ordering::AcqRel);
            if last.is_none_or(|l| !l.same_kind(verdict)) || was_usable != usable {
                verdict.log();
            }
            last = Some(verdict);
            metrics::gauge!("db_read_replica_usable").set(if usable { 1.0 } else { 0.0 });
            // NaN while unknown: a last good figure would hide an outage.
            let lag = match verdict {
                Verdict::Usable(lag) | Verdict::Behind(Some(lag)) => lag.as_secs_f64(),
                _ => f64::NAN,
            };
            metrics::gauge!("db_read_replica_lag_seconds").set(lag);
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(CHECK_EVERY) => {}
        }
    }
}
