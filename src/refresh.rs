//! Refreshing people on demand (`POST /v1/profiles/refresh`): a new paid
//! lookup with `refresh: true` for each person whose newest profile matches
//! the filters and is older than a cut-off. Each goes through
//! [`crate::lookups::request`], the path of `POST /v1/lookups`, so in-flight
//! dedup, suppression and the credit budget apply to it as to any lookup.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::json;
use sqlx::PgPool;

use crate::lifecycle::CREDITS_PER_RESULT;
use crate::lookups::{self, Answer, LookupRequest, Policy, RequestError, Would};
use crate::store::profiles::ProfileFilter;
use crate::store::versions::{self, Stale};

/// Most people one request considers; a larger segment is refreshed by
/// asking again (those queued are in flight and skipped then).
pub const MAX_PEOPLE: i64 = 10_000;

#[derive(Debug, Clone)]
pub struct Plan {
    pub filter: ProfileFilter,
    pub older_than: DateTime<Utc>,
    pub dry_run: bool,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Outcome {
    /// People whose newest profile matched and was older than the cut-off.
    pub matched: u64,
    /// Refreshes queued (0 in a dry run).
    pub queued: u64,
    /// The most the refreshes queued (or, in a dry run, that would be) can
    /// cost: suppressed people and people in flight are not counted.
    pub credits_at_most: u64,
}

pub async fn run(db: &PgPool, policy: Policy<'_>, plan: &Plan) -> sqlx::Result<Outcome> {
    let policy = Policy {
        service_refresh: true,
        ..policy
    };
    let people = versions::stale(db, &plan.filter, plan.older_than, None, MAX_PEOPLE).await?;
    let matched = people.len() as u64;
    let paid = if plan.dry_run {
        would_pay(db, policy, &people).await?
    } else {
        queue(db, policy, &people).await?
    };
    Ok(Outcome {
        matched,
        queued: if plan.dry_run { 0 } else { paid },
        credits_at_most: paid * CREDITS_PER_RESULT as u64,
    })
}

fn refresh_of(person: &Stale) -> LookupRequest {
    LookupRequest {
        subject: person.subject.clone(),
        refresh: true,
        // The operator's own references (a CRM id) follow the person.
        metadata: person.metadata.clone(),
        warnings: Vec::new(),
    }
}

/// Queues a refresh of each person; how many were queued.
async fn queue(db: &PgPool, policy: Policy<'_>, people: &[Stale]) -> sqlx::Result<u64> {
    let mut queued = 0;
    for person in people {
        let req = refresh_of(person);
        let body = json!({"refresh_of": person.profile_id});
        match lookups::request(db, policy, &req, &body, None, None).await {
            Ok(Answer::Created(_)) => queued += 1,
            Ok(_)
            | Err(RequestError::Suppressed)
            | Err(RequestError::Erased)
            | Err(RequestError::IdempotencyConflict) => {}
            // The rest wait: the day's budget is spent.
            Err(RequestError::BudgetExhausted(_)) => break,
            Err(RequestError::Database(e)) => return Err(e),
        }
    }
    Ok(queued)
}

/// How many of `people` a real run would queue, writing nothing.
async fn would_pay(db: &PgPool, policy: Policy<'_>, people: &[Stale]) -> sqlx::Result<u64> {
    let mut paid = 0u64;
    for person in people {
        let mut conn = db.acquire().await?;
        if lookups::foresee(&mut conn, policy, &refresh_of(person)).await? == Would::Paid {
            paid += 1;
        }
    }
    if let Some(left) = lookups::budget_left(db, policy).await? {
        paid = paid.min((left / i64::from(CREDITS_PER_RESULT)) as u64);
    }
    Ok(paid)
}

/// The scheduled pass (REFRESH_AFTER_DAYS): refreshes the people whose
/// newest profile is older than `after`, oldest first, as many as the
/// day's refresh budget allows, and none that was looked up within
/// `after` (at most one refresh per period, also when the last one
/// failed). Safe on every replica at once: each refresh goes through the
/// same locks and in-flight dedup as any lookup. How many were queued.
pub async fn scheduled(db: &PgPool, policy: Policy<'_>, after: Duration) -> sqlx::Result<u64> {
    let policy = Policy {
        service_refresh: true,
        ..policy
    };
    let room = match lookups::budget_left(db, policy).await? {
        Some(left) => left / i64::from(CREDITS_PER_RESULT),
        None => MAX_PEOPLE,
    };
    if room == 0 {
        return Ok(0);
    }
    let cutoff = Utc::now() - chrono::Duration::from_std(after).unwrap_or(chrono::Duration::MAX);
    let filter = ProfileFilter::default();
    let people = versions::stale(db, &filter, cutoff, Some(cutoff), room.min(MAX_PEOPLE)).await?;
    queue(db, policy, &people).await
}
