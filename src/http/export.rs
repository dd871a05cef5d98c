//! `GET /v1/profiles/export`: every profile a search matches, as one stream
//! of JSON lines, for `interests-receiver export`.
//!
//! Paging `GET /v1/profiles` puts each page's whole round (query, audit
//! record, JSON, transfer) between one page and the next, so an export ran
//! at half the rate of `COPY` (BENCHMARKS.md). Here the service walks the
//! same keyset pages itself and reads the next while the current one is
//! audited, rendered and sent: the database reads without waiting for the
//! client. Each page is its own short query, so a slow reader holds no
//! connection and no snapshot, and at most a few pages are in memory.

use std::io;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use axum::Extension;
use axum::body::Body;
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::FutureExt;
use tokio::sync::{Semaphore, mpsc};
use tokio_util::task::AbortOnDropHandle;
use tracing::Instrument;

use super::AppState;
use super::error::{ApiError, ApiResult, Problem};
use super::extract::Params;
use super::guards::retry_later;
use super::profiles::{filter, search_page};
use crate::audit::{self, Action, Whom};
use crate::auth::Caller;
use crate::store::Page;
use crate::store::profiles::{ProfileFilter, ProfileRecord};
use crate::views::ProfileView;

/// Profiles read per query unless `page_size` says otherwise: about 2 MB
/// of JSON. At most four pages are held at once: one being read, one
/// rendered and waiting to be queued, one queued, one being written.
/// Twice 500 cut the time of an export of 100,000 by about a tenth (fewer
/// statements to plan and walks to start).
const PAGE_SIZE: i64 = 1000;
const MAX_PAGE_SIZE: i64 = 1000;
/// Streams one process serves at once; beyond, 503 with Retry-After. Each
/// holds a few pages and, while it reads, a connection of the pool.
pub const MAX_EXPORTS: usize = 8;
const RETRY_AFTER_SECS: &str = "5";
/// A bare newline (whitespace between JSON lines) after this long without
/// a page, so that a slow read does not look like an idle connection to
/// the server's watchdog (`http::server`) or a proxy.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// The places of open exports, and their keep-alive. Cheap to clone.
#[derive(Clone)]
pub struct Exports {
    places: Arc<Semaphore>,
    keep_alive: Duration,
}

impl Exports {
    pub fn new(max_open: usize, keep_alive: Duration) -> Self {
        Exports {
            places: Arc::new(Semaphore::new(max_open)),
            keep_alive,
        }
    }
}

/// Export the profiles a search matches, newest first, one JSON object
/// (as `GET /v1/profiles/{id}`) per line. The answer is complete when its
/// body ends normally; a failure after the first line cuts the body off
/// (the HTTP framing then reports an error), never ends it cleanly.
#[utoipa::path(get, path = "/v1/profiles/export", tag = "profiles",
    params(("email" = Option<String>, Query), ("phone" = Option<String>, Query),
        ("social_media_url" = Option<String>, Query), ("match_basis" = Option<String>, Query),
        ("interest" = Option<String>, Query), ("category" = Option<String>, Query),
        ("brand" = Option<String>, Query), ("archetype" = Option<String>, Query),
        ("industry" = Option<String>, Query),
        ("page_size" = Option<i64>, Query, description = "profiles read per database query, 1 to 1000, default 1000")),
    responses((status = 200, body = ProfileView, content_type = "application/x-ndjson",
            description = "one profile per line, the filters of `GET /v1/profiles`; each page read is audited as `profile.export`; a bare newline after 15 s without a page"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "too many exports open (see Retry-After), or the database is unavailable", body = Problem, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn stream(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    params: Params,
) -> ApiResult<Response> {
    let filter = filter(&params, &state.config.service_secret)?;
    let page_size = params.count("page_size", PAGE_SIZE, MAX_PAGE_SIZE)?;
    let keep_alive = state.exports.keep_alive;
    let Ok(permit) = state.exports.places.clone().try_acquire_owned() else {
        return Ok(retry_later(ApiError::Unavailable, RETRY_AFTER_SECS));
    };
    let export = Arc::new(Export {
        state,
        caller,
        filter,
        page_size,
    });
    // The first page is read and audited before answering: a database
    // that cannot serve is a problem answer, not a cut-off body.
    let first = search_page(&export.state, &export.filter, None, page_size).await?;
    export.audit(first.items.len()).await?;
    let (tx, rx) = mpsc::channel(1);
    let sending = async move {
        // The place is held until this task ends (the stream's end, or
        // the reader gone).
        let _place = permit;
        // A panic must cut the body off like an error: ending it cleanly
        // would pass a short export for a whole one.
        let outcome = AssertUnwindSafe(export.run(first, &tx))
            .catch_unwind()
            .await;
        let failure = match outcome {
            Ok(Ok(())) => return,
            Ok(Err(e)) => e.to_string(),
            Err(_) => "the export task panicked".to_owned(),
        };
        tracing::warn!(error = %failure, "export stopped");
        // The reader learns it through the cut-off body.
        let _ = tx.send(Err(io::Error::other(failure))).await;
    };
    tokio::spawn(sending.instrument(tracing::Span::current()));
    let body = futures_util::stream::unfold(rx, move |mut rx| async move {
        match tokio::time::timeout(keep_alive, rx.recv()).await {
            Ok(Some(chunk)) => Some((chunk, rx)),
            Ok(None) => None,
            Err(_) => Some((Ok(Bytes::from_static(b"\n")), rx)),
        }
    });
    Ok((
        [(CONTENT_TYPE, "application/x-ndjson")],
        Body::from_stream(body),
    )
        .into_response())
}

struct Export {
    state: AppState,
    caller: Caller,
    filter: ProfileFilter,
    page_size: i64,
}

type Chunk = Result<Bytes, io::Error>;

impl Export {
    /// Sends `page` (already audited) and every page after it. The next
    /// page is read on a task of its own while this one is rendered and
    /// sent (on this task it would wait for the rendering), then audited;
    /// a page goes out only once its audit record is written. Stops
    /// quietly when the reader has gone, and then so does the read.
    async fn run(
        self: Arc<Self>,
        mut page: Page<ProfileRecord>,
        tx: &mpsc::Sender<Chunk>,
    ) -> ApiResult<()> {
        loop {
            let next = page.next.map(|cursor| {
                let this = self.clone();
                AbortOnDropHandle::new(tokio::spawn(async move {
                    let page = search_page(&this.state, &this.filter, Some(cursor), this.page_size)
                        .await?;
                    this.audit(page.items.len()).await?;
                    Ok::<_, ApiError>(page)
                }))
            });
            if !page.items.is_empty() && tx.send(Ok(lines(page.items))).await.is_err() {
                return Ok(());
            }
            match next {
                Some(read) => {
                    page = read.await.map_err(|e| {
                        ApiError::Internal(anyhow::anyhow!("reading an export page: {e}"))
                    })??
                }
                None => return Ok(()),
            }
        }
    }

    async fn audit(&self, count: usize) -> ApiResult<()> {
        audit::record(
            &self.state.db,
            &self.state.config.service_secret,
            &self.caller,
            Action::ProfileExport,
            Whom::Many(count),
        )
        .await?;
        Ok(())
    }
}

/// A page as JSON lines, each profile as `GET /v1/profiles/{id}` shows it.
fn lines(items: Vec<ProfileRecord>) -> Bytes {
    let mut out = Vec::with_capacity(items.len() * 2048);
    for record in items {
        serde_json::to_writer(&mut out, &ProfileView::from(record))
            .expect("a profile view serializes");
        out.push(b'\n');
    }
    Bytes::from(out)
}
