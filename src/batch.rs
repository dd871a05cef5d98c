//! Requesting many lookups at once (`POST /v1/lookups/batch`): each item goes
//! through exactly what `POST /v1/lookups` does for one (`crate::lookups`),
//! and an `Idempotency-Key` covers the whole batch.

use std::time::Duration;

use futures_util::StreamExt;
use serde_json::{Value, json};
use sqlx::PgPool;
use uuid::Uuid;

use crate::audit::{self, Action};
use crate::auth::Caller;
use crate::lookups::{self, Answer, LookupRequest, Policy, RequestError};
use crate::store::idempotency;
use crate::store::lookups::LookupRecord;
use crate::subject::FieldError;

/// Most items in one batch.
pub const MAX_ITEMS: usize = 1000;
/// Items handled at once: enough to answer 1,000 items well inside the
/// request timeout, few enough to leave the pool to everyone else.
const CONCURRENCY: usize = 4;

/// Why one item was not taken.
#[derive(Debug)]
pub enum ItemError {
    /// Fields that failed validation (422).
    Invalid(Vec<FieldError>),
    /// The item alone is larger than a `POST /v1/lookups` body may be (413).
    TooLarge(usize),
    /// Refused by policy: suppressed subject, spent budget (409, 429).
    Refused(RequestError),
    /// A replayed item whose lookup was erased (or removed by retention)
    /// since the first answer (410): it is not served back, nor made again.
    Erased,
}

/// What one item was answered.
#[derive(Debug)]
pub struct ItemAnswer {
    pub status: u16,
    pub lookup: Option<LookupRecord>,
    /// The problem document of a refused item.
    pub problem: Option<Value>,
}

#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    #[error("this Idempotency-Key was used with a different request body")]
    IdempotencyConflict,
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// The answers of a batch, and how many new lookups it created.
pub struct Outcome {
    pub answers: Vec<ItemAnswer>,
    pub created: usize,
}

/// Handles every item of a batch, in input order, for `caller`: each item
/// that names a lookup is audited as a `lookup.create` in the transaction
/// that answered it (a replay's in the replay's). `render` turns a refused
/// item into its status and problem document (the HTTP layer knows how).
/// A database failure fails the whole batch: nothing half-answered is
/// recorded under the key, and a retry finds the created lookups in flight
/// instead of paying for them again.
///
/// With an `Idempotency-Key`, the key is claimed by a committed row first
/// (no connection is held while the items run); a second batch with the
/// same key waits for the first one's answers and replays them.
pub async fn request(
    db: &PgPool,
    policy: Policy<'_>,
    caller: &Caller,
    items: &[Value],
    body_hash: &str,
    idempotency_key: Option<&str>,
    render: impl Fn(ItemError) -> (u16, Value),
) -> Result<Outcome, BatchError> {
    let Some(key) = idempotency_key else {
        return handle_items(db, policy, caller, items, &render).await;
    };
    loop {
        match idempotency::claim_batch(db, key, body_hash, CLAIM_LEASE).await? {
            idempotency::BatchClaim::Mine => break,
            idempotency::BatchClaim::Done {
                request_sha256,
                answers,
            } => {
                if request_sha256 != body_hash {
                    return Err(BatchError::IdempotencyConflict);
                }
                // A replay executes nothing, whatever became of the lookups
                // since; it is audited in one statement of its own.
                let answers = replay(db, &answers, &render).await?;
                let named = answers
                    .iter()
                    .filter_map(|a| a.lookup.as_ref().map(|l| (l.id, &l.subject)));
                audit::record_lookups(db, policy.secret, caller, Action::LookupCreate, named)
                    .await?;
                return Ok(Outcome {
                    answers,
                    created: 0,
                });
            }
            idempotency::BatchClaim::Running { request_sha256 } => {
                if request_sha256.is_some_and(|h| h != body_hash) {
                    return Err(BatchError::IdempotencyConflict);
                }
                // Bounded by the request's own deadline.
                tokio::time::sleep(CLAIM_WAIT).await;
            }
        }
    }
    let claim = ClaimGuard {
        db: db.clone(),
        key: Some(key.to_owned()),
    };
    let outcome = handle_items(db, policy, caller, items, &render).await?;
    idempotency::finish_batch(db, key, &record(&outcome.answers)).await?;
    claim.finished();
    Ok(outcome)
}

/// How long a batch's claim on its key lasts: longer than any batch may run
/// (the HTTP deadline is 25 s), so only a crashed run's claim runs out.
const CLAIM_LEASE: Duration = Duration::from_secs(60);
/// How often a batch waiting for another with the same key looks again.
const CLAIM_WAIT: Duration = Duration::from_millis(50);

/// Gives a claimed key back when its batch ends without answers (a
/// database failure, or the request cancelled at its deadline or by the
/// client leaving), so that a retry runs it at once instead of waiting for
/// the claim to run out.
struct ClaimGuard {
    db: PgPool,
    key: Option<String>,
}

impl ClaimGuard {
    fn finished(mut self) {
        self.key = None;
    }
}

impl Drop for ClaimGuard {
    fn drop(&mut self) {
        if let Some(key) = self.key.take()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            let db = self.db.clone();
            runtime.spawn(async move {
                if let Err(e) = idempotency::release_batch(&db, &key).await {
                    tracing::warn!(error = %e, "cannot release a batch's Idempotency-Key claim; it runs out");
                }
            });
        }
    }
}

async fn handle_items(
    db: &PgPool,
    policy: Policy<'_>,
    caller: &Caller,
    items: &[Value],
    render: &impl Fn(ItemError) -> (u16, Value),
) -> Result<Outcome, BatchError> {
    // `buffered` keeps input order. Two items for the same person collapse
    // onto one lookup whichever runs first (the in-flight unique index).
    let results: Vec<Result<Result<Answer, ItemError>, sqlx::Error>> =
        futures_util::stream::iter(items.iter().cloned().map(|item| {
            let db = db.clone();
            async move { one(&db, policy, caller, &item).await }
        }))
        .buffered(CONCURRENCY)
        .collect()
        .await;
    let mut answers = Vec::with_capacity(items.len());
    let mut created = 0;
    for result in results {
        answers.push(match result? {
            Ok(answer) => {
                created += usize::from(matches!(answer, Answer::Created(_)));
                let status = answer.status();
                ItemAnswer {
                    status,
                    lookup: Some(answer.into_lookup()),
                    problem: None,
                }
            }
            Err(e) => {
                let (status, problem) = render(e);
                ItemAnswer {
                    status,
                    lookup: None,
                    problem: Some(problem),
                }
            }
        });
    }
    Ok(Outcome { answers, created })
}

async fn one(
    db: &PgPool,
    policy: Policy<'_>,
    caller: &Caller,
    item: &Value,
) -> Result<Result<Answer, ItemError>, sqlx::Error> {
    let size = item.to_string().len();
    if size > lookups::MAX_LOOKUP_BODY {
        return Ok(Err(ItemError::TooLarge(lookups::MAX_LOOKUP_BODY)));
    }
    let request = match LookupRequest::parse_under(item, policy.name_only) {
        Ok(r) => r,
        Err(errors) => return Ok(Err(ItemError::Invalid(errors))),
    };
    match lookups::request(db, policy, &request, item, None, Some(caller)).await {
        Ok(answer) => Ok(Ok(answer)),
        Err(RequestError::Database(e)) => Err(e),
        Err(e) => Ok(Err(ItemError::Refused(e))),
    }
}

/// What is kept under the key: statuses, lookup ids and problems; never a
/// subject.
fn record(answers: &[ItemAnswer]) -> Value {
    Value::Array(
        answers
            .iter()
            .map(|a| match (&a.lookup, &a.problem) {
                (Some(l), _) => json!({"status": a.status, "lookup_id": l.id}),
                (None, problem) => json!({"status": a.status, "problem": problem}),
            })
            .collect(),
    )
}

/// The recorded answers with each lookup read again (its current state, as
/// a replayed `POST /v1/lookups` shows); an item whose lookup is gone
/// (erased, or removed by retention) is answered as [`ItemError::Erased`].
async fn replay(
    db: &PgPool,
    recorded: &Value,
    render: &impl Fn(ItemError) -> (u16, Value),
) -> sqlx::Result<Vec<ItemAnswer>> {
    let mut answers = Vec::new();
    for entry in recorded.as_array().into_iter().flatten() {
        let status = entry["status"].as_u64().unwrap_or(500) as u16;
        let lookup_id = entry["lookup_id"]
            .as_str()
            .and_then(|s| s.parse::<Uuid>().ok());
        let answer = match lookup_id {
            Some(id) => match crate::store::lookups::get(db, id).await? {
                Some(lookup) => ItemAnswer {
                    status,
                    lookup: Some(lookup),
                    problem: None,
                },
                None => {
                    let (status, problem) = render(ItemError::Erased);
                    ItemAnswer {
                        status,
                        lookup: None,
                        problem: Some(problem),
                    }
                }
            },
            None => ItemAnswer {
                status,
                lookup: None,
                problem: Some(entry["problem"].clone()),
            },
        };
        answers.push(answer);
    }
    Ok(answers)
}
