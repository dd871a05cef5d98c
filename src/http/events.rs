//! `GET /v1/events`: lookup status changes as Server-Sent Events, replayed
//! after `Last-Event-ID` (or `?after=`) and then live.

use std::convert::Infallible;
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use bytes::{Bytes, BytesMut};
use futures_util::Stream;
use sqlx::PgPool;
use std::sync::Arc;

use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio::sync::{OwnedSemaphorePermit, broadcast};
use tokio_util::sync::CancellationToken;

use super::AppState;
use super::error::{ApiError, ApiResult, Problem};
use super::extract::Params;
use super::guards::retry_later;
use crate::events::{FeedEvent, frame};
use crate::store::events;

/// Events read from the table per query.
const BATCH: i64 = 500;
/// A comment line this often keeps idle connections (and proxies) open.
const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// Frames sent in one write at most.
const CHUNK: usize = 256;
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
        return Ok(retry_later(ApiError::Unavailable, RETRY_AFTER_SECS));
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
        caught_up: false,
        live,
        ended: false,
        stopping: state.events.stopping(),
        _permit: permit,
    });
    // The frames are rendered by the feed (`events::frame`), so the body
    // is their bytes as they are, not axum's `Sse` (which renders each
    // event again for every stream).
    Ok((
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        Body::from_stream(stream),
    )
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
    /// The table held nothing newer at the last look: follow the feed.
    caught_up: bool,
    live: broadcast::Receiver<Arc<FeedEvent>>,
    /// The feed left this stream behind (or closed): what was gathered is
    /// sent, then the stream ends.
    ended: bool,
    stopping: CancellationToken,
    /// Held while the stream is open: the bound on open streams.
    _permit: OwnedSemaphorePermit,
}

/// Each item is one write to the client: a frame, several frames that
/// were ready together (up to [`CHUNK`]), or a keep-alive comment after
/// [`KEEP_ALIVE`] without events.
fn event_stream(cursor: Cursor) -> impl Stream<Item = Result<Bytes, Infallible>> {
    futures_util::stream::unfold(cursor, |mut c| async move {
        loop {
            if !c.caught_up {
                match events::after(&c.db, c.last, BATCH).await {
                    // A catch-up batch goes out as one write.
                    Ok(rows) if !rows.is_empty() => {
                        let mut chunk = BytesMut::new();
                        for e in &rows {
                            frame::render_into(e, &mut chunk);
                            c.last = e.id;
                        }
                        return Some((Ok(chunk.freeze()), c));
                    }
                    Ok(_) => c.caught_up = true,
                    Err(e) => {
                        // End the stream: the client reconnects with Last-Event-ID.
                        tracing::warn!(error = %e, "cannot read events; closing the stream");
                        return None;
                    }
                }
                continue;
            }
            if c.ended {
                return None;
            }
            let next = tokio::select! {
                _ = c.stopping.cancelled() => return None,
                next = tokio::time::timeout(KEEP_ALIVE, c.live.recv()) => next,
            };
            let first = match next {
                Err(_quiet) => {
                    return Some((Ok(Bytes::from_static(frame::KEEP_ALIVE_COMMENT)), c));
                }
                Ok(next) => match c.take(Received::waited(next)) {
                    Some(e) => e,
                    None if c.ended => return None,
                    None => continue,
                },
            };
            // Whatever else the feed already holds goes in the same write:
            // one system call for a burst, not one per event.
            let mut chunk = BytesMut::from(&first.frame[..]);
            for _ in 1..CHUNK {
                let ready = Received::ready(c.live.try_recv());
                if let Some(e) = c.take(ready) {
                    chunk.extend_from_slice(&e.frame);
                } else if c.ended || c.live.is_empty() {
                    break;
                }
            }
            return Some((Ok(chunk.freeze()), c));
        }
    })
}

/// What the feed's receivers can answer, `recv` and `try_recv` alike.
enum Received {
    Event(Arc<FeedEvent>),
    /// `try_recv` only: nothing ready now.
    Empty,
    Lagged(u64),
    Closed,
}

impl Received {
    fn waited(r: Result<Arc<FeedEvent>, RecvError>) -> Self {
        match r {
            Ok(e) => Received::Event(e),
            Err(RecvError::Lagged(n)) => Received::Lagged(n),
            Err(RecvError::Closed) => Received::Closed,
        }
    }

    fn ready(r: Result<Arc<FeedEvent>, TryRecvError>) -> Self {
        match r {
            Ok(e) => Received::Event(e),
            Err(TryRecvError::Empty) => Received::Empty,
            Err(TryRecvError::Lagged(n)) => Received::Lagged(n),
            Err(TryRecvError::Closed) => Received::Closed,
        }
    }
}

impl Cursor {
    /// The event to send from what the feed gave, if it is new; marks the
    /// stream ended when the feed left it behind or closed.
    fn take(&mut self, received: Received) -> Option<Arc<FeedEvent>> {
        match received {
            Received::Event(e) if e.id > self.last => {
                self.last = e.id;
                Some(e)
            }
            Received::Event(_) | Received::Empty => None,
            Received::Lagged(missed) => {
                // Too slow for the shared feed: end this stream only; its
                // client resumes from the last id it got.
                tracing::info!(missed, "an event stream fell behind; closing it");
                self.ended = true;
                None
            }
            Received::Closed => {
                self.ended = true;
                None
            }
        }
    }
}
