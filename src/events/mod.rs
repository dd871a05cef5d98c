//! Live lookup events for every replica. The `events` table is the truth;
//! PostgreSQL `NOTIFY events` (sent by the sequencer, `sequencer`, with each
//! batch of events it places) only says "look again". One `LISTEN`
//! connection per process (`EventHub::run`) reads each new event once on
//! that same connection, broadcasts it in memory to every open stream (a
//! thousand clients cost one query per batch, not a thousand), then wakes
//! the webhook sender (a watch channel). A
//! stream that falls behind the broadcast buffer is ended (its client
//! resumes with `Last-Event-ID`), so it never slows the others.

use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, broadcast, watch};
use tokio_util::sync::CancellationToken;

pub mod frame;
pub mod sequencer;

pub use frame::FeedEvent;

use crate::store::events;

/// Channel the sequencer notifies.
pub const CHANNEL: &str = "events";
/// Open `GET /v1/events` streams one replica serves at once.
pub const MAX_STREAMS: usize = 256;
/// Events a stream may fall behind the live feed before it is ended.
const FEED_BUFFER: usize = 4096;
/// Events read from the table per query.
const FEED_BATCH: i64 = 500;
/// Even with no wake-up, the feed looks at the table this often.
const FEED_RECHECK: Duration = Duration::from_secs(10);

/// The fan-out point; cheap to clone.
#[derive(Clone)]
pub struct EventHub {
    /// Bumped on every notification, and after a reconnect (notifications
    /// sent while disconnected are lost, so everyone looks again).
    wake: Arc<watch::Sender<u64>>,
    /// Every event this process has read, in id order, rendered once for
    /// the live streams.
    feed: broadcast::Sender<Arc<FeedEvent>>,
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
            feed: broadcast::channel(FEED_BUFFER).0,
            streams: Arc::new(Semaphore::new(max_streams)),
            stopping: CancellationToken::new(),
        }
    }

    /// A receiver that changes whenever new events may exist.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.wake.subscribe()
    }

    /// The live feed: every event read after this call, in id order.
    /// Subscribe before reading the table for a catch-up, so that no event
    /// falls between the two.
    pub fn live(&self) -> broadcast::Receiver<Arc<FeedEvent>> {
        self.feed.subscribe()
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

    /// Listens and reads until `shutdown`, reconnecting after a lost
    /// connection. The `LISTEN` connection also reads the new events: it is
    /// outside the pool, so a pool busy with deliveries never delays the
    /// live streams (the feed waited for a pooled connection before).
    pub async fn run(self, db: PgPool, shutdown: CancellationToken) {
        // The last event id read: kept across reconnects, so that the
        // events placed while disconnected are read, not skipped.
        let mut last = None;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = self.listen(&db, &mut last) => {}
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

    async fn listen(&self, db: &PgPool, last: &mut Option<i64>) {
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
        loop {
            // Everything committed before this point is read now: right
            // after LISTEN took effect, after a reconnect (notifications
            // sent meanwhile are lost) and after each notification.
            if let Err(e) = self.read_new(&mut listener, last).await {
                tracing::warn!(error = %e, "event feed cannot read events");
                return;
            }
            self.bump();
            match tokio::time::timeout(FEED_RECHECK, listener.try_recv()).await {
                // Several batches may have been announced meanwhile: one
                // read covers them all.
                Ok(Ok(Some(_))) => while listener.next_buffered().is_some() {},
                Ok(Ok(None)) => tracing::warn!("events LISTEN connection lost; reconnected"),
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "events LISTEN connection failed");
                    return;
                }
                // Nothing announced for a while: look anyway.
                Err(_quiet) => {}
            }
        }
    }

    /// Reads the events after `last` and broadcasts each once. The first
    /// call only notes where the table ends: the feed is live from there
    /// (a stream catches up from the table itself).
    async fn read_new(&self, conn: &mut PgListener, last: &mut Option<i64>) -> sqlx::Result<()> {
        let Some(mut from) = *last else {
            *last = Some(events::latest_id(&mut *conn).await?);
            return Ok(());
        };
        loop {
            let rows = events::after(&mut *conn, from, FEED_BATCH).await?;
            let full = rows.len() as i64 == FEED_BATCH;
            let read_at = chrono::Utc::now();
            for row in rows {
                from = row.id;
                // From its commit (`at`) to this replica reading it: what
                // the sequencer and the wake-up add.
                let delay = (read_at - row.at).to_std().unwrap_or_default();
                metrics::histogram!(crate::telemetry::FEED_DELAY_METRIC)
                    .record(delay.as_secs_f64());
                // No receiver is fine: nobody is listening.
                let _ = self.feed.send(Arc::new(FeedEvent::new(&row)));
            }
            *last = Some(from);
            if !full {
                return Ok(());
            }
        }
    }
}
