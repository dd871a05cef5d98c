//! The HTTP server. axum's `serve` has no header-read timeout and no bound
//! on open connections, so idle and slowly-sent connections pile up until
//! file descriptors run out. This accept loop uses hyper-util's connection
//! builder with those limits:
//! - a client must send a request's headers within [`HEADER_READ_TIMEOUT`]
//!   once it started sending them;
//! - a connection on which nothing was read or written for [`IDLE_TIMEOUT`]
//!   while no request of it is being handled is closed (never-used and idle
//!   keep-alive connections; a live event stream writes a keep-alive comment
//!   more often than that). A request being handled is bounded by its own
//!   deadline (`guards::deadline`), which answers with a problem: a slow
//!   request (a 1,000-item batch on a busy machine) is never cut off
//!   without an answer;
//! - at most [`max_connections`] connections are open; beyond it new ones
//!   wait in the kernel's backlog instead of failing `accept`;
//! - on shutdown, it stops accepting and lets open connections finish
//!   their requests (the caller bounds the wait).

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

/// Time a client has to send a request's headers.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest a connection may carry no bytes either way before it is closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(20);

/// Open connections allowed: three quarters of the file descriptors this
/// process may open (after raising its soft limit to the hard one), at most
/// 10,000; the rest stay for the database pool, upstream calls and logs.
pub fn max_connections() -> usize {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let soft = match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) if hard > soft => match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
            Ok(()) => hard,
            Err(_) => soft,
        },
        Ok((soft, _)) => soft,
        Err(_) => 1024,
    };
    let soft = usize::try_from(soft).unwrap_or(usize::MAX);
    (soft / 4 * 3).clamp(64, 10_000)
}

/// Serves `app` on `listener` until `shutdown`; then stops accepting and
/// waits for open connections to finish (the caller bounds the wait by
/// dropping this future).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    max_connections: usize,
    shutdown: CancellationToken,
) {
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        // Header counts between hyper's default (100) and this get our own
        // 431 problem document (see `guards::bounded_request`).
        .max_headers(super::guards::MAX_HEADERS * 2)
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(HEADER_READ_TIMEOUT)
        .keep_alive_timeout(HEADER_READ_TIMEOUT);
    let builder = Arc::new(builder);
    let open = Arc::new(Semaphore::new(max_connections));
    let graceful = GracefulShutdown::new();
    let mut accept_errors = AcceptErrors::default();

    loop {
        let permit = tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            permit = open.clone().acquire_owned() => permit.expect("never closed"),
        };
        let stream = tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    accept_errors.note(&e);
                    // Out of descriptors or a connection reset before accept:
                    // back off briefly instead of spinning.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let (stream, activity) = Watched::new(stream);
        let handling = activity.clone();
        let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
            let app = app.clone();
            // Held until the response head is ready (or the request is
            // dropped): the idle watchdog leaves the connection alone.
            let busy = Busy::new(handling.clone());
            async move {
                let response = app
                    .oneshot(request.map(axum::body::Body::new))
                    .await
                    .unwrap_or_else(|never| match never {});
                drop(busy);
                Ok::<_, Infallible>(response)
            }
        });
        let connection = builder
            .serve_connection_with_upgrades(TokioIo::new(stream), service)
            .into_owned();
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            tokio::pin!(connection);
            loop {
                tokio::select! {
                    // Errors here are the client's (reset, timeout, bad HTTP).
                    _ = &mut connection => break,
                    _ = tokio::time::sleep(IDLE_TIMEOUT / 4) => {
                        if activity.idle_for() >= IDLE_TIMEOUT && !activity.handling() {
                            break; // dropping the connection closes it
                        }
                    }
                }
            }
            drop(permit);
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

/// Accept errors are logged at most once a second, with a count.
#[derive(Default)]
struct AcceptErrors {
    last: Option<tokio::time::Instant>,
    suppressed: u64,
}

impl AcceptErrors {
    fn note(&mut self, e: &std::io::Error) {
        let now = tokio::time::Instant::now();
        if self
            .last
            .is_some_and(|t| now.duration_since(t) < Duration::from_secs(1))
        {
            self.suppressed += 1;
            return;
        }
        tracing::warn!(error = %e, suppressed = self.suppressed, "accept failed");
        self.last = Some(now);
        self.suppressed = 0;
    }
}

/// When a connection last carried bytes, and how many of its requests are
/// being handled, shared with its watchdog.
struct Activity {
    since: tokio::time::Instant,
    last_ms: AtomicU64,
    busy: AtomicUsize,
}

/// One request being handled on a connection, for as long as it lives.
struct Busy(Arc<Activity>);

impl Busy {
    fn new(activity: Arc<Activity>) -> Self {
        activity.busy.fetch_add(1, Ordering::Relaxed);
        Busy(activity)
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        // The answer goes out now: idleness counts from here.
        self.0.touch();
        self.0.busy.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Activity {
    fn handling(&self) -> bool {
        self.busy.load(Ordering::Relaxed) > 0
    }

    fn touch(&self) {
        let ms = self.since.elapsed().as_millis() as u64;
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    fn idle_for(&self) -> Duration {
        let now = self.since.elapsed().as_millis() as u64;
        Duration::from_millis(now.saturating_sub(self.last_ms.load(Ordering::Relaxed)))
    }
}

/// A TCP stream that notes every read and write in its [`Activity`].
struct Watched {
    inner: tokio::net::TcpStream,
    activity: Arc<Activity>,
}

impl Watched {
    fn new(inner: tokio::net::TcpStream) -> (Self, Arc<Activity>) {
        let activity = Arc::new(Activity {
            since: tokio::time::Instant::now(),
            last_ms: AtomicU64::new(0),
            busy: AtomicUsize::new(0),
        });
        let watched = Watched {
            inner,
            activity: activity.clone(),
        };
        (watched, activity)
    }
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.touch();
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, data);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
