//! What the read-replica monitor asks PostgreSQL: which cluster and database
//! a server holds, whether it is a standby, and how far WAL has been written
//! (primary) or replayed (standby). WAL positions are byte offsets
//! (`pg_lsn - '0/0'`), so they compare as integers.

use sqlx::{FromRow, PgPool};

/// Who a server is and where its WAL stands.
#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct ServerPosition {
    /// `pg_control_system()`: the same for a primary and every standby
    /// made from it by `pg_basebackup`, different for any other cluster.
    pub system_identifier: i64,
    pub database: String,
    /// `pg_is_in_recovery()`: a standby replaying a primary's WAL.
    pub in_recovery: bool,
    /// On a primary, the WAL flushed to disk (`pg_current_wal_flush_lsn()`:
    /// a standby can receive no further than that); on a standby, the WAL
    /// replayed (`pg_last_wal_replay_lsn()`: what its queries see).
    pub wal_position: i64,
}

pub async fn position(db: &PgPool) -> sqlx::Result<ServerPosition> {
    sqlx::query_as(
        "SELECT (SELECT system_identifier FROM pg_control_system()) AS system_identifier, \
         current_database()::text AS database, pg_is_in_recovery() AS in_recovery, \
         (CASE WHEN pg_is_in_recovery() THEN coalesce(pg_last_wal_replay_lsn(), '0/0') \
          ELSE pg_current_wal_flush_lsn() END - '0/0'::pg_lsn)::bigint AS wal_position",
    )
    .fetch_one(db)
    .await
}
