//! The event sequencer: one per database, elected among the replicas.
//!
//! Writers append status changes to `event_inbox` without any lock; the
//! elected replica gives them their place in `events` in batches (see
//! `store::sequencer` and the migration `event_sequencer`). Every replica
//! runs this task: the one that holds the session advisory lock leads, the
//! others try again every [`ELECTION_RETRY`] and take over within that
//! time when the leader stops or dies (its connection, and with it the lock,
//! goes away; the batch it was writing rolls back and is moved again).

use std::time::Duration;

use sqlx::{ConnectOptions, Connection, PgConnection, PgPool};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::store::queues::{self, Queue, VacuumPacer};
use crate::store::sequencer::{self as store, Batch};

/// Inbox rows moved per transaction.
const BATCH: i64 = 1000;
/// How often the leader looks for new events: the added latency between a
/// commit and its event reaching the streams.
const TICK: Duration = Duration::from_millis(10);
/// How often a follower asks for the leadership (and how soon after a
/// leader died another takes over).
const ELECTION_RETRY: Duration = Duration::from_secs(1);

/// Leads when it can, follows otherwise, until `shutdown`.
pub async fn run(db: PgPool, shutdown: CancellationToken) {
    let me = Uuid::new_v4();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = serve_once(&db, me, &shutdown) => {}
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(ELECTION_RETRY) => {}
        }
    }
}

/// One connection's life: wait for the leadership, then lead until the
/// connection fails or the service stops.
async fn serve_once(db: &PgPool, me: Uuid, shutdown: &CancellationToken) {
    // A connection of its own, outside the pool: the session lock lives
    // exactly as long as it, and the pool's connections stay for requests.
    let options = db
        .connect_options()
        .as_ref()
        .clone()
        .disable_statement_logging();
    let mut conn = match PgConnection::connect_with(&options).await {
        Ok(conn) => conn,
        Err(e) => {
            tracing::warn!(error = %e, "event sequencer cannot connect");
            return;
        }
    };
    let epoch = loop {
        match store::try_lead(&mut conn, me).await {
            Ok(Some(epoch)) => break epoch,
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(error = %e, "event sequencer cannot ask for the leadership");
                return;
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(ELECTION_RETRY) => {}
        }
    };
    tracing::info!(epoch, "event sequencer: this replica leads");
    lead(&mut conn, epoch, shutdown).await;
    if shutdown.is_cancelled() {
        let _ = store::resign(&mut conn).await;
    }
    let _ = conn.close().await;
}

async fn lead(conn: &mut PgConnection, epoch: i64, shutdown: &CancellationToken) {
    let mut vacuum = VacuumPacer::new();
    loop {
        match step(conn, epoch, &mut vacuum).await {
            Ok(Step::More) => continue,
            Ok(Step::Idle) => {}
            Ok(Step::Superseded) => {
                tracing::warn!(
                    epoch,
                    "event sequencer: another replica leads now; stepping down"
                );
                return;
            }
            Err(e) => {
                // A batch can fail without the connection failing (a lookup
                // erased while its event was being placed): try again. A
                // broken connection ends the leadership with it.
                tracing::warn!(error = %e, "event sequencer batch failed");
                if conn.ping().await.is_err() {
                    return;
                }
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(TICK) => {}
        }
    }
}

enum Step {
    /// A full batch was moved: more may wait.
    More,
    Idle,
    Superseded,
}

async fn step(conn: &mut PgConnection, epoch: i64, vacuum: &mut VacuumPacer) -> sqlx::Result<Step> {
    if !store::pending(conn).await? {
        return Ok(Step::Idle);
    }
    let batch = store::batch(
        conn,
        epoch,
        BATCH,
        crate::crashpoint::reach("sequencer_before_commit"),
    )
    .await?;
    if let Batch::Done { taken, .. } = batch
        && vacuum.took(taken.unsigned_abs())
    {
        // Every moved row left a dead one that both reads above walk past.
        queues::vacuum(conn, Queue::EventInbox).await?;
    }
    Ok(match batch {
        Batch::Superseded => Step::Superseded,
        Batch::Done { taken, .. } if taken == BATCH => Step::More,
        Batch::Done { .. } => Step::Idle,
    })
}
