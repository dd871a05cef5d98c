//! `GET /v1/events`: lookup status changes as Server-Sent Events, replayed
//! after `Last-Event-ID` (or `?after=`) and then live.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::Stream;
use serde_json::json;
use sqlx::PgPool;
use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, broadcast};
use tokio_util::sync::CancellationToken;

use super::AppState;
use super::error::{ApiError, ApiResult, Problem};
use super::extract::Params;
use crate::store::events::{self, EventRecord};

/// Events read from the table per query.
const BATCH: i64 = 500;
/// A comment line this often keeps idle connections (and proxies) open.
const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// What a client is told to wait when every stream slot is taken.
const RETRY_AFTER_SECS: &str = "5";

/// Where the stream starts: after this event id.
fn start_after(headers: &HeaderMap, params: &Params) -> ApiResult<Option<i64>> {
    let parse = |field: &str, raw: &str| {
        raw.trim()
            .parse::<i64>()
            .ok()
            .filter(|n| *n >= 0)
            .map(Some)
            .ok_or_else(|| ApiError::field(field, "expected an event id (a non-negative integer)"))
    };
    if let Some(raw) = params.text("after") {
        return parse("after", raw);
    }
    match headers.get("last-event-id") {
        None => Ok(None),
        Some(v) => parse("Last-Event-ID", v.to_str().unwrap_or("-")),
    }
}

/// Stream lookup status changes.
#[utoipa::path(get, path = "/v1/events", tag = "events",
    params(
        ("Last-Event-ID" = Option<i64>, Header, description = "replay the events after this id, then go on live"),
        ("after" = Option<i64>, Query, description = "same as Last-Event-ID"),
    ),
    responses(
        (status = 200, description = "text/event-stream: `id:` event id, `event: lookup.<status>`, `data: {\"lookup_id\", \"status\", \"at\", \"profile_id\"}`; after a completion that changed the person's profile, `event: profile.changed` with `data: {\"lookup_id\", \"profile_id\", \"previous_profile_id\", \"at\", \"added\", \"removed\", \"following_count\"}`; when the sender disables a webhook endpoint that failed for days, `event: webhook.disabled` with `data: {\"webhook_id\", \"reason\", \"failing_since\", \"at\"}`; a comment every 15 s", content_type = "text/event-stream", body = String),
        (status = 422, description = "malformed Last-Event-ID or after", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "too many open streams (see Retry-After), or the database is unavailable", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub async fn stream(
    State(state): State<AppState>,
    headers: HeaderMap,
    params: Params,
) -> ApiResult<Response> {
    let after = start_after(&headers, &params)?;
    let Some(permit) = state.events.open_stream() else {
        let mut response = ApiError::Unavailable.into_response();
        response.headers_mut().insert(
            header::RETRY_AFTER,
            HeaderValue::from_static(RETRY_AFTER_SECS),
        );
        return Ok(response);
    };
    // Subscribe to the live feed before reading where to start, so that
    // nothing placed in between goes unnoticed.
    let live = state.events.live();
    let last = match after {
        Some(id) => id,
        None => events::latest_id(&state.db).await?,
    };
    let stream = event_stream(Cursor {
        db: state.db.clone(),
        last,
        buffer: VecDeque::new(),
        caught_up: false,
        live,
        stopping: state.events.stopping(),
        _permit: permit,
    });
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(KEEP_ALIVE).text("keep-alive"))
        .into_response())
}

/// One client's position: first a catch-up from the table (after
/// `Last-Event-ID`), then the replica's live feed, shared by every stream.
struct Cursor {
    db: PgPool,
    /// The last event id sent (or the starting point). Anything at or
    /// below it (the feed repeats what the catch-up already read) is
    /// skipped, so every event is sent once, in order.
    last: i64,
    buffer: VecDeque<EventRecord>,
    /// The table held nothing newer at the last look: follow the feed.
    caught_up: bool,
    live: broadcast::Receiver<Arc<EventRecord>>,
    stopping: CancellationToken,
    /// Held while the stream is open: the bound on open streams.
    _permit: OwnedSemaphorePermit,
}

fn event_stream(cursor: Cursor) -> impl Stream<Item = Result<Event, Infallible>> {
    futures_util::stream::unfold(cursor, |mut c| async move {
        loop {
            if let Some(e) = c.buffer.pop_front() {
                c.last = e.id;
                return Some((Ok(to_sse(&e)), c));
            }
            if !c.caught_up {
                match events::after(&c.db, c.last, BATCH).await {
                    Ok(rows) if !rows.is_empty() => c.buffer.extend(rows),
                    Ok(_) => c.caught_up = true,
                    Err(e) => {
                        // End the stream: the client reconnects with Last-Event-ID.
                        tracing::warn!(error = %e, "cannot read events; closing the stream");
                        return None;
                    }
                }
                continue;
            }
            let next = tokio::select! {
                _ = c.stopping.cancelled() => return None,
                next = c.live.recv() => next,
            };
            match next {
                Ok(e) if e.id > c.last => {
                    c.last = e.id;
                    return Some((Ok(to_sse(&e)), c));
                }
                Ok(_) => {}
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    // Too slow for the shared feed: end this stream only; its
                    // client resumes from the last id it got.
                    tracing::info!(missed, "an event stream fell behind; closing it");
                    return None;
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    })
}

fn to_sse(e: &EventRecord) -> Event {
    let data = e.carried_data().unwrap_or_else(|| {
        json!({
            "lookup_id": e.lookup_id,
            "status": e.status(),
            "at": e.at,
            "profile_id": e.profile_id,
        })
    });
    Event::default()
        .id(e.id.to_string())
        .event(e.kind.as_str())
        .data(data.to_string())
}
