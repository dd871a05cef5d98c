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
use std::sync::Arc;

use axum::Extension;
use axum::body::Body;
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use tokio::sync::mpsc;

use super::AppState;
use super::error::{ApiError, ApiResult, Problem};
use super::extract::Params;
use super::profiles::{filter, search_page};
use crate::audit::{self, Action, Whom};
use crate::auth::Caller;
use crate::store::Page;
use crate::store::profiles::{ProfileFilter, ProfileRecord};
use crate::views::ProfileView;

/// Profiles read per query unless `page_size` says otherwise: about 2 MB
/// of JSON. At most four pages are held at once: one being read, one
/// rendered and waiting to be queued, one queued, one being written. Twice 500 cut the time of an export of
/// 100,000 by about a tenth (fewer statements to plan and walks to start).
const PAGE_SIZE: i64 = 1000;
const MAX_PAGE_SIZE: i64 = 1000;

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
            description = "one profile per line, the filters of `GET /v1/profiles`; each page read is audited as `profile.export`"),
        (status = 422, body = Problem, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn stream(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    params: Params,
) -> ApiResult<Response> {
    let filter = filter(&params, &state.config.service_secret)?;
    let page_size = params.count("page_size", PAGE_SIZE, MAX_PAGE_SIZE)?;
    // The first page is read before answering: a database that cannot
    // serve is a problem answer, not a cut-off body.
    let first = search_page(&state, &filter, None, page_size).await?;
    let (tx, rx) = mpsc::channel(1);
    let export = Export {
        state,
        caller,
        filter,
        page_size,
    };
    tokio::spawn(async move {
        if let Err(e) = Arc::new(export).run(first, &tx).await {
            tracing::warn!(error = %e, "export stopped");
            // The reader learns it through the cut-off body.
            let _ = tx.send(Err(io::Error::other(e.to_string()))).await;
        }
    });
    let body = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|chunk| (chunk, rx))
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
    /// Sends `page` and every page after it. The next page is read on a
    /// task of its own while this one is audited, rendered and sent (on
    /// this task it would wait for the rendering); a page goes out only
    /// once its audit record is written. Stops quietly when the reader has
    /// gone.
    async fn run(
        self: Arc<Self>,
        mut page: Page<ProfileRecord>,
        tx: &mpsc::Sender<Chunk>,
    ) -> ApiResult<()> {
        loop {
            let next = page.next.map(|cursor| {
                let this = self.clone();
                tokio::spawn(async move {
                    search_page(&this.state, &this.filter, Some(cursor), this.page_size).await
                })
            });
            let count = page.items.len();
            let (audited, lines) =
                tokio::join!(self.audit(count), async move { lines(page.items) });
            audited?;
            if count > 0 && tx.send(Ok(lines)).await.is_err() {
                return Ok(());
            }
            match next {
                Some(read) => {
                    page = read.await.map_err(|e| {
                        ApiError::Internal(anyhow::anyhow!("export page read: {e}"))
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
