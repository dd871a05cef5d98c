//! The event sequencer's SQL: leadership, the fence and one batch (see the
//! migration `event_sequencer` for the design). Every statement runs on the
//! leader's own connection, the one holding the session advisory lock.

use sqlx::PgConnection;
use uuid::Uuid;

/// The session advisory lock whose holder is the database's sequencer.
const LEADER_LOCK: &str = "interests-receiver/event-sequencer";

/// Takes the leadership if nobody holds it (on this connection, for as
/// long as it lives) and returns the new epoch; `None` when another
/// replica leads.
pub async fn try_lead(conn: &mut PgConnection, leader: Uuid) -> sqlx::Result<Option<i64>> {
    let got: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock(hashtextextended($1, 0))")
        .bind(LEADER_LOCK)
        .fetch_one(&mut *conn)
        .await?;
    if !got {
        return Ok(None);
    }
    let epoch = sqlx::query_scalar(
        "UPDATE event_sequencer SET epoch = epoch + 1, leader = $1, leading_since = now() \
         RETURNING epoch",
    )
    .bind(leader)
    .fetch_one(&mut *conn)
    .await?;
    Ok(Some(epoch))
}

/// Gives the leadership up (shutdown), so another replica takes it at once.
pub async fn resign(conn: &mut PgConnection) -> sqlx::Result<()> {
    sqlx::query("SELECT pg_advisory_unlock(hashtextextended($1, 0))")
        .bind(LEADER_LOCK)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Whether any committed event waits for its place (a cheap read, so that
/// an idle sequencer writes nothing). The first id by the primary key, not
/// `EXISTS (SELECT 1 …)`: that is planned as a sequential scan, which after
/// a burst (every moved row leaves a dead one until vacuum) read the whole
/// table on every tick: 28 ms per tick, 100 ticks a second, after 1,000,000
/// lookups were loaded.
pub async fn pending(conn: &mut PgConnection) -> sqlx::Result<bool> {
    let first: Option<i64> = sqlx::query_scalar("SELECT id FROM event_inbox ORDER BY id LIMIT 1")
        .fetch_optional(&mut *conn)
        .await?;
    Ok(first.is_some())
}

/// What one batch did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Batch {
    /// `taken` inbox rows were handled; `newest` is the highest event id
    /// assigned (none when every row belonged to an erased lookup).
    Done { taken: i64, newest: Option<i64> },
    /// Another replica took the leadership: nothing was assigned.
    Superseded,
}

/// Moves up to `limit` committed inbox rows into `events` (ids in inbox
/// order), queues their webhook sends and notifies every replica's
/// streams, in one transaction fenced by `epoch`. `before_commit` runs
/// last inside it (the crash tests stop the process there).
pub async fn batch(
    conn: &mut PgConnection,
    epoch: i64,
    limit: i64,
    before_commit: impl std::future::Future<Output = ()>,
) -> sqlx::Result<Batch> {
    let mut tx = sqlx::Connection::begin(&mut *conn).await?;
    let fenced: Option<i64> =
        sqlx::query_scalar("SELECT epoch FROM event_sequencer WHERE epoch = $1 FOR UPDATE")
            .bind(epoch)
            .fetch_optional(&mut *tx)
            .await?;
    if fenced.is_none() {
        return Ok(Batch::Superseded);
    }
    // The lookups of the events about to be placed, locked KEY SHARE (what
    // the foreign key check of `events.lookup_id` takes anyway) in id
    // order first: a group of deliveries locks its lookups in id order
    // too, so the two never wait on each other in a cycle. (A delivery
    // that fills a lookup's `request_id`, a key, needs a lock KEY SHARE
    // conflicts with.) The ids come as an array (run once), not as a
    // subquery the planner might re-run per lookup.
    sqlx::query(
        "SELECT 1 FROM lookups WHERE id = ANY (ARRAY( \
           SELECT lookup_id FROM event_inbox ORDER BY id LIMIT $1)) \
         ORDER BY id FOR KEY SHARE",
    )
    .bind(limit)
    .execute(&mut *tx)
    .await?;
    // Rows of a lookup erased meanwhile are taken and dropped. Rows still
    // being inserted by a committing writer are not visible yet; they come
    // in the next batch (a lookup's own changes commit one after the
    // other, so they keep their order). The batch is the range from the
    // lowest to the highest of the first `limit` ids (scalar subqueries,
    // run once; batches are serial under the fence, so nobody else takes
    // inbox rows): as `id IN (subquery with LIMIT … FOR UPDATE SKIP
    // LOCKED)`, statistics taken while the inbox was empty (it is vacuumed
    // often) let the planner re-run the subquery for every inbox row, and
    // a batch after a bulk load of 650,000 lookups ran for minutes. A
    // range is an index range scan, or one pass at worst.
    let (taken, newest): (i64, Option<i64>) = sqlx::query_as(
        "WITH first AS (SELECT id FROM event_inbox ORDER BY id LIMIT $1), \
         moved AS ( \
           DELETE FROM event_inbox \
           WHERE id BETWEEN (SELECT min(id) FROM first) AND (SELECT max(id) FROM first) \
           RETURNING id, lookup_id, type, at, profile_id, data), \
         placed AS ( \
           INSERT INTO events (lookup_id, type, at, profile_id, data) \
           SELECT m.lookup_id, m.type, m.at, m.profile_id, m.data FROM moved m \
           WHERE m.lookup_id IS NULL OR EXISTS (SELECT 1 FROM lookups l WHERE l.id = m.lookup_id) \
           ORDER BY m.id \
           RETURNING id, type), \
         sends AS ( \
           INSERT INTO webhook_sends (webhook_id, event_id) \
           SELECT w.id, p.id FROM placed p JOIN webhooks w \
             ON NOT w.disabled AND p.type = ANY (w.events) \
           RETURNING 1) \
         SELECT (SELECT count(*) FROM moved), (SELECT max(id) FROM placed)",
    )
    .bind(limit)
    .fetch_one(&mut *tx)
    .await?;
    if let Some(newest) = newest {
        sqlx::query("SELECT pg_notify('events', $1)")
            .bind(newest.to_string())
            .execute(&mut *tx)
            .await?;
    }
    before_commit.await;
    tx.commit().await?;
    Ok(Batch::Done { taken, newest })
}
