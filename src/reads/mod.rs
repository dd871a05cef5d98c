//! Where reads that may be slightly stale go: the PostgreSQL streaming
//! replica of `DATABASE_READ_URL` while it is reachable and at most
//! `DATABASE_READ_MAX_LAG_SECS` behind, else the primary (`DATABASE_URL`).
//!
//! Only searches, facets, exports and the console's lists go through here;
//! everything that writes, or must read its own writes (a lookup right after
//! it was made, the dedup and budget checks), uses the primary pool itself.
//! Falling back rather than answering 503 keeps every read answered while
//! the primary is up: the primary is always at least as fresh as the
//! replica, and the replica exists to take load off it, not to serve when
//! it cannot.

mod lag;
pub mod monitor;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use sqlx::PgPool;

/// The pools a read may use. Cheap to clone.
#[derive(Clone)]
pub struct Reads {
    primary: PgPool,
    replica: Option<Replica>,
}

#[derive(Clone)]
struct Replica {
    pool: PgPool,
    /// Set by the monitor: reachable, a standby of the primary, not too far
    /// behind. Cleared at once by a read that finds it unreachable.
    usable: Arc<AtomicBool>,
}

/// Which pool served a read: the `pool` label of `db_reads_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Served {
    Primary,
    Replica,
}

impl Served {
    fn count(self) {
        let pool = match self {
            Served::Primary => "primary",
            Served::Replica => "replica",
        };
        metrics::counter!("db_reads_total", "pool" => pool).increment(1);
    }
}

impl Reads {
    /// Every read on the primary (no `DATABASE_READ_URL`).
    pub fn primary_only(primary: PgPool) -> Self {
        Reads {
            primary,
            replica: None,
        }
    }

    /// Reads on `replica` once the monitor has found it usable; until then,
    /// and whenever it is not, on `primary`.
    pub fn with_replica(primary: PgPool, replica: PgPool) -> Self {
        Reads {
            primary,
            replica: Some(Replica {
                pool: replica,
                usable: Arc::new(AtomicBool::new(false)),
            }),
        }
    }

    /// Runs `read` on the replica when it is usable, else on the primary. A
    /// read the replica could not serve (unreachable, shutting down, a query
    /// cancelled by replay) is run again on the primary and the replica is
    /// set aside until the monitor finds it usable again.
    pub async fn run<T, F, Fut>(&self, read: F) -> sqlx::Result<T>
    where
        F: Fn(PgPool) -> Fut,
        Fut: Future<Output = sqlx::Result<T>>,
    {
        if let Some(replica) = &self.replica
            && replica.usable.load(Ordering::Acquire)
        {
            match read(replica.pool.clone()).await {
                Ok(answer) => {
                    Served::Replica.count();
                    return Ok(answer);
                }
                Err(e) if replica_cannot_serve(&e) => {
                    if replica.usable.swap(false, Ordering::AcqRel) {
                        tracing::warn!(error = %e, "read replica failed a read; reading from the primary until it answers again");
                    }
                }
                Err(e) => return Err(e),
            }
        }
        let answer = read(self.primary.clone()).await?;
        Served::Primary.count();
        Ok(answer)
    }
}

/// Errors that say the replica could not answer, not that the query is
/// wrong: connection trouble, a server shutting down or starting
/// (SQLSTATE class 57, 08) and a query cancelled by a conflict with
/// recovery (40001), which the primary never raises for a read.
fn replica_cannot_serve(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => db
            .code()
            .is_some_and(|c| c.starts_with("57") || c.starts_with("08") || c == "40001"),
        _ => false,
    }
}
