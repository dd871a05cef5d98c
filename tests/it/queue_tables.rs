//! Queue tables are vacuumed by whoever takes their rows
//! (`store::queues`): the statement must run where sqlx sends it (VACUUM
//! refuses to run inside a transaction block). Which dead rows it can
//! remove depends on every transaction of the server (xids are shared), so
//! that it ran is what a test can hold.

use std::time::Duration;

use sqlx::PgPool;

use interests_receiver::store::queues::{self, Queue};

async fn vacuum_count(db: &PgPool, table: &str) -> i64 {
    sqlx::query_scalar("SELECT vacuum_count FROM pg_stat_user_tables WHERE relname = $1")
        .bind(table)
        .fetch_one(db)
        .await
        .unwrap()
}

#[sqlx::test]
async fn a_taker_vacuums_its_queue(db: PgPool) {
    interests_receiver::store::migrate(&db).await.unwrap();
    for (queue, table, fill) in [
        (
            Queue::EventInbox,
            "event_inbox",
            "INSERT INTO event_inbox (lookup_id, type) \
             SELECT gen_random_uuid(), 'lookup.completed' FROM generate_series(1, 3000)",
        ),
        (
            Queue::WebhookSends,
            "webhook_sends",
            "WITH l AS (INSERT INTO lookups (id, status, email, subject_key) \
               VALUES (gen_random_uuid(), 'queued', 'q@example.com', 'q') RETURNING id), \
             w AS (INSERT INTO webhooks (id, url, events, secret_sealed) \
               VALUES (gen_random_uuid(), 'https://example.com/hook', '{lookup.completed}', \
                       '\\x00') RETURNING id), \
             e AS (INSERT INTO events (lookup_id, type) \
               SELECT l.id, 'lookup.completed' FROM l, generate_series(1, 3000) RETURNING id) \
             INSERT INTO webhook_sends (webhook_id, event_id) SELECT w.id, e.id FROM w, e",
        ),
        (
            Queue::FacetChanges,
            "facet_changes",
            "INSERT INTO facet_changes (field, value_lower, spelling, sign) \
             SELECT 'brand', 'b' || i, 'B' || i, 1 FROM generate_series(1, 3000) i",
        ),
    ] {
        sqlx::query(fill).execute(&db).await.unwrap();
        sqlx::query(&format!("DELETE FROM {table}"))
            .execute(&db)
            .await
            .unwrap();
        let before = vacuum_count(&db, table).await;
        let mut conn = db.acquire().await.unwrap();
        queues::vacuum(&mut conn, queue)
            .await
            .unwrap_or_else(|e| panic!("VACUUM {table}: {e}"));
        drop(conn);
        let mut waited = Duration::ZERO;
        while vacuum_count(&db, table).await == before {
            assert!(waited < Duration::from_secs(10), "{table} was not vacuumed");
            tokio::time::sleep(Duration::from_millis(100)).await;
            waited += Duration::from_millis(100);
        }
    }
}
