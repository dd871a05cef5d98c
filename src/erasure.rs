//! Erasing a person (`DELETE /v1/subjects`): every lookup, profile and
//! stored callback body of theirs, their Idempotency-Keys sealed so that a
//! replay answers 410 instead of paying again, optionally their suppression,
//! and the audit record, all in one transaction: no erasure goes
//! unrecorded, and none is recorded that did not happen.

use sqlx::PgPool;

use crate::audit::{self, Action, Whom};
use crate::auth::Caller;
use crate::secrets::ServiceSecret;
use crate::store::{erasure, idempotency, lookups};
use crate::subject::identity;

/// Erases the person named by one identifier `kind` (`email`, `phone`,
/// `social_media_url` or `name`) of normalised `value`; with `suppress`,
/// later lookups of them are refused.
pub async fn erase(
    db: &PgPool,
    secret: &ServiceSecret,
    caller: &Caller,
    kind: &str,
    value: &str,
    suppress: bool,
) -> sqlx::Result<erasure::Erased> {
    let identity = identity(kind, value);
    let matched = secret.identity_hashes(std::slice::from_ref(&identity));
    let name = (kind == "name").then_some(value);
    let mut tx = db.begin().await?;
    // The lock a request for this person takes: a lookup created meanwhile
    // is either erased here or sees the suppression.
    lookups::lock_identities(&mut tx, &[secret.identity_hash(&identity)]).await?;
    // A replay of their Idempotency-Keys answers 410, never pays again.
    let keys = erasure::take_idempotency_keys(&mut tx, &matched, name).await?;
    let sealed: Vec<(String, String)> = keys
        .iter()
        .map(|(key, request)| crate::lookups::sealed_idempotency(secret, key, request))
        .collect();
    idempotency::remember_erased(&mut tx, &sealed).await?;
    let erased = erasure::erase(&mut tx, &matched, name).await?;
    if suppress {
        erasure::suppress(&mut *tx, &secret.identity_hash(&identity)).await?;
    }
    // In the erasure's transaction: no erasure goes unrecorded.
    let whom = Whom::Identity(&identity);
    audit::record(&mut *tx, secret, caller, Action::SubjectErase, whom).await?;
    tx.commit().await?;
    tracing::info!(
        lookups = erased.lookups,
        profiles = erased.profiles,
        deliveries = erased.deliveries,
        suppress,
        "subject erased"
    );
    Ok(erased)
}
