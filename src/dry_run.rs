//! The dry run of `POST /v1/lookups/batch` (`"dry_run": true`): what each
//! item would lead to and what it could cost, with nothing written, nothing
//! locked and nothing sent upstream. Each item is judged as
//! `crate::lookups::request` would judge it alone; on top of that, a later
//! item of a person that an earlier item would pay for counts as in flight,
//! as it would once the first one is created.

use std::collections::HashSet;

use futures_util::StreamExt;
use serde_json::Value;
use sqlx::PgPool;

use crate::batch::ItemError;
use crate::lifecycle::CREDITS_PER_RESULT;
use crate::lookups::{self, LookupRequest, Policy, RequestError, Would};

/// Items judged at once (reads only).
const CONCURRENCY: usize = 4;

/// What one item would lead to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Paid,
    Cached,
    InFlight,
    Suppressed,
    Invalid,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Paid => "paid",
            Outcome::Cached => "cached",
            Outcome::InFlight => "in_flight",
            Outcome::Suppressed => "suppressed",
            Outcome::Invalid => "invalid",
        }
    }

    /// Credits the item may cost at most (a paid lookup with no match
    /// costs nothing).
    pub fn credits(self) -> i64 {
        match self {
            Outcome::Paid => i64::from(CREDITS_PER_RESULT),
            _ => 0,
        }
    }
}

/// One item's verdict, and the problem document of an invalid or
/// suppressed item.
#[derive(Debug)]
pub struct ItemVerdict {
    pub outcome: Outcome,
    pub problem: Option<Value>,
}

/// How many items would lead to each outcome, and what they may cost.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Totals {
    pub paid: u64,
    pub cached: u64,
    pub in_flight: u64,
    pub suppressed: u64,
    pub invalid: u64,
    pub credits_at_most: i64,
    /// Credits the day's budget has left (`None` without
    /// CREDIT_BUDGET_DAILY).
    pub budget_left: Option<i64>,
}

impl Totals {
    fn add(&mut self, outcome: Outcome) {
        let count = match outcome {
            Outcome::Paid => &mut self.paid,
            Outcome::Cached => &mut self.cached,
            Outcome::InFlight => &mut self.in_flight,
            Outcome::Suppressed => &mut self.suppressed,
            Outcome::Invalid => &mut self.invalid,
        };
        *count += 1;
        self.credits_at_most += outcome.credits();
    }
}

/// The verdicts in input order, and their totals.
#[derive(Debug)]
pub struct Verdicts {
    pub items: Vec<ItemVerdict>,
    pub totals: Totals,
}

/// Judges every item of a batch. `render` turns a refused item into its
/// status and problem document, as for a real batch.
pub async fn judge(
    db: &PgPool,
    policy: Policy<'_>,
    items: &[Value],
    render: impl Fn(ItemError) -> (u16, Value),
) -> sqlx::Result<Verdicts> {
    // Each item against the database, concurrently and in input order.
    let judged: Vec<sqlx::Result<Judged>> =
        futures_util::stream::iter(items.iter().cloned().map(|item| {
            let db = db.clone();
            async move { one(&db, policy, &item).await }
        }))
        .buffered(CONCURRENCY)
        .collect()
        .await;

    // Then against the items before it: identities (in clear, in memory
    // only) of the people this batch would pay for.
    let mut paid_for: HashSet<String> = HashSet::new();
    let mut verdicts = Vec::with_capacity(items.len());
    let mut totals = Totals::default();
    for result in judged {
        let verdict = match result? {
            Err(error) => {
                let outcome = match error {
                    ItemError::Refused(RequestError::Suppressed) => Outcome::Suppressed,
                    _ => Outcome::Invalid,
                };
                ItemVerdict {
                    outcome,
                    problem: Some(render(error).1),
                }
            }
            Ok((would, identities)) => {
                let outcome = match would {
                    Would::Cached => Outcome::Cached,
                    Would::InFlight => Outcome::InFlight,
                    Would::Suppressed => Outcome::Suppressed,
                    Would::Paid if identities.iter().any(|i| paid_for.contains(i)) => {
                        Outcome::InFlight
                    }
                    Would::Paid => {
                        paid_for.extend(identities);
                        Outcome::Paid
                    }
                };
                let problem = (outcome == Outcome::Suppressed)
                    .then(|| render(ItemError::Refused(RequestError::Suppressed)).1);
                ItemVerdict { outcome, problem }
            }
        };
        totals.add(verdict.outcome);
        verdicts.push(verdict);
    }
    totals.budget_left = lookups::budget_left(db, policy).await?;
    Ok(Verdicts {
        items: verdicts,
        totals,
    })
}

/// What the database says of one item, with the identities of its person.
type Judged = Result<(Would, Vec<String>), ItemError>;

async fn one(db: &PgPool, policy: Policy<'_>, item: &Value) -> sqlx::Result<Judged> {
    if item.to_string().len() > lookups::MAX_LOOKUP_BODY {
        return Ok(Err(ItemError::TooLarge(lookups::MAX_LOOKUP_BODY)));
    }
    let request = match LookupRequest::parse_under(item, policy.name_only) {
        Ok(r) => r,
        Err(errors) => return Ok(Err(ItemError::Invalid(errors))),
    };
    let mut conn = db.acquire().await?;
    let would = lookups::foresee(&mut conn, policy, &request).await?;
    Ok(Ok((would, request.subject.identities())))
}
