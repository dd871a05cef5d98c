//! Requesting a lookup: validation of the request body, then, in one
//! transaction, the idempotency key, the suppression list, the profile
//! cache, in-flight dedup, the credit budget, and the new pending row.

use std::time::Duration;

use chrono::Utc;
use serde_json::{Map, Value};
use sqlx::PgPool;
use uuid::Uuid;

use crate::audit::{self, Action, Whom};
use crate::auth::Caller;
use crate::config::NameOnlyLookups;
use crate::fields::Fields;
use crate::lifecycle::CREDITS_PER_RESULT;
use crate::secrets::ServiceSecret;
use crate::store::erasure;
use crate::store::idempotency;
use crate::store::lookups::{self, LookupRecord, NewLookup};
use crate::subject::{
    FieldError, MatchBasis, NAME_ONLY_WARNING, Subject, legacy_identifier_digest,
};
use crate::token::sha256_hex;

/// Largest lookup request: a `POST /v1/lookups` body, or one batch item
/// (a batch item may be no larger than the request it stands for).
pub const MAX_LOOKUP_BODY: usize = 64 * 1024;

/// A validated `POST /v1/lookups` body.
#[derive(Debug, Clone)]
pub struct LookupRequest {
    pub subject: Subject,
    pub refresh: bool,
    pub metadata: Value,
    /// Warnings the lookup carries if one is made (NAME_ONLY_LOOKUPS=warn).
    pub warnings: Vec<String>,
}

const FIELDS: [&str; 7] = [
    "email",
    "phone",
    "social_media_url",
    "name",
    "company",
    "refresh",
    "metadata",
];

impl LookupRequest {
    /// Reads the body field by field so that every error names its field.
    pub fn parse(body: &Value) -> Result<LookupRequest, Vec<FieldError>> {
        let mut fields = Fields::new(body, &FIELDS).map_err(|e| vec![e])?;
        let raw = Subject {
            email: fields.text("email"),
            phone: fields.text("phone"),
            social_media_url: fields.text("social_media_url"),
            name: fields.text("name"),
            company: fields.text("company"),
        };
        let refresh = fields.flag("refresh");
        let metadata = match fields.object.get("metadata") {
            None | Some(Value::Null) => Value::Object(Map::new()),
            Some(v @ Value::Object(_)) if holds_nul(v) => {
                fields.error(
                    "metadata",
                    "must not contain a NUL character in any key or string",
                );
                Value::Object(Map::new())
            }
            Some(v @ Value::Object(_)) => v.clone(),
            Some(_) => {
                fields.error("metadata", "expected a JSON object");
                Value::Object(Map::new())
            }
        };
        let mut errors = fields.errors;
        let subject = if errors.is_empty() {
            Subject::validate(raw).map_err(|e| errors.extend(e)).ok()
        } else {
            None
        };
        match subject {
            Some(subject) if errors.is_empty() => Ok(LookupRequest {
                subject,
                refresh,
                metadata,
                warnings: Vec::new(),
            }),
            _ => Err(errors),
        }
    }

    /// [`LookupRequest::parse`], then the `NAME_ONLY_LOOKUPS` policy: a
    /// name-only subject is refused naming the identifiers that would make
    /// it precise, or carries a warning.
    pub fn parse_under(
        body: &Value,
        name_only: NameOnlyLookups,
    ) -> Result<LookupRequest, Vec<FieldError>> {
        let mut request = Self::parse(body)?;
        if request.subject.match_basis() == Some(MatchBasis::NameOnly) {
            match name_only {
                NameOnlyLookups::Allow => {}
                NameOnlyLookups::Warn => request.warnings.push(NAME_ONLY_WARNING.to_owned()),
                NameOnlyLookups::Refuse => {
                    return Err(["company", "email", "phone", "social_media_url"]
                        .into_iter()
                        .map(|field| {
                            FieldError::new(
                                field,
                                "a name alone can match the wrong person and NAME_ONLY_LOOKUPS=refuse: add company, email, phone or social_media_url",
                            )
                        })
                        .collect());
                }
            }
        }
        Ok(request)
    }

    /// Unkeyed digests of each identifier, as suppressions made before
    /// keyed hashes kept them.
    fn legacy_digests(&self) -> Vec<String> {
        let s = &self.subject;
        [
            ("email", &s.email),
            ("phone", &s.phone),
            ("social_media_url", &s.social_media_url),
            ("name", &s.name),
        ]
        .into_iter()
        .filter_map(|(kind, v)| v.as_deref().map(|v| legacy_identifier_digest(kind, v)))
        .collect()
    }
}

/// An Idempotency-Key and its request hash as remembered once their lookup
/// was erased: keyed hashes under the current secret (a key may hold an
/// identifier).
pub fn sealed_idempotency(secret: &ServiceSecret, key: &str, request: &str) -> (String, String) {
    (
        secret.identity_hash(&format!("idempotency-key:{key}")),
        secret.identity_hash(&format!("idempotency-request:{request}")),
    )
}

/// The hashes an erased `key` may be remembered by (current and previous
/// secret).
fn erased_keys(secret: &ServiceSecret, key: &str) -> Vec<String> {
    secret.identity_hashes(&[format!("idempotency-key:{key}")])
}

/// The current-key identities of a lookup, from its identifiers.
fn current_hashes(secret: &ServiceSecret, subject: &Subject) -> Vec<String> {
    subject
        .identities()
        .iter()
        .map(|i| secret.identity_hash(i))
        .collect()
}

/// Re-keys on use: a lookup matched (perhaps only under
/// SERVICE_SECRET_PREVIOUS) gets its identities under the current secret.
async fn rekey(
    tx: &mut sqlx::PgConnection,
    secret: &ServiceSecret,
    lookup: &LookupRecord,
) -> sqlx::Result<()> {
    let hashes = current_hashes(secret, &lookup.subject);
    lookups::rekey_if_stale(tx, lookup.id, &hashes, &secret.identity_key_id()).await
}

/// One batch of the re-keying pass after a rotation of SERVICE_SECRET: up
/// to `limit` lookups whose identities are not yet under the current secret
/// get them (lookups keep their identifiers, so their hashes can be made
/// again; suppressions cannot: see README). Returns how many, or `None`
/// once no lookup is left to re-key. Lookups locked elsewhere are skipped,
/// so an empty batch is not the end while any of them remains.
pub async fn rekey_identities(
    db: &PgPool,
    secret: &ServiceSecret,
    limit: i64,
) -> sqlx::Result<Option<usize>> {
    let key_id = secret.identity_key_id();
    let mut tx = db.begin().await?;
    let batch = lookups::claim_stale_identities(&mut tx, &key_id, limit).await?;
    if batch.is_empty() {
        drop(tx);
        return Ok(lookups::any_stale_identities(db, &key_id)
            .await?
            .then_some(0));
    }
    for (id, subject) in &batch {
        lookups::insert_identities(&mut *tx, *id, &current_hashes(secret, subject)).await?;
    }
    let ids: Vec<Uuid> = batch.iter().map(|(id, _)| *id).collect();
    lookups::mark_identities_key(&mut tx, &ids, &key_id).await?;
    tx.commit().await?;
    Ok(Some(batch.len()))
}

/// Records the identities of lookups made before they were recorded, so
/// that dedup, the cache and erasure find them too. Returns how many.
/// Runs once per database: new lookups get their identities when made.
pub async fn backfill_identities(db: &PgPool, secret: &ServiceSecret) -> sqlx::Result<u64> {
    const NAME: &str = "lookup_identities";
    if lookups::backfill_done(db, NAME).await? {
        return Ok(0);
    }
    let mut total = 0;
    loop {
        let batch = lookups::without_identities(db, 500).await?;
        if batch.is_empty() {
            lookups::mark_backfill_done(db, NAME).await?;
            return Ok(total);
        }
        for (id, subject) in &batch {
            let hashes: Vec<String> = subject
                .identities()
                .iter()
                .map(|i| secret.identity_hash(i))
                .collect();
            if hashes.is_empty() {
                // Nothing identifies it; record a placeholder so it is not
                // read again on every start.
                lookups::insert_identities(db, *id, &[format!("none:{id}")]).await?;
            } else {
                lookups::insert_identities(db, *id, &hashes).await?;
            }
        }
        total += batch.len() as u64;
    }
}

/// Does any key or string of `value` hold a NUL character (which
/// PostgreSQL cannot store)?
fn holds_nul(value: &Value) -> bool {
    match value {
        Value::String(s) => s.contains('\0'),
        Value::Array(items) => items.iter().any(holds_nul),
        Value::Object(map) => map.iter().any(|(k, v)| k.contains('\0') || holds_nul(v)),
        _ => false,
    }
}

/// What the request led to.
#[derive(Debug)]
pub enum Answer {
    /// A new pending lookup (202).
    Created(LookupRecord),
    /// The same person's lookup already in flight (202).
    InFlight(LookupRecord),
    /// A completed lookup younger than the cache age (200).
    Cached(LookupRecord),
    /// A replay of an earlier request with the same Idempotency-Key.
    Replayed(u16, LookupRecord),
}

impl Answer {
    pub fn status(&self) -> u16 {
        match self {
            Answer::Created(_) | Answer::InFlight(_) => 202,
            Answer::Cached(_) => 200,
            Answer::Replayed(status, _) => *status,
        }
    }

    pub fn lookup(&self) -> &LookupRecord {
        match self {
            Answer::Created(l)
            | Answer::InFlight(l)
            | Answer::Cached(l)
            | Answer::Replayed(_, l) => l,
        }
    }

    pub fn into_lookup(self) -> LookupRecord {
        match self {
            Answer::Created(l)
            | Answer::InFlight(l)
            | Answer::Cached(l)
            | Answer::Replayed(_, l) => l,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    #[error("this person asked to be erased; lookups of them are refused")]
    Suppressed,
    #[error("the daily credit budget ({0} credits) is spent")]
    BudgetExhausted(u64),
    #[error("this Idempotency-Key was used with a different request body")]
    IdempotencyConflict,
    #[error("the lookup this Idempotency-Key made was erased; a replay does not make it again")]
    Erased,
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// Policy knobs of lookup creation.
#[derive(Debug, Clone, Copy)]
pub struct Policy<'a> {
    /// Keys the identity hashes.
    pub secret: &'a ServiceSecret,
    /// Lookups are made against the sandbox simulator: mark them synthetic.
    pub synthetic: bool,
    pub profile_cache: Duration,
    /// CREDIT_BUDGET_DAILY: what lookups other than the service's
    /// refreshes may spend per UTC day.
    pub credit_budget_daily: Option<u64>,
    /// NAME_ONLY_LOOKUPS.
    pub name_only: NameOnlyLookups,
    /// REFRESH_CREDITS_DAILY: what the service's refreshes may spend.
    pub refresh_credits_daily: Option<u64>,
    /// The lookups requested are the service's refreshes (on demand or
    /// scheduled): marked, budgeted apart and submitted after new lookups.
    pub service_refresh: bool,
}

impl Policy<'_> {
    /// The budget the requested lookups spend from.
    fn budget(&self) -> Option<u64> {
        if self.service_refresh {
            self.refresh_credits_daily
        } else {
            self.credit_budget_daily
        }
    }
}

/// Answers a lookup request in one transaction; with `audit_as`, the
/// answer's lookup is recorded in the audit log (`lookup.create`) in that
/// same transaction, so no lookup is made or served without its record.
pub async fn request(
    db: &PgPool,
    policy: Policy<'_>,
    req: &LookupRequest,
    body: &Value,
    idempotency_key: Option<&str>,
    audit_as: Option<&Caller>,
) -> Result<Answer, RequestError> {
    // One connection for the transaction and the flush after it: a second
    // one could time out after the lookup was made.
    let mut conn = db.acquire().await?;
    let mut tx = sqlx::Connection::begin(&mut *conn).await?;
    // Under a daily budget, a new lookup's spend is decided last, under a
    // lock held to the commit (`lookups::budget_allows`). The commit does
    // not wait for its fsync, so the lock is held for that one statement
    // and the commit; the answer waits for durability instead, below,
    // outside the lock.
    let budgeted = policy.budget().is_some();
    lookups::set_up_create_transaction(&mut tx, budgeted).await?;
    let answer = answer(&mut tx, policy, req, body, idempotency_key).await?;
    if let Some(caller) = audit_as {
        let lookup = answer.lookup();
        let whom = Whom::Lookup(lookup.id, &lookup.subject);
        audit::record(&mut *tx, policy.secret, caller, Action::LookupCreate, whom).await?;
    }
    if let (Answer::Created(_), Some(budget)) = (&answer, policy.budget()) {
        let budget_credits = i64::try_from(budget).unwrap_or(i64::MAX);
        let per_job = i64::from(CREDITS_PER_RESULT);
        // The new lookup counts itself: it is in the kept totals already.
        // Refused, the transaction rolls back: no lookup, identity, key or
        // audit row of this request remains. At once, not when the pool
        // gets the connection back: the rollback releases the budget lock.
        if !lookups::budget_allows(&mut tx, budget_credits, per_job, policy.service_refresh).await?
        {
            tx.rollback().await?;
            return Err(RequestError::BudgetExhausted(budget));
        }
    }
    tx.commit().await?;
    if budgeted {
        // Nothing is answered, and no job submitted, before the commit is
        // on disk (a worker's claim is itself a synchronous commit, later in
        // the log, so it flushes this one first).
        lookups::flush_wal(&mut conn).await?;
    }
    Ok(answer)
}

/// The idempotency key's replay, or the decision and the key's record.
async fn answer(
    tx: &mut sqlx::PgConnection,
    policy: Policy<'_>,
    req: &LookupRequest,
    body: &Value,
    idempotency_key: Option<&str>,
) -> Result<Answer, RequestError> {
    let body_hash = sha256_hex(body.to_string().as_bytes());
    if let Some(key) = idempotency_key {
        idempotency::lock(tx, key).await?;
        if let Some(stored) = idempotency::find(tx, key).await? {
            if stored.request_sha256 != body_hash {
                return Err(RequestError::IdempotencyConflict);
            }
            let lookup = match stored.lookup_id {
                Some(id) => lookups::get(&mut *tx, id).await?,
                None => None,
            };
            if let Some(lookup) = lookup {
                return Ok(Answer::Replayed(stored.response_status as u16, lookup));
            }
        } else if let Some(request) =
            idempotency::find_erased(tx, &erased_keys(policy.secret, key)).await?
        {
            let (_, this_request) = sealed_idempotency(policy.secret, key, &body_hash);
            return Err(if request == this_request {
                RequestError::Erased
            } else {
                RequestError::IdempotencyConflict
            });
        }
    }

    let answer = decide(tx, policy, req).await?;
    if let Some(key) = idempotency_key {
        let lookup_id = answer.lookup().id;
        idempotency::insert(tx, key, &body_hash, lookup_id, answer.status()).await?;
    }
    Ok(answer)
}

/// Credits the day's budget still allows (`None`: no budget).
pub async fn budget_left(db: &PgPool, policy: Policy<'_>) -> sqlx::Result<Option<i64>> {
    let Some(budget) = policy.budget() else {
        return Ok(None);
    };
    let mut conn = db.acquire().await?;
    let per_job = i64::from(CREDITS_PER_RESULT);
    let committed =
        lookups::credits_committed_today(&mut conn, per_job, policy.service_refresh).await?;
    Ok(Some((budget as i64 - committed).max(0)))
}

async fn decide(
    tx: &mut sqlx::PgConnection,
    policy: Policy<'_>,
    req: &LookupRequest,
) -> Result<Answer, RequestError> {
    // Keyed hashes of who this is: under the current secret for what is
    // written, under every accepted secret for what is matched.
    let identities = req.subject.identities();
    let written: Vec<String> = identities
        .iter()
        .map(|i| policy.secret.identity_hash(i))
        .collect();
    let matched = policy.secret.identity_hashes(&identities);
    let suppression_identities = req.subject.suppression_identities();
    let suppressible = policy.secret.identity_hashes(&suppression_identities);
    // The locks an erasure of any of these identities takes too (under the
    // current secret): an erasure and this request run one after the other,
    // so suppression is checked only once they are held.
    let locked: Vec<String> = suppression_identities
        .iter()
        .map(|i| policy.secret.identity_hash(i))
        .collect();
    lookups::lock_identities(tx, &locked).await?;
    if erasure::any_suppressed(&mut *tx, &suppressible, &req.legacy_digests()).await? {
        return Err(RequestError::Suppressed);
    }
    if !req.refresh {
        let since =
            Utc::now() - chrono::Duration::from_std(policy.profile_cache).unwrap_or_default();
        if let Some(cached) = lookups::find_cached(tx, &matched, since).await? {
            rekey(tx, policy.secret, &cached).await?;
            return Ok(Answer::Cached(cached));
        }
    }
    if let Some(running) = lookups::find_in_flight(tx, &matched).await? {
        rekey(tx, policy.secret, &running).await?;
        return Ok(Answer::InFlight(running));
    }
    // A new lookup: its spend is checked against a daily budget by the
    // caller, last (`request`).
    let key = req.subject.key();
    let id = Uuid::now_v7();
    let inserted = lookups::insert_pending(
        tx,
        NewLookup {
            id,
            subject: &req.subject,
            subject_key: &key,
            metadata: &req.metadata,
            synthetic: policy.synthetic,
            identities_key: &policy.secret.identity_key_id(),
            warnings: &req.warnings,
            refresh: policy.service_refresh,
        },
    )
    .await?;
    if inserted {
        lookups::insert_identities(&mut *tx, id, &written).await?;
        let created = lookups::get(&mut *tx, id)
            .await?
            .ok_or(sqlx::Error::RowNotFound)?;
        return Ok(Answer::Created(created));
    }
    // Another request for the same person won the race; its row is visible
    // now that the unique index made us wait for its commit.
    let running = lookups::find_in_flight_by_key(tx, &key)
        .await?
        .ok_or(sqlx::Error::RowNotFound)?;
    Ok(Answer::InFlight(running))
}

/// What [`request`] would do for a lookup, found with nothing written and
/// nothing locked (the batch dry run).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Would {
    /// A new paid lookup.
    Paid,
    /// The person's cached profile, at no cost.
    Cached,
    /// The person's lookup already in flight, at no further cost.
    InFlight,
    /// Refused: the person asked to be erased.
    Suppressed,
}

/// The same decisions as `decide`, in the same order (suppression, cache
/// unless `refresh`, in flight), read only.
pub async fn foresee(
    db: &mut sqlx::PgConnection,
    policy: Policy<'_>,
    req: &LookupRequest,
) -> sqlx::Result<Would> {
    let matched = policy.secret.identity_hashes(&req.subject.identities());
    let suppressible = policy
        .secret
        .identity_hashes(&req.subject.suppression_identities());
    if erasure::any_suppressed(&mut *db, &suppressible, &req.legacy_digests()).await? {
        return Ok(Would::Suppressed);
    }
    if !req.refresh {
        let since =
            Utc::now() - chrono::Duration::from_std(policy.profile_cache).unwrap_or_default();
        if lookups::find_cached(db, &matched, since).await?.is_some() {
            return Ok(Would::Cached);
        }
    }
    if lookups::find_in_flight(db, &matched).await?.is_some() {
        return Ok(Would::InFlight);
    }
    Ok(Would::Paid)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn unknown_and_mistyped_fields_are_each_named() {
        let errors = LookupRequest::parse(&json!({
            "email": 5, "refresh": "yes", "colour": "blue"
        }))
        .unwrap_err();
        let mut fields: Vec<_> = errors.iter().map(|e| e.field.clone()).collect();
        fields.sort();
        assert_eq!(fields, ["colour", "email", "refresh"]);
    }

    #[test]
    fn nul_characters_are_refused_naming_the_field() {
        let errors = LookupRequest::parse(&json!({
            "email": "a\u{0}@example.com", "metadata": {"x": ["a\u{0}b"]}
        }))
        .unwrap_err();
        let mut fields: Vec<_> = errors.iter().map(|e| e.field.clone()).collect();
        fields.sort();
        assert_eq!(fields, ["email", "metadata"]);
    }

    #[test]
    fn a_valid_body_is_normalised() {
        let req =
            LookupRequest::parse(&json!({"email": "Ann@Example.com", "refresh": true})).unwrap();
        assert_eq!(req.subject.email.as_deref(), Some("ann@example.com"));
        assert!(req.refresh);
        assert_eq!(req.metadata, json!({}));
    }
}
