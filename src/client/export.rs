//! `interests-receiver export --format csv|jsonl [filters]`: every matching
//! profile to standard output, one page of `GET /v1/profiles` at a time, so
//! memory stays constant however many profiles match.

use std::io::{BufWriter, Write};
use std::time::Duration;

use serde_json::Value;

use super::{Api, EXIT_OK, EXIT_UNUSABLE, ServerArgs, Unusable, detail};
use crate::facets::Facets;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// A header row, then one row per profile.
    Csv,
    /// One profile object (as `GET /v1/profiles/{id}`) per line.
    Jsonl,
}

#[derive(Debug, Clone, clap::Args)]
pub struct ExportArgs {
    #[arg(long, value_enum)]
    pub format: Format,
    #[arg(long)]
    pub email: Option<String>,
    #[arg(long)]
    pub phone: Option<String>,
    #[arg(long, alias = "social_media_url")]
    pub social_media_url: Option<String>,
    /// email | phone | social_media_url | name_company | name_only
    #[arg(long, alias = "match_basis")]
    pub match_basis: Option<String>,
    #[arg(long)]
    pub interest: Option<String>,
    #[arg(long)]
    pub category: Option<String>,
    #[arg(long)]
    pub brand: Option<String>,
    #[arg(long)]
    pub archetype: Option<String>,
    #[arg(long)]
    pub industry: Option<String>,
    /// Profiles per database read (1 to 500): the `page_size` of
    /// `GET /v1/profiles/export` [default: the server's], or the `limit` of
    /// each page of `GET /v1/profiles` [default: 500].
    #[arg(long, hide = true, value_parser = clap::value_parser!(u16).range(1..=500))]
    pub page_size: Option<u16>,
    /// Page through `GET /v1/profiles` even when the server can stream
    /// (what a server without `/v1/profiles/export` gets).
    #[arg(long, hide = true)]
    pub paged: bool,
    #[command(flatten)]
    pub server: ServerArgs,
}

/// The CSV columns (contract section 3).
pub const CSV_HEADER: [&str; 13] = [
    "id",
    "lookup_id",
    "email",
    "phone",
    "social_media_url",
    "name",
    "company",
    "completed_on",
    "archetypes",
    "categories",
    "interests",
    "brands",
    "industries",
];

/// Runs the export and returns the process exit status.
pub async fn run(args: ExportArgs) -> u8 {
    match export(&args).await {
        Ok(()) => EXIT_OK,
        // `export … | head` closes the pipe early: that is not a failure.
        Err(Failure::Output(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => EXIT_OK,
        Err(Failure::Output(e)) => {
            eprintln!("export stopped: cannot write the output: {e}");
            EXIT_UNUSABLE
        }
        Err(Failure::Server(Unusable(message))) => {
            eprintln!("export stopped: {message}");
            EXIT_UNUSABLE
        }
    }
}

enum Failure {
    Server(Unusable),
    Output(std::io::Error),
}

impl From<Unusable> for Failure {
    fn from(e: Unusable) -> Self {
        Failure::Server(e)
    }
}

impl From<std::io::Error> for Failure {
    fn from(e: std::io::Error) -> Self {
        Failure::Output(e)
    }
}

impl From<csv::Error> for Failure {
    fn from(e: csv::Error) -> Self {
        Failure::Output(e.into())
    }
}

impl ExportArgs {
    fn filters(&self) -> Vec<(&'static str, &str)> {
        [
            ("email", &self.email),
            ("phone", &self.phone),
            ("social_media_url", &self.social_media_url),
            ("match_basis", &self.match_basis),
            ("interest", &self.interest),
            ("category", &self.category),
            ("brand", &self.brand),
            ("archetype", &self.archetype),
            ("industry", &self.industry),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.as_deref().map(|v| (k, v)))
        .collect()
    }
}

async fn export(args: &ExportArgs) -> Result<(), Failure> {
    let api = Api::new(&args.server, "export")?;
    let out = BufWriter::new(std::io::stdout().lock());
    let mut sink = match args.format {
        Format::Csv => {
            let mut w = csv::Writer::from_writer(out);
            w.write_record(CSV_HEADER)?;
            Sink::Csv(Box::new(w))
        }
        Format::Jsonl => Sink::Jsonl(out),
    };
    let filters: Vec<(&str, String)> = args
        .filters()
        .into_iter()
        .map(|(k, v)| (k, v.to_owned()))
        .collect();
    if args.paged || !streamed(&api, &filters, args.page_size, &mut sink).await? {
        paged(&api, &filters, args.page_size.unwrap_or(500), &mut sink).await?;
    }
    sink.finish()
}

/// The longest a streamed export may take (100 million profiles at the
/// rates measured in BENCHMARKS.md take about an hour).
const STREAM_TIMEOUT: Duration = Duration::from_secs(24 * 3600);

/// Writes every profile of `GET /v1/profiles/export` (one per line, read
/// and written as they arrive). `false` when the server has no such
/// endpoint (a replica of an earlier version, during a rolling deploy).
async fn streamed<W: Write>(
    api: &Api,
    filters: &[(&str, String)],
    page_size: Option<u16>,
    sink: &mut Sink<W>,
) -> Result<bool, Failure> {
    let mut query = filters.to_vec();
    query.extend(page_size.map(|n| ("page_size", n.to_string())));
    let url = address(api, "/v1/profiles/export", &query)?;
    // The body is the whole export: no total deadline of one request
    // (the client's minute), a read that stalls for a minute still fails.
    let mut response = api
        .send(
            |http| http.get(url.as_str()).timeout(STREAM_TIMEOUT),
            |_| {},
        )
        .await?;
    if response.status() == reqwest::StatusCode::NOT_FOUND {
        return Ok(false);
    }
    if !response.status().is_success() {
        return Err(refused(response).await);
    }
    // What arrived after the last whole line.
    let mut pending: Vec<u8> = Vec::new();
    let cut_off = |e: reqwest::Error| Unusable(format!("the export was cut off: {e}"));
    while let Some(chunk) = response.chunk().await.map_err(cut_off)? {
        pending.extend_from_slice(&chunk);
        let mut profiles = serde_json::Deserializer::from_slice(&pending).into_iter::<Value>();
        let mut used = 0;
        loop {
            match profiles.next() {
                Some(Ok(profile)) if profile.is_object() => {
                    sink.write(&profile)?;
                    used = profiles.byte_offset();
                }
                // The rest of this profile is in a later chunk.
                Some(Err(e)) if e.is_eof() => break,
                Some(Ok(_)) => {
                    return Err(Unusable("an exported line is not a profile".into()).into());
                }
                Some(Err(e)) => {
                    return Err(Unusable(format!("an exported line is not JSON: {e}")).into());
                }
                None => {
                    used = pending.len();
                    break;
                }
            }
        }
        pending.drain(..used);
    }
    if pending.iter().any(|b| !b.is_ascii_whitespace()) {
        return Err(Unusable("the export ended inside a profile".into()).into());
    }
    Ok(true)
}

/// Writes every profile of `GET /v1/profiles`, page after page.
async fn paged<W: Write>(
    api: &Api,
    filters: &[(&str, String)],
    page_size: u16,
    sink: &mut Sink<W>,
) -> Result<(), Failure> {
    let mut query = filters.to_vec();
    query.push(("limit", page_size.to_string()));
    let first = address(api, "/v1/profiles", &query)?;
    let mut current = request(api, first.as_str()).await?;
    loop {
        // The next page is asked for as soon as this one's headers name it
        // (`Link: rel="next"`): the server prepares it while this page's
        // body is read, converted and written.
        let next = next_link(&current).map(|path| api.url(&path));
        let asked = async {
            match &next {
                Some(url) => request(api, url).await.map(Some),
                None => Ok(None),
            }
        };
        let write = async {
            let page = body(current).await?;
            for profile in page["items"].as_array().into_iter().flatten() {
                sink.write(profile)?;
            }
            Ok::<_, Failure>(page["next_cursor"].as_str().map(str::to_owned))
        };
        let (asked, written) = tokio::join!(asked, write);
        let cursor = written?;
        current = match (asked?, cursor) {
            (Some(response), _) => response,
            // A server without `Link` headers: follow the body's cursor.
            (None, Some(cursor)) => {
                let mut url = first.clone();
                url.query_pairs_mut().append_pair("cursor", &cursor);
                request(api, url.as_str()).await?
            }
            (None, None) => return Ok(()),
        };
    }
}

/// `path` on the server, with `query`.
fn address(api: &Api, path: &str, query: &[(&str, String)]) -> Result<url::Url, Unusable> {
    url::Url::parse_with_params(&api.url(path), query)
        .map_err(|e| Unusable(format!("bad --server URL: {e}")))
}

async fn refused(response: reqwest::Response) -> Failure {
    let status = response.status();
    Unusable(format!(
        "the server refused the search ({status}): {}",
        detail(response).await
    ))
    .into()
}

/// A page's answer, its headers read (the body is read by [`body`]).
async fn request(api: &Api, url: &str) -> Result<reqwest::Response, Failure> {
    let response = api.send(|http| http.get(url), |_| {}).await?;
    if !response.status().is_success() {
        return Err(refused(response).await);
    }
    Ok(response)
}

async fn body(response: reqwest::Response) -> Result<Value, Failure> {
    Ok(response
        .json()
        .await
        .map_err(|e| Unusable(format!("a page is not JSON: {e}")))?)
}

/// The path and query of `Link: <…>; rel="next"`, if the answer has one.
fn next_link(response: &reqwest::Response) -> Option<String> {
    let link = response
        .headers()
        .get(reqwest::header::LINK)?
        .to_str()
        .ok()?;
    link.split(',').find_map(|part| {
        let (target, params) = part.trim().split_once(';')?;
        let next = params
            .split(';')
            .any(|p| p.trim().trim_start_matches("rel=").trim_matches('"') == "next");
        let target = target.trim().strip_prefix('<')?.strip_suffix('>')?;
        (next && target.starts_with('/')).then(|| target.to_owned())
    })
}

enum Sink<W: Write> {
    Csv(Box<csv::Writer<W>>),
    Jsonl(W),
}

impl<W: Write> Sink<W> {
    fn write(&mut self, profile: &Value) -> Result<(), Failure> {
        match self {
            Sink::Csv(w) => w.write_record(csv_row(profile))?,
            Sink::Jsonl(w) => {
                serde_json::to_writer(&mut *w, profile).map_err(std::io::Error::from)?;
                w.write_all(b"\n")?;
            }
        }
        Ok(())
    }

    fn finish(self) -> Result<(), Failure> {
        match self {
            Sink::Csv(mut w) => w.flush()?,
            Sink::Jsonl(mut w) => w.flush()?,
        }
        Ok(())
    }
}

/// One CSV row of a profile: several values of a column joined by `; `,
/// each in the spelling its result uses, every cell [`neutralised`].
pub fn csv_row(profile: &Value) -> Vec<String> {
    let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    let subject = &profile["subject"];
    let facets = Facets::as_written(&profile["result"]);
    let mut row = vec![text(&profile["id"]), text(&profile["lookup_id"])];
    row.extend(
        ["email", "phone", "social_media_url", "name", "company"]
            .iter()
            .map(|k| text(&subject[*k])),
    );
    row.push(text(&profile["completed_on"]));
    row.extend(
        [
            &facets.archetypes,
            &facets.categories,
            &facets.interests,
            &facets.brands,
            &facets.industries,
        ]
        .iter()
        .map(|values| values.join("; ")),
    );
    row.into_iter().map(neutralised).collect()
}

/// First characters that make a spreadsheet read a cell as a formula.
const FORMULA_STARTS: [char; 6] = ['=', '+', '-', '@', '\t', '\r'];

/// A cell as a spreadsheet will show it and never run it: text from upstream
/// or the operator that starts like a formula gets a leading `'` (OWASP,
/// CSV injection). The console's Download CSV does the same (`segments.js`).
pub fn neutralised(cell: String) -> String {
    if cell.starts_with(FORMULA_STARTS) {
        format!("'{cell}")
    } else {
        cell
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_that_start_like_a_formula_get_a_leading_quote_and_others_stay() {
        for risky in ["=1+1", "+1", "-2+3", "@SUM(A1)", "\tx", "\rx"] {
            assert_eq!(neutralised(risky.into()), format!("'{risky}"));
        }
        for safe in ["", "Nike", "a=b", "ann@example.com", "'quoted"] {
            assert_eq!(neutralised(safe.into()), safe);
        }
    }
}
