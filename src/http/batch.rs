//! `POST /v1/lookups/batch`: up to 1,000 lookups in one request, each
//! answered as `POST /v1/lookups` would have answered it alone.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use super::AppState;
use super::error::{ApiError, ApiResult, Problem};
use super::lookups::idempotency_key;
use crate::auth::Caller;
use crate::batch::{self, BatchError, ItemError, MAX_ITEMS};
use crate::dry_run;
use crate::fields::Fields;
use crate::token::sha256_hex;
use crate::views::LookupView;
use axum::Extension;

/// Largest batch body.
pub const MAX_BATCH_BODY: usize = 4 * 1024 * 1024;

/// The answers of a batch, in input order.
#[derive(Debug, Serialize, ToSchema)]
pub struct BatchView {
    pub items: Vec<BatchItemView>,
}

/// What one item was answered: `lookup` for a 200 or 202, else `problem`.
#[derive(Debug, Serialize, ToSchema)]
pub struct BatchItemView {
    pub index: usize,
    /// The status `POST /v1/lookups` would have answered for this item.
    pub status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lookup: Option<LookupView>,
    /// An RFC 9457 problem document, as `POST /v1/lookups` answers it.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Problem>)]
    pub problem: Option<Value>,
}

/// The answer of a dry run (`"dry_run": true`): what each item would lead
/// to; nothing was written or sent upstream.
#[derive(Debug, Serialize, ToSchema)]
pub struct DryRunView {
    /// Always true.
    pub dry_run: bool,
    pub items: Vec<DryRunItemView>,
    pub totals: DryRunTotalsView,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DryRunItemView {
    pub index: usize,
    /// paid | cached | in_flight | suppressed | invalid
    pub would: &'static str,
    /// Credits the item may cost at most: 5 when paid, else 0.
    pub credits: i64,
    /// Why an item is invalid or suppressed (as `POST /v1/lookups` would
    /// answer it).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Problem>)]
    pub problem: Option<Value>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DryRunTotalsView {
    pub paid: u64,
    pub cached: u64,
    pub in_flight: u64,
    pub suppressed: u64,
    pub invalid: u64,
    pub credits_at_most: i64,
    /// Credits the day's budget (CREDIT_BUDGET_DAILY) has left now; null
    /// without a budget.
    pub budget_left: Option<i64>,
}

/// What the batch endpoint answers: the items' answers, or a dry run.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum BatchAnswer {
    Items(BatchView),
    DryRun(DryRunView),
}

/// Reads and checks the envelope `{"items": [...], "dry_run"?: bool}`; the
/// items themselves are validated one by one later.
fn envelope(body: Result<Bytes, BytesRejection>) -> ApiResult<(Value, Vec<Value>, bool)> {
    let bytes = body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge(MAX_BATCH_BODY)
        } else {
            ApiError::BadRequest(format!("could not read the request body: {rejection}"))
        }
    })?;
    let body: Value = serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::BadRequest(format!("request body is not valid JSON: {e}")))?;
    let mut fields =
        Fields::new(&body, &["items", "dry_run"]).map_err(|e| ApiError::Validation(vec![e]))?;
    let dry_run = fields.flag("dry_run");
    match fields.object.get("items") {
        None => fields.error("items", "required"),
        Some(Value::Array(items)) if (1..=MAX_ITEMS).contains(&items.len()) => {}
        Some(Value::Array(_)) => fields.error("items", format!("expected 1 to {MAX_ITEMS} items")),
        Some(_) => fields.error("items", "expected an array"),
    }
    fields.finish().map_err(ApiError::Validation)?;
    let items = match body.get("items") {
        Some(Value::Array(items)) => items.clone(),
        _ => Vec::new(),
    };
    Ok((body, items, dry_run))
}

/// The status and problem document of a refused item.
fn render(error: ItemError) -> (u16, Value) {
    let api_error = match error {
        ItemError::Invalid(errors) => ApiError::Validation(errors),
        ItemError::TooLarge(limit) => ApiError::PayloadTooLarge(limit),
        ItemError::Refused(e) => ApiError::from(e),
        ItemError::Erased => ApiError::Gone(
            "lookup_erased",
            "this item's lookup was erased (or removed by retention) since the first answer; \
             a replay does not make it again"
                .into(),
        ),
    };
    let problem = api_error.problem();
    (
        problem.status,
        serde_json::to_value(&problem).unwrap_or(Value::Null),
    )
}

/// Request up to 1,000 lookups at once.
#[utoipa::path(post, path = "/v1/lookups/batch", tag = "lookups",
    request_body(content = inline(serde_json::Value), description = "{\"items\": [<POST /v1/lookups body>, …], \"dry_run\"?: bool}: 1 to 1,000 items, at most 4 MiB. With dry_run true nothing is written or sent upstream: the answer says what each item would do and cost"),
    params(("Idempotency-Key" = Option<String>, Header, description = "replays the first answer for the same key and body")),
    responses(
        (status = 200, description = "one answer per item, in input order: each item's status is what POST /v1/lookups would have answered for it alone; or, for a dry run, what each item would do (paid | cached | in_flight | suppressed | invalid) and the totals", body = BatchAnswer),
        (status = 400, description = "not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "body over 4 MiB", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "malformed envelope (no items, not an array, 0 or over 1,000 items, dry_run not a boolean), or Idempotency-Key reused with another body", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "database unavailable or the batch took too long", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub async fn create(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Json<BatchAnswer>> {
    let key = idempotency_key(&headers)?;
    let (body, items, dry_run) = envelope(body)?;
    if dry_run {
        // Nothing is written, so there is nothing to replay under the key.
        let verdicts = dry_run::judge(&state.db, state.policy(), &items, render).await?;
        return Ok(Json(BatchAnswer::DryRun(dry_run_view(verdicts))));
    }
    let body_hash = sha256_hex(body.to_string().as_bytes());
    let outcome = batch::request(
        &state.db,
        state.policy(),
        &caller,
        &items,
        &body_hash,
        key.as_deref(),
        render,
    )
    .await
    .map_err(|e| match e {
        BatchError::IdempotencyConflict => ApiError::field(
            "Idempotency-Key",
            "already used with a different request body",
        ),
        BatchError::Database(e) => e.into(),
    })?;
    if outcome.created > 0 {
        state.wake.notify_one();
        metrics::counter!("lookups_created_total").increment(outcome.created as u64);
    }
    Ok(Json(BatchAnswer::Items(BatchView {
        items: outcome
            .answers
            .into_iter()
            .enumerate()
            .map(|(index, a)| BatchItemView {
                index,
                status: a.status,
                lookup: a.lookup.map(LookupView::from),
                problem: a.problem,
            })
            .collect(),
    })))
}

fn dry_run_view(verdicts: dry_run::Verdicts) -> DryRunView {
    let t = verdicts.totals;
    DryRunView {
        dry_run: true,
        items: verdicts
            .items
            .into_iter()
            .enumerate()
            .map(|(index, v)| DryRunItemView {
                index,
                would: v.outcome.as_str(),
                credits: v.outcome.credits(),
                problem: v.problem,
            })
            .collect(),
        totals: DryRunTotalsView {
            paid: t.paid,
            cached: t.cached,
            in_flight: t.in_flight,
            suppressed: t.suppressed,
            invalid: t.invalid,
            credits_at_most: t.credits_at_most,
            budget_left: t.budget_left,
        },
    }
}
