//! Recording the audited actions of the REST API (contract section 5,
//! `GET /v1/audit`). A request whose audit record cannot be written fails:
//! an audit log that may silently miss reads of personal data is not one.

use uuid::Uuid;

use crate::auth::Caller;
use crate::secrets::ServiceSecret;
use crate::store::audit::{self, Entry};
use crate::subject::Subject;

/// The audited actions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    LookupCreate,
    LookupRead,
    ProfileRead,
    ProfileSearch,
    ProfileExport,
    SubjectErase,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::LookupCreate => "lookup.create",
            Action::LookupRead => "lookup.read",
            Action::ProfileRead => "profile.read",
            Action::ProfileSearch => "profile.search",
            Action::ProfileExport => "profile.export",
            Action::SubjectErase => "subject.erase",
        }
    }
}

/// Whose data an action touched.
pub enum Whom<'a> {
    /// A lookup (or its profile) of this person.
    Lookup(Uuid, &'a Subject),
    /// A person by one identity (see `crate::subject::identity`).
    Identity(&'a str),
    /// Several records (a list or a search): how many.
    Many(usize),
}

/// The keyed hash that names a person in the log: of their first identity.
fn subject_hash(secret: &ServiceSecret, subject: &Subject) -> Option<String> {
    subject
        .identities()
        .first()
        .map(|i| secret.identity_hash(i))
}

/// One action on several lookups (a batch), in one statement.
pub async fn record_lookups<'s>(
    db: impl sqlx::PgExecutor<'_>,
    secret: &ServiceSecret,
    caller: &Caller,
    action: Action,
    lookups: impl IntoIterator<Item = (Uuid, &'s Subject)>,
) -> sqlx::Result<()> {
    let rows: Vec<(Uuid, Option<String>)> = lookups
        .into_iter()
        .map(|(id, subject)| (id, subject_hash(secret, subject)))
        .collect();
    if rows.is_empty() {
        return Ok(());
    }
    audit::record_lookups(db, &caller.name, action.as_str(), &rows).await
}

pub async fn record(
    db: impl sqlx::PgExecutor<'_>,
    secret: &ServiceSecret,
    caller: &Caller,
    action: Action,
    whom: Whom<'_>,
) -> sqlx::Result<()> {
    let (subject_hash, lookup_id, count) = match whom {
        Whom::Lookup(id, subject) => (subject_hash(secret, subject), Some(id), None),
        Whom::Identity(identity) => (Some(secret.identity_hash(identity)), None, None),
        Whom::Many(n) => (None, None, Some(i32::try_from(n).unwrap_or(i32::MAX))),
    };
    audit::record(
        db,
        Entry {
            token: &caller.name,
            action: action.as_str(),
            subject_hash: subject_hash.as_deref(),
            lookup_id,
            count,
        },
    )
    .await
}
