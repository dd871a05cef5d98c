//! Live lookup events for every replica. The `events` table is the truth;
//! PostgreSQL `NOTIFY events` (sent by the sequencer, `sequencer`, with each
//! batch of events it places) only says "look again". One `LISTEN` connection per process fans the wake-ups out
//! to every open stream and to the webhook sender through a watch channel,
//! so a thousand clients cost one database connection, not a thousand.

use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio_util::sync::CancellationToken;

pub mod sequencer;

/// Channel the sequencer notifies.
pub const CHANNEL: &str = "events";
/// Open `GET /v1/events` streams one replica serves at once.
pub const MAX_STREAMS: usize = 256;

/// The fan-out point; cheap to clone.
#[derive(Clone)]
pub struct EventHub {
    /// Bumped on every notification, and after a reconnect (notifications
    /// sent while disconnected are lost, so everyone looks again).
    wake: Arc<watch::Sender<u64>>,
    streams: Arc<Semaphore>,
    /// Cancelled when the service stops, so that streams end and the HTTP
    /// server's graceful shutdown is not held open by them.
    stopping: CancellationToken,
}

impl Default for EventHub {
    fn default() -> Self {
        Self::new(MAX_STREAMS)
    }
}

impl EventHub {
    pub fn new(max_streams: usize) -> Self {
        EventHub {
            wake: Arc::new(watch::channel(0).0),
            streams: Arc::new(Semaphore::new(max_streams)),
            stopping: CancellationToken::new(),
        }
    }

    /// A receiver that changes whenever new events may exist.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.wake.subscribe()
    }

    /// A slot for one more open stream, or `None` when all are taken.
    pub fn open_stream(&self) -> Option<OwnedSemaphorePermit> {
        self.streams.clone().try_acquire_owned().ok()
    }

    pub fn stopping(&self) -> CancellationToken {
        self.stopping.clone()
    }

    fn bump(&self) {
        self.wake.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Listens until `shutdown`, reconnecting after a lost connection.
    pub async fn run(self, db: PgPool, shutdown: CancellationToken) {
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = self.listen(&db) => {}
            }
            // The connection failed: wake everyone (they re-read the table)
            // and try again shortly.
            self.bump();
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
        self.stopping.cancel();
    }

    async fn listen(&self, db: &PgPool) {
        let mut listener = match PgListener::connect_with(db).await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "cannot open the events LISTEN connection");
                return;
            }
        };
        if let Err(e) = listener.listen(CHANNEL).await {
            tracing::warn!(error = %e, "cannot LISTEN on the events channel");
            return;
        }
        // Events committed before LISTEN took effect are in the table.
        self.bump();
        loop {
            match listener.try_recv().await {
                Ok(Some(_)) => self.bump(),
                Ok(None) => {
                    tracing::warn!("events LISTEN connection lost; reconnecting");
                    self.bump();
                }
                Err(e) => {
                    tracing::warn!(error = %e, "events LISTEN connection failed");
                    return;
                }
            }
        }
    }
}
