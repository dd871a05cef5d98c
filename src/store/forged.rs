//! Daily counts of callbacks refused for a wrong token.

use sqlx::PgPool;

/// Adds `n` refusals to today's count.
pub async fn add(db: &PgPool, n: u64) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO forged_callbacks (day, count) VALUES (current_date, $1) \
         ON CONFLICT (day) DO UPDATE SET count = forged_callbacks.count + EXCLUDED.count",
    )
    .bind(i64::try_from(n).unwrap_or(i64::MAX))
    .execute(db)
    .await?;
    Ok(())
}
