//! The lookup lifecycle, in one place: the statuses a lookup goes through
//! (contract section 7), which of them are still in flight, the
//! forward-only rule, the job updates upstream reports, what applying one
//! came to, and the price of a result.
//!
//! In the base layer, importing nothing of the service: `store`,
//! `upstream`, the workers and the API all take the lifecycle from here.
//! The schema holds the same rules where it must (the `lookups.status`
//! CHECK, the partial indexes over [`IN_FLIGHT_SQL`], `apply_job_update`);
//! the tests below and `tests/it/lifecycle.rs` hold the two together.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

/// Where a lookup is: `pending` (stored, not yet accepted upstream) →
/// `queued` / `processing` (accepted upstream) → `completed` | `failed` |
/// `expired`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, sqlx::Type, ToSchema)]
#[sqlx(type_name = "text", rename_all = "lowercase")]
#[serde(rename_all = "lowercase")]
pub enum LookupStatus {
    Pending,
    Queued,
    Processing,
    Completed,
    Failed,
    Expired,
}

/// Statuses in which a lookup is still in flight: at most one per person.
pub const IN_FLIGHT: [LookupStatus; 3] = [
    LookupStatus::Pending,
    LookupStatus::Queued,
    LookupStatus::Processing,
];

/// [`IN_FLIGHT`] as an SQL list, for `status IN …`. A literal, not a bind
/// parameter: the planner must see it to use the partial indexes built on
/// it (`lookups_one_in_flight_per_subject` and the work-queue indexes), and
/// `ON CONFLICT` must name that index's predicate exactly.
pub const IN_FLIGHT_SQL: &str = "('pending', 'queued', 'processing')";

impl LookupStatus {
    /// Every status, in lifecycle order.
    pub const ALL: [LookupStatus; 6] = [
        LookupStatus::Pending,
        LookupStatus::Queued,
        LookupStatus::Processing,
        LookupStatus::Completed,
        LookupStatus::Failed,
        LookupStatus::Expired,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            LookupStatus::Pending => "pending",
            LookupStatus::Queued => "queued",
            LookupStatus::Processing => "processing",
            LookupStatus::Completed => "completed",
            LookupStatus::Failed => "failed",
            LookupStatus::Expired => "expired",
        }
    }

    pub fn parse(raw: &str) -> Option<LookupStatus> {
        Self::ALL.into_iter().find(|s| s.as_str() == raw)
    }

    /// Is the person still being looked up (a new request joins this one)?
    pub fn is_in_flight(self) -> bool {
        IN_FLIGHT.contains(&self)
    }

    /// The forward-only rule: may a lookup in `self` be moved to `next` by
    /// what upstream reports? Running states only move forward; a result
    /// completes anything but a completed or failed lookup (an `expired`
    /// job's result was still paid for); a failure ends only a lookup in
    /// flight. `apply_job_update` (migration `gone_lookups_and_spend`)
    /// applies the same rule under the row lock.
    pub fn may_become(self, next: LookupStatus) -> bool {
        use LookupStatus::*;
        match next {
            Completed => !matches!(self, Completed | Failed),
            Failed => self.is_in_flight(),
            Queued | Processing => self.is_in_flight() && self.rank() < next.rank(),
            Pending | Expired => false,
        }
    }

    /// Position in the lifecycle, for [`Self::may_become`].
    fn rank(self) -> u8 {
        match self {
            LookupStatus::Pending => 0,
            LookupStatus::Queued => 1,
            LookupStatus::Processing => 2,
            _ => 3,
        }
    }

    /// The statuses that may become `next`: what a conditional `UPDATE`
    /// binds to move a row forward only.
    pub fn may_precede(next: LookupStatus) -> Vec<LookupStatus> {
        Self::ALL
            .into_iter()
            .filter(|s| s.may_become(next))
            .collect()
    }
}

impl std::fmt::Display for LookupStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Credits upstream charges for a completed job with at least one section.
pub const CREDITS_PER_RESULT: i32 = 5;

/// What upstream charges for a completed job's `result`, read as received:
/// [`CREDITS_PER_RESULT`] when it has at least one section, else 0.
pub fn credits_for(result: &Value) -> i32 {
    match result.as_object() {
        Some(sections) if !sections.is_empty() => CREDITS_PER_RESULT,
        _ => 0,
    }
}

/// The state of one upstream job.
#[derive(Debug, Clone, PartialEq)]
pub enum JobState {
    Queued,
    /// Upstream's `processing` and `pending`.
    Processing,
    Completed {
        result: Value,
        completed_on: Option<DateTime<Utc>>,
        /// What upstream charged for `result` as received (before any
        /// redaction): see [`credits_for`].
        credits: i32,
    },
    Failed {
        error: String,
    },
}

/// A job's state as upstream reported it, by callback or poll.
#[derive(Debug, Clone, PartialEq)]
pub struct JobUpdate {
    pub request_id: String,
    pub state: JobState,
}

impl JobUpdate {
    /// The lookup status this update would move its lookup to.
    pub fn status(&self) -> LookupStatus {
        match self.state {
            JobState::Queued => LookupStatus::Queued,
            JobState::Processing => LookupStatus::Processing,
            JobState::Completed { .. } => LookupStatus::Completed,
            JobState::Failed { .. } => LookupStatus::Failed,
        }
    }
}

/// What applying a job update to its lookup came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The lookup changed.
    Applied,
    /// Nothing to change: already known, or older than what is stored.
    Duplicate,
    /// Not this lookup's to apply; nothing changed.
    Refused(String),
    /// The lookup is no longer stored (erased, or removed by retention):
    /// nothing of the delivery was kept; a paid result's credits were added
    /// to the day's spend, once per lookup.
    Gone,
}

impl Outcome {
    /// The name recorded beside a delivery and counted in the metrics.
    pub fn as_str(&self) -> &'static str {
        match self {
            Outcome::Applied => "applied",
            Outcome::Duplicate => "duplicate",
            Outcome::Refused(_) => "refused",
            Outcome::Gone => "gone",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use LookupStatus::*;

    #[test]
    fn statuses_are_named_as_the_contract_names_them() {
        let names: Vec<String> = LookupStatus::ALL
            .iter()
            .map(|s| {
                serde_json::to_value(s)
                    .unwrap()
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect();
        assert_eq!(
            names,
            [
                "pending",
                "queued",
                "processing",
                "completed",
                "failed",
                "expired"
            ]
        );
        for s in LookupStatus::ALL {
            assert_eq!(s.as_str(), s.to_string());
            assert_eq!(LookupStatus::parse(s.as_str()), Some(s));
        }
        assert_eq!(LookupStatus::parse("done"), None);
    }

    #[test]
    fn the_in_flight_sql_list_is_the_in_flight_set() {
        let listed: Vec<String> = IN_FLIGHT.iter().map(|s| format!("'{s}'")).collect();
        assert_eq!(IN_FLIGHT_SQL, format!("({})", listed.join(", ")));
        let flying: Vec<_> = LookupStatus::ALL
            .into_iter()
            .filter(|s| s.is_in_flight())
            .collect();
        assert_eq!(flying, IN_FLIGHT);
    }

    #[test]
    fn statuses_only_move_forward() {
        assert!(Pending.may_become(Queued));
        assert!(Queued.may_become(Processing));
        assert!(!Processing.may_become(Queued));
        assert!(!Completed.may_become(Processing));
        assert!(!Expired.may_become(Processing));
        // A paid result completes an expired job, never a finished one.
        assert!(Expired.may_become(Completed));
        assert!(!Failed.may_become(Completed));
        assert!(!Completed.may_become(Completed));
        assert!(!Expired.may_become(Failed));
        assert!(Processing.may_become(Failed));
        assert_eq!(LookupStatus::may_precede(Processing), [Pending, Queued]);
    }

    #[test]
    fn only_a_result_with_a_section_is_charged() {
        assert_eq!(credits_for(&serde_json::json!({"brands": []})), 5);
        assert_eq!(credits_for(&serde_json::json!({})), 0);
        assert_eq!(credits_for(&Value::Null), 0);
    }
}
