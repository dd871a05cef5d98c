//! JSON shapes of the contract (section 5) that more than one layer shows:
//! the REST API answers them, webhook and event payloads carry them. Below
//! both `http` and `webhooks`, above `store` (they are built from its rows).

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use serde_json::value::RawValue;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::lifecycle::LookupStatus;
use crate::store::lookups::LookupRecord;
use crate::store::profiles::ProfileRecord;
use crate::store::{self, Position};
use crate::subject::{MatchBasis, Subject};

/// A lookup: one request to profile a person, and what became of it.
#[derive(Debug, Serialize, ToSchema)]
pub struct LookupView {
    pub id: Uuid,
    pub status: LookupStatus,
    /// Upstream's job id; null until upstream accepted the job.
    pub request_id: Option<String>,
    pub subject: Subject,
    pub metadata: Value,
    pub created_at: DateTime<Utc>,
    pub submitted_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
    /// 5 for a completed result with at least one section, else 0.
    pub credits_charged: i32,
    /// Why a lookup failed or expired.
    pub error: Option<String>,
    /// True when made against the sandbox simulator: the profile is
    /// synthetic, not a real (paid) result.
    pub synthetic: bool,
    /// The strongest identifier the lookup carries.
    pub match_basis: Option<MatchBasis>,
    /// Warnings given when the lookup was made, e.g. that a name alone can
    /// match the wrong person (NAME_ONLY_LOOKUPS=warn).
    pub warnings: Vec<String>,
    pub profile: Option<LookupProfile>,
}

/// The profile inside a completed lookup.
#[derive(Debug, Serialize, ToSchema)]
pub struct LookupProfile {
    pub id: Uuid,
    /// Sections exactly as upstream sent them.
    pub result: Value,
    pub completed_on: Option<DateTime<Utc>>,
    /// callback | poll
    pub received_via: String,
}

impl From<LookupRecord> for LookupView {
    fn from(l: LookupRecord) -> Self {
        let subject = l.subject;
        let profile = match (l.profile_id, l.profile_result) {
            (Some(id), Some(result)) => Some(LookupProfile {
                id,
                result,
                completed_on: l.profile_completed_on,
                received_via: l.profile_received_via.unwrap_or_default(),
            }),
            _ => None,
        };
        LookupView {
            id: l.id,
            status: l.status,
            request_id: l.request_id,
            subject,
            metadata: l.metadata,
            created_at: l.created_at,
            submitted_at: l.submitted_at,
            completed_at: l.completed_at,
            credits_charged: l.credits_charged,
            error: l.error,
            synthetic: l.synthetic,
            match_basis: l.match_basis.as_deref().and_then(MatchBasis::parse),
            warnings: l.warnings,
            profile,
        }
    }
}

/// A stored profile.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProfileView {
    pub id: Uuid,
    pub lookup_id: Uuid,
    pub request_id: String,
    pub subject: Subject,
    /// The provider's result, as stored.
    #[schema(value_type = Object)]
    pub result: Box<RawValue>,
    pub completed_on: Option<DateTime<Utc>>,
    pub received_via: String,
    pub created_at: DateTime<Utc>,
    /// True when made by the sandbox simulator, not a real (paid) result.
    pub synthetic: bool,
}

impl From<ProfileRecord> for ProfileView {
    fn from(p: ProfileRecord) -> Self {
        ProfileView {
            subject: p.subject,
            id: p.id,
            lookup_id: p.lookup_id,
            request_id: p.request_id,
            result: p.result.0,
            completed_on: p.completed_on,
            received_via: p.received_via,
            created_at: p.created_at,
            synthetic: p.synthetic,
        }
    }
}

/// One page of a newest-first list.
#[derive(Debug, Serialize, ToSchema)]
pub struct PageView<T> {
    pub items: Vec<T>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

impl<T> PageView<T> {
    pub fn from_page<R>(page: store::Page<R>, view: impl Fn(R) -> T) -> Self {
        PageView {
            items: page.items.into_iter().map(view).collect(),
            next_cursor: page.next.as_ref().map(Position::encode),
        }
    }
}
