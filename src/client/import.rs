//! `interests-receiver import FILE.csv [--wait | --dry-run]`: one lookup per
//! row, sent in batches through `POST /v1/lookups/batch` (with `--dry-run`,
//! only asked what they would do: `super::import_dry_run`).
//!
//! Re-running a file pays for nobody twice: the server returns a person's
//! lookup still in flight, or their cached profile, instead of a new paid
//! one; and every batch carries an `Idempotency-Key` made of the file's
//! content and the batch's position, so a run that was interrupted and
//! started again gets the first answers back for the batches already sent.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::{Map, Value, json};

use super::import_dry_run::{self, DryRow, DryRunTally};
use super::{Api, EXIT_BAD_ROWS, EXIT_OK, EXIT_UNUSABLE, ServerArgs, Unusable, detail};
use crate::token::sha256_hex;

/// Columns that identify the person; any other column is metadata.
const IDENTIFIERS: [&str; 5] = ["email", "phone", "social_media_url", "name", "company"];
const FINAL: [&str; 3] = ["completed", "failed", "expired"];

#[derive(Debug, Clone, clap::Args)]
pub struct ImportArgs {
    /// CSV file: a header row, then one person per row.
    pub file: PathBuf,
    /// Follow the lookups until every accepted row has finished, then print
    /// a summary.
    #[arg(long)]
    pub wait: bool,
    /// Send nothing that writes: print the totals of what the run would do
    /// (new paid lookups, served from cache, already in flight, suppressed,
    /// bad rows, credits at most, the day's budget left).
    #[arg(long, conflicts_with = "wait")]
    pub dry_run: bool,
    /// Rows per request to the batch endpoint.
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u16).range(1..=1000))]
    pub batch_size: u16,
    #[command(flatten)]
    pub server: ServerArgs,
}

/// Runs the import and returns the process exit status.
pub async fn run(args: ImportArgs) -> u8 {
    match import(&args).await {
        Ok(code) => code,
        Err(Unusable(message)) => {
            eprintln!("import stopped: {message}");
            EXIT_UNUSABLE
        }
    }
}

/// A row to send: its line in the file and its lookup body.
struct Row {
    line: u64,
    body: Value,
}

/// What became of the rows so far.
#[derive(Default)]
struct Tally {
    rows: u64,
    /// Rows accepted by the server (a lookup answered).
    accepted: u64,
    /// Rows refused, by the reader or by the server.
    bad: u64,
    /// Lookup id → (rows that led to it, its status).
    lookups: HashMap<String, (u64, String)>,
}

impl Tally {
    fn rows_with(&self, statuses: &[&str]) -> u64 {
        self.lookups
            .values()
            .filter(|(_, s)| statuses.contains(&s.as_str()))
            .map(|(n, _)| n)
            .sum()
    }

    fn completed(&self) -> u64 {
        self.rows_with(&["completed"])
    }

    /// Bad rows and rows whose lookup failed or expired.
    fn failed(&self) -> u64 {
        self.bad + self.rows_with(&["failed", "expired"])
    }

    fn unfinished(&self) -> Vec<String> {
        self.lookups
            .iter()
            .filter(|(_, (_, s))| !FINAL.contains(&s.as_str()))
            .map(|(id, _)| id.clone())
            .collect()
    }

    fn line(&self) -> String {
        format!(
            "sent {}/{} rows, completed {}, failed {}",
            self.accepted + self.bad,
            self.rows,
            self.completed(),
            self.failed()
        )
    }
}

/// A progress bar on a terminal, plain lines on standard error otherwise.
struct Progress {
    bar: Option<ProgressBar>,
    last_line: Instant,
}

impl Progress {
    fn new(total: u64) -> Progress {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template(
                    "{prefix} [{bar:30}] {pos}/{len} rows · {msg} · ETA {eta}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            bar.set_prefix("sending");
            bar
        });
        Progress {
            bar,
            last_line: Instant::now(),
        }
    }

    fn update(&mut self, position: u64, tally: &Tally, force: bool) {
        match &self.bar {
            Some(bar) => {
                bar.set_position(position);
                bar.set_message(format!(
                    "sent {} · completed {} · failed {}",
                    tally.accepted + tally.bad,
                    tally.completed(),
                    tally.failed()
                ));
            }
            None if force || self.last_line.elapsed() >= Duration::from_secs(2) => {
                eprintln!("{}", tally.line());
                self.last_line = Instant::now();
            }
            None => {}
        }
    }

    fn waiting(&mut self, total: u64) {
        if let Some(bar) = &self.bar {
            bar.set_prefix("waiting");
            bar.set_length(total);
            bar.reset_eta();
        }
    }

    /// Prints a line above the bar (or plainly).
    fn println(&self, text: &str) {
        match &self.bar {
            Some(bar) => bar.println(text),
            None => eprintln!("{text}"),
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish();
        }
    }
}

async fn import(args: &ImportArgs) -> Result<u8, Unusable> {
    let bytes = std::fs::read(&args.file)
        .map_err(|e| Unusable(format!("cannot read {}: {e}", args.file.display())))?;
    let api = Api::new(&args.server, "import")?;
    let file_digest = &sha256_hex(&bytes)[..32];
    let total = count_records(&bytes);
    let mut tally = Tally {
        rows: total,
        ..Tally::default()
    };
    let mut progress = Progress::new(total);

    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .from_reader(&bytes[..]);
    let headers: Vec<String> = reader
        .headers()
        .map_err(|e| Unusable(format!("cannot read the header row: {e}")))?
        .iter()
        .map(|h| h.trim_start_matches('\u{feff}').trim().to_owned())
        .collect();
    if !headers
        .iter()
        .any(|h| IDENTIFIERS[..4].contains(&h.to_lowercase().as_str()))
    {
        return Err(Unusable(format!(
            "the header row names none of email, phone, social_media_url, name (found: {})",
            headers.join(", ")
        )));
    }

    let mut dry = args.dry_run.then(DryRunTally::default);
    let mut batch: Vec<Row> = Vec::new();
    let mut batch_index = 0usize;
    let mut lines = LineCounter::new(&bytes);
    for record in reader.records() {
        match record {
            Err(e) => {
                let line = e.position().map_or(0, |p| lines.line_at(p.byte()));
                report(&progress, &mut tally, line, "row", &e.to_string());
            }
            Ok(record) => {
                let line = record.position().map_or(0, |p| lines.line_at(p.byte()));
                if record.len() != headers.len() {
                    let message = format!(
                        "expected {} fields as in the header, found {}",
                        headers.len(),
                        record.len()
                    );
                    report(&progress, &mut tally, line, "row", &message);
                } else {
                    batch.push(Row {
                        line,
                        body: row_body(&headers, &record),
                    });
                }
            }
        }
        if batch.len() >= usize::from(args.batch_size) {
            let key = format!("import-{file_digest}-{}-{batch_index}", args.batch_size);
            let rows = std::mem::take(&mut batch);
            flush(&api, &key, &rows, &mut tally, dry.as_mut(), &progress).await?;
            batch_index += 1;
        }
        progress.update(tally.accepted + tally.bad, &tally, false);
    }
    if !batch.is_empty() {
        let key = format!("import-{file_digest}-{}-{batch_index}", args.batch_size);
        flush(&api, &key, &batch, &mut tally, dry.as_mut(), &progress).await?;
    }
    progress.update(tally.accepted + tally.bad, &tally, true);
    if let Some(dry) = dry {
        progress.finish();
        let unreadable = tally.bad - dry.invalid - dry.suppressed;
        import_dry_run::print_totals(tally.rows, unreadable, &dry);
        // The real run's status: 1 when some rows would be refused, also
        // for want of budget.
        let refused = tally.bad + dry.over_budget();
        return Ok(if refused > 0 { EXIT_BAD_ROWS } else { EXIT_OK });
    }

    if args.wait {
        follow(&api, &mut tally, &mut progress).await?;
    }
    progress.finish();
    print_summary(&tally, args.wait);
    Ok(if tally.bad > 0 {
        EXIT_BAD_ROWS
    } else {
        EXIT_OK
    })
}

/// Line numbers of records from their byte offsets. The csv reader's own
/// line count lags by one after a CRLF record end (the `\n` is consumed
/// with the next record), so the start of a record is found here instead:
/// its offset, moved past line ends and blank lines.
struct LineCounter<'a> {
    bytes: &'a [u8],
    offset: usize,
    line: u64,
}

impl<'a> LineCounter<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        LineCounter {
            bytes,
            offset: 0,
            line: 1,
        }
    }

    /// The 1-based line of the record starting at byte `offset`; offsets
    /// must not decrease between calls.
    fn line_at(&mut self, offset: u64) -> u64 {
        let mut start = (offset as usize).min(self.bytes.len());
        while start < self.bytes.len() && matches!(self.bytes[start], b'\r' | b'\n') {
            start += 1;
        }
        if start > self.offset {
            let newlines = self.bytes[self.offset..start]
                .iter()
                .filter(|b| **b == b'\n')
                .count();
            self.line += newlines as u64;
            self.offset = start;
        }
        self.line
    }
}

/// Records in the file, for the progress bar's length.
fn count_records(bytes: &[u8]) -> u64 {
    let mut reader = csv::ReaderBuilder::new().flexible(true).from_reader(bytes);
    let mut record = csv::ByteRecord::new();
    let mut n = 0;
    loop {
        match reader.read_byte_record(&mut record) {
            Ok(true) => n += 1,
            Ok(false) => return n,
            // Counted as a row; it is reported when read for real.
            Err(_) => n += 1,
        }
    }
}

/// The `POST /v1/lookups` body of a row: identifier columns (header names
/// ignore case; empty cells left out), every other column as metadata.
fn row_body(headers: &[String], record: &csv::StringRecord) -> Value {
    let mut body = Map::new();
    let mut metadata = Map::new();
    for (header, cell) in headers.iter().zip(record.iter()) {
        let lower = header.to_lowercase();
        if IDENTIFIERS.contains(&lower.as_str()) {
            let cell = cell.trim();
            if !cell.is_empty() && !body.contains_key(&lower) {
                body.insert(lower, Value::String(cell.to_owned()));
            }
        } else if !header.is_empty() {
            metadata.insert(header.clone(), Value::String(cell.to_owned()));
        }
    }
    if !metadata.is_empty() {
        body.insert("metadata".into(), Value::Object(metadata));
    }
    Value::Object(body)
}

fn report(progress: &Progress, tally: &mut Tally, line: u64, field: &str, message: &str) {
    tally.bad += 1;
    progress.println(&format!("line {line}: {field}: {message}"));
}

/// Sends a batch of rows, or, in a dry run, asks what it would do.
async fn flush(
    api: &Api,
    key: &str,
    rows: &[Row],
    tally: &mut Tally,
    dry: Option<&mut DryRunTally>,
    progress: &Progress,
) -> Result<(), Unusable> {
    let Some(dry) = dry else {
        return send(api, key, rows, tally, progress).await;
    };
    let dry_rows: Vec<DryRow<'_>> = rows
        .iter()
        .map(|r| DryRow {
            line: r.line,
            body: &r.body,
        })
        .collect();
    let taken = |d: &DryRunTally| d.paid + d.cached + d.in_flight;
    let refused = |d: &DryRunTally| d.invalid + d.suppressed;
    let (taken_before, refused_before) = (taken(dry), refused(dry));
    import_dry_run::send(
        api,
        &dry_rows,
        dry,
        &mut |line, field, message| progress.println(&format!("line {line}: {field}: {message}")),
        |wait| progress.println(&format!("server busy (429): waiting {}s", wait.as_secs())),
    )
    .await?;
    // As the real run counts them: rows it would take, rows it would refuse.
    tally.accepted += taken(dry) - taken_before;
    tally.bad += refused(dry) - refused_before;
    Ok(())
}

async fn send(
    api: &Api,
    key: &str,
    rows: &[Row],
    tally: &mut Tally,
    progress: &Progress,
) -> Result<(), Unusable> {
    let body = json!({"items": rows.iter().map(|r| &r.body).collect::<Vec<_>>()});
    let url = api.url("/v1/lookups/batch");
    let response = api
        .send(
            |http| http.post(&url).header("Idempotency-Key", key).json(&body),
            |wait| progress.println(&format!("server busy (429): waiting {}s", wait.as_secs())),
        )
        .await?;
    if !response.status().is_success() {
        let status = response.status();
        return Err(Unusable(format!(
            "the server refused a batch ({status}): {}",
            detail(response).await
        )));
    }
    let answer: Value = response
        .json()
        .await
        .map_err(|e| Unusable(format!("the batch answer is not JSON: {e}")))?;
    let items = answer["items"].as_array().cloned().unwrap_or_default();
    if items.len() != rows.len() {
        return Err(Unusable(format!(
            "the server answered {} items for {} rows",
            items.len(),
            rows.len()
        )));
    }
    for item in items {
        let Some(row) = item["index"].as_u64().and_then(|i| rows.get(i as usize)) else {
            continue;
        };
        match item["lookup"]["id"].as_str() {
            Some(id) => {
                tally.accepted += 1;
                let status = item["lookup"]["status"].as_str().unwrap_or("pending");
                let entry = tally
                    .lookups
                    .entry(id.to_owned())
                    .or_insert((0, status.to_owned()));
                entry.0 += 1;
            }
            None => {
                let problem = &item["problem"];
                let errors = problem["errors"].as_array().cloned().unwrap_or_default();
                if errors.is_empty() {
                    let kind = problem["type"].as_str().unwrap_or("error");
                    let message = problem["detail"].as_str().unwrap_or("refused");
                    report(progress, tally, row.line, kind, message);
                } else {
                    // One bad row, however many of its fields are wrong.
                    tally.bad += 1;
                    for e in errors {
                        progress.println(&format!(
                            "line {}: {}: {}",
                            row.line,
                            e["field"].as_str().unwrap_or("row"),
                            e["message"].as_str().unwrap_or("invalid")
                        ));
                    }
                }
            }
        }
    }
    Ok(())
}

/// Reads the unfinished lookups again and again until all have finished.
/// Lookups read per round: upstream finishes a few jobs a second at most,
/// so a long import is followed in turns instead of by reading thousands of
/// lookups every second.
const FOLLOW_ROUND: usize = 200;

/// Reads the unfinished lookups, a round at a time and in turn, until all
/// have finished.
async fn follow(api: &Api, tally: &mut Tally, progress: &mut Progress) -> Result<(), Unusable> {
    progress.waiting(tally.accepted + tally.bad);
    let mut queue: std::collections::VecDeque<String> = {
        let mut ids = tally.unfinished();
        ids.sort();
        ids.into()
    };
    while !queue.is_empty() {
        let round: Vec<String> = queue.drain(..FOLLOW_ROUND.min(queue.len())).collect();
        let results: Vec<Result<(String, Option<String>), Unusable>> =
            futures_util::stream::iter(round.into_iter().map(|id| async move {
                let url = api.url(&format!("/v1/lookups/{id}"));
                let response = api.send(|http| http.get(&url), |_| {}).await?;
                if response.status() == reqwest::StatusCode::NOT_FOUND {
                    // Erased meanwhile: it will not finish.
                    return Ok((id, Some("expired".to_owned())));
                }
                let lookup: Value = response.json().await.unwrap_or(Value::Null);
                Ok((id, lookup["status"].as_str().map(str::to_owned)))
            }))
            .buffer_unordered(8)
            .collect()
            .await;
        for result in results {
            let (id, status) = result?;
            let Some(entry) = tally.lookups.get_mut(&id) else {
                continue;
            };
            if let Some(status) = status {
                entry.1 = status;
            }
            if !FINAL.contains(&entry.1.as_str()) {
                queue.push_back(id);
            }
        }
        progress.update(tally.completed() + tally.failed(), tally, false);
        if !queue.is_empty() {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
    progress.update(tally.completed() + tally.failed(), tally, true);
    Ok(())
}

fn print_summary(tally: &Tally, waited: bool) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(
        out,
        "rows: {}, accepted: {}, bad: {}",
        tally.rows, tally.accepted, tally.bad
    );
    let count = |status: &str| tally.lookups.values().filter(|(_, s)| s == status).count();
    let people = tally.lookups.len();
    if waited {
        let _ = writeln!(
            out,
            "people: {people}, completed: {}, failed: {}, expired: {}",
            count("completed"),
            count("failed"),
            count("expired")
        );
    } else {
        let _ = writeln!(
            out,
            "people: {people}, completed: {}, still running: {} (follow with --wait or GET /v1/lookups)",
            count("completed"),
            tally.unfinished().len()
        );
    }
    let _ = out.flush();
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The line of each record of `text`, as reported to the operator.
    fn record_lines(text: &str) -> Vec<u64> {
        let mut reader = csv::ReaderBuilder::new()
            .flexible(true)
            .from_reader(text.as_bytes());
        let mut lines = LineCounter::new(text.as_bytes());
        reader
            .records()
            .map(|r| lines.line_at(r.unwrap().position().unwrap().byte()))
            .collect()
    }

    #[test]
    fn lines_count_from_the_header_through_crlf_quoted_newlines_and_blanks() {
        let crlf = "email,notes\r\na@x.io,one\r\nb@x.io,\"two\r\nlines\"\r\n\r\nc@x.io,three\r\n";
        assert_eq!(record_lines(crlf), [2, 3, 6]);
        let lf = "email,notes\na@x.io,\"multi\nline\"\nb@x.io,x\n";
        assert_eq!(record_lines(lf), [2, 4]);
    }

    #[test]
    fn identifier_headers_ignore_case_and_other_columns_are_metadata() {
        let headers = vec!["EMAIL".to_owned(), "Company".to_owned(), "Tier".to_owned()];
        let record = csv::StringRecord::from(vec![" ann@x.io ", "", "gold"]);
        assert_eq!(
            row_body(&headers, &record),
            json!({"email": "ann@x.io", "metadata": {"Tier": "gold"}})
        );
    }
}
