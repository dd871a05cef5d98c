//! `interests-receiver import FILE.csv --dry-run`: the rows go to
//! `POST /v1/lookups/batch` with `"dry_run": true`, which writes nothing and
//! sends nothing upstream, and the answers are added up into what the run
//! would do: new paid lookups, rows served from cache, rows whose person is
//! already in flight, suppressed and bad rows, credits at most and the
//! day's budget left.
//!
//! The server judges each batch on its own; a person that an earlier batch
//! of the file would already pay for is counted here as in flight, as the
//! real run would find them (the same-person rule of `crate::subject`).

use std::collections::HashSet;
use std::io::Write;

use serde_json::{Value, json};

use super::{Api, Unusable, detail};
use crate::lifecycle::CREDITS_PER_RESULT;
use crate::lookups::LookupRequest;

/// What the rows so far would lead to.
#[derive(Debug, Default)]
pub struct DryRunTally {
    pub paid: u64,
    pub cached: u64,
    pub in_flight: u64,
    pub suppressed: u64,
    /// Rows the server would refuse as invalid.
    pub invalid: u64,
    pub credits_at_most: i64,
    /// Credits the day's budget has left (`None`: no CREDIT_BUDGET_DAILY).
    pub budget_left: Option<i64>,
    /// Identities of the people earlier batches would pay for.
    paid_for: HashSet<String>,
}

impl DryRunTally {
    /// Paid rows beyond what the day's budget covers: the real run would
    /// see these refused (429).
    pub fn over_budget(&self) -> u64 {
        match self.budget_left {
            Some(left) => {
                let covered = (left.max(0) / i64::from(CREDITS_PER_RESULT)) as u64;
                self.paid.saturating_sub(covered)
            }
            None => 0,
        }
    }
}

/// A row sent in a dry run: its line in the file and its lookup body.
pub struct DryRow<'a> {
    pub line: u64,
    pub body: &'a Value,
}

/// Sends one batch as a dry run and adds its answers up; a refused row
/// is reported through `report(line, field, message)`.
pub async fn send(
    api: &Api,
    rows: &[DryRow<'_>],
    tally: &mut DryRunTally,
    report: &mut impl FnMut(u64, &str, &str),
    on_wait: impl Fn(std::time::Duration),
) -> Result<(), Unusable> {
    let body = json!({"items": rows.iter().map(|r| r.body).collect::<Vec<_>>(), "dry_run": true});
    let url = api.url("/v1/lookups/batch");
    let response = api
        .send(|http| http.post(&url).json(&body), &on_wait)
        .await?;
    if !response.status().is_success() {
        let status = response.status();
        return Err(Unusable(format!(
            "the server refused a dry-run batch ({status}): {}",
            detail(response).await
        )));
    }
    let answer: Value = response
        .json()
        .await
        .map_err(|e| Unusable(format!("the dry-run answer is not JSON: {e}")))?;
    let items = answer["items"].as_array().cloned().unwrap_or_default();
    if answer["dry_run"] != true || items.len() != rows.len() {
        return Err(Unusable(format!(
            "the server did not answer a dry run for {} rows (is it older than --dry-run?)",
            rows.len()
        )));
    }
    tally.budget_left = answer["totals"]["budget_left"].as_i64();
    for item in items {
        let Some(row) = item["index"].as_u64().and_then(|i| rows.get(i as usize)) else {
            continue;
        };
        match item["would"].as_str().unwrap_or("invalid") {
            "paid" => {
                // Same person as a row of an earlier batch that would pay?
                let identities = LookupRequest::parse(row.body)
                    .map(|r| r.subject.identities())
                    .unwrap_or_default();
                if identities.iter().any(|i| tally.paid_for.contains(i)) {
                    tally.in_flight += 1;
                } else {
                    tally.paid_for.extend(identities);
                    tally.paid += 1;
                    tally.credits_at_most += i64::from(CREDITS_PER_RESULT);
                }
            }
            "cached" => tally.cached += 1,
            "in_flight" => tally.in_flight += 1,
            would => {
                if would == "suppressed" {
                    tally.suppressed += 1;
                } else {
                    tally.invalid += 1;
                }
                report_problem(row.line, &item["problem"], report);
            }
        }
    }
    Ok(())
}

/// Reports each field of a problem (or its type and detail) with the line.
fn report_problem(line: u64, problem: &Value, report: &mut impl FnMut(u64, &str, &str)) {
    let errors = problem["errors"].as_array().cloned().unwrap_or_default();
    if errors.is_empty() {
        let kind = problem["type"].as_str().unwrap_or("error");
        let message = problem["detail"].as_str().unwrap_or("refused");
        report(line, kind, message);
    }
    for e in errors {
        report(
            line,
            e["field"].as_str().unwrap_or("row"),
            e["message"].as_str().unwrap_or("invalid"),
        );
    }
}

/// Prints the totals of what the run would do.
pub fn print_totals(rows: u64, unreadable: u64, tally: &DryRunTally) {
    let mut out = std::io::stdout().lock();
    let budget = match tally.budget_left {
        Some(left) => left.to_string(),
        None => "unlimited (no CREDIT_BUDGET_DAILY)".to_owned(),
    };
    let _ = writeln!(
        out,
        "dry run: nothing was written and nothing sent upstream"
    );
    let _ = writeln!(out, "rows: {rows}");
    let _ = writeln!(out, "new paid lookups: {}", tally.paid);
    let _ = writeln!(out, "served from cache: {}", tally.cached);
    let _ = writeln!(out, "already in flight: {}", tally.in_flight);
    let _ = writeln!(out, "suppressed: {}", tally.suppressed);
    let _ = writeln!(out, "bad rows: {}", tally.invalid + unreadable);
    let _ = writeln!(out, "credits at most: {}", tally.credits_at_most);
    let _ = writeln!(out, "budget left today: {budget}");
    if tally.over_budget() > 0 {
        let _ = writeln!(
            out,
            "over budget: {} new lookups would be refused (429) today",
            tally.over_budget()
        );
    }
    let _ = out.flush();
}
