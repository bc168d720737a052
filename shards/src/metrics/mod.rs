//! The Prometheus and health endpoint: `GET /metrics`, `/healthz` and `/readyz` over
//! plain HTTP/1.1, from one background thread that no shard ever waits for.
//!
//! The thread runs hyper's HTTP/1 server on a current-thread tokio runtime, so clients
//! are served concurrently: an idle or slow one holds a task, not the thread. Each
//! connection carries one request ([`REQUEST_DEADLINE`] for the whole of it: head read
//! and answer written; the head alone within [`HEAD_TIMEOUT`]), and at most
//! [`MAX_CONNECTIONS`] are open at once (beyond that a new one is closed at accept), so
//! the endpoint cannot be used to exhaust descriptors.
//!
//! A scrape asks every shard for a snapshot ([`MetricsSource::collect`]), waits at most
//! [`SCRAPE_TIMEOUT`] for the answers, and renders them ([`render::render`]); that wait
//! runs on the runtime's small blocking pool, never on the thread that serves the other
//! clients. Other paths get 404, other methods 405; HEAD gets GET's headers.
//!
//! [`MetricsSource::collect`]: crate::runtime::MetricsSource::collect

pub mod health;
pub mod process;
pub mod render;

use std::convert::Infallible;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{ALLOW, CONTENT_LENGTH, CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};

use crate::runtime::MetricsSource;

/// How long a scrape waits for the shards' snapshots; a shard that has not answered by
/// then is reported missing.
pub const SCRAPE_TIMEOUT: Duration = Duration::from_secs(1);
/// How long `/readyz` waits for every shard's snapshot before answering 503.
pub const READY_TIMEOUT: Duration = Duration::from_millis(500);
/// The whole of one request: from accept to the answer written. A client still sending
/// its head or not taking its answer by then is cut off.
pub const REQUEST_DEADLINE: Duration = Duration::from_secs(5);
/// How long a client may take to send its request head.
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(2);
/// Connections served at once; one more is closed as soon as it is accepted.
pub const MAX_CONNECTIONS: usize = 256;
/// Longest request head read (hyper's minimum buffer); a longer one is refused.
const MAX_REQUEST: usize = 8 << 10;
/// Threads that may wait for the shards' snapshots at once.
const COLLECTORS: usize = 2;

/// The metrics endpoint. Dropping it stops the thread (cancelling requests in flight).
#[derive(Debug)]
pub struct Server {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
}

impl Server {
    /// The address bound (with the port resolved).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accept; if this fails the thread ends at the next connection.
        let ip = match self.addr.ip() {
            IpAddr::V4(a) if a.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(a) if a.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
            ip => ip,
        };
        let _ = TcpStream::connect_timeout(&SocketAddr::new(ip, self.addr.port()), HEAD_TIMEOUT);
    }
}

/// Serves `GET /metrics`, `/healthz` and `/readyz` on `addr` from a background thread,
/// with figures from `source`.
pub fn serve(addr: SocketAddr, source: MetricsSource) -> io::Result<Server> {
    let listener = std::net::TcpListener::bind(addr)?;
    let addr = listener.local_addr()?;
    listener.set_nonblocking(true)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .max_blocking_threads(COLLECTORS)
        .thread_name("metrics-collect")
        .build()?;
    let stop = Arc::new(AtomicBool::new(false));
    let stopped = stop.clone();
    std::thread::Builder::new()
        .name("metrics".into())
        .spawn(move || {
            runtime.block_on(accept(listener, source, stopped));
            // A collector still waiting for a stopped shard ends by itself.
            runtime.shutdown_background();
        })?;
    Ok(Server { addr, stop })
}

async fn accept(listener: std::net::TcpListener, source: MetricsSource, stop: Arc<AtomicBool>) {
    let closed = Arc::new(Closed::default());
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(error = %e, "metrics listener");
            return;
        }
    };
    let open = Arc::new(AtomicUsize::new(0));
    loop {
        let accepted = listener.accept().await;
        if stop.load(Ordering::SeqCst) {
            break;
        }
        let stream = match accepted {
            Ok((s, _)) => s,
            Err(e) => {
                tracing::debug!(error = %e, "metrics accept failed");
                // Out of descriptors: do not spin.
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Some(slot) = Slot::take(&open) else {
            tracing::debug!("metrics: {MAX_CONNECTIONS} clients already, one closed");
            Closed::count(&closed.max_connections);
            continue;
        };
        let source = source.clone();
        let closed = closed.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEAD_TIMEOUT)
                .keep_alive(false)
                .title_case_headers(true)
                .max_buf_size(MAX_REQUEST)
                .serve_connection(
                    TokioIo::new(stream),
                    hyper::service::service_fn({
                        let closed = closed.clone();
                        move |req| answer(req, source.clone(), closed.clone())
                    }),
                );
            match tokio::time::timeout(REQUEST_DEADLINE, conn).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    if e.is_timeout() {
                        Closed::count(&closed.head_timeout);
                    }
                    tracing::debug!(error = %e, "metrics client");
                }
                Err(_) => {
                    Closed::count(&closed.deadline);
                    tracing::debug!("metrics client cut off at the deadline");
                }
            }
        });
    }
}

/// Connections of the metrics listener that it closed itself, by reason (shown as
/// `rserpool_metrics_http_closed_total`).
#[derive(Debug, Default)]
struct Closed {
    /// [`MAX_CONNECTIONS`] were open: closed right after accept.
    max_connections: AtomicU64,
    /// The request head did not arrive within [`HEAD_TIMEOUT`].
    head_timeout: AtomicU64,
    /// The request was not done within [`REQUEST_DEADLINE`].
    deadline: AtomicU64,
}

impl Closed {
    fn count(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Appends the family to a scrape.
    fn render(&self, out: &mut String) {
        use std::fmt::Write as _;
        let name = "rserpool_metrics_http_closed_total";
        let _ = write!(
            out,
            "# HELP {name} Connections to the metrics and health listener that it closed itself, by reason: max_connections ({MAX_CONNECTIONS} already open, closed at accept), head_timeout (no whole request head within {}s), deadline (the request not done within {}s).\n# TYPE {name} counter\n",
            HEAD_TIMEOUT.as_secs(),
            REQUEST_DEADLINE.as_secs()
        );
        for (reason, c) in [
            ("max_connections", &self.max_connections),
            ("head_timeout", &self.head_timeout),
            ("deadline", &self.deadline),
        ] {
            let _ = writeln!(
                out,
                "{name}{{reason=\"{reason}\"}} {}",
                c.load(Ordering::Relaxed)
            );
        }
    }
}

/// One of the [`MAX_CONNECTIONS`] places, given back when dropped.
#[derive(Debug)]
struct Slot(Arc<AtomicUsize>);

impl Slot {
    fn take(open: &Arc<AtomicUsize>) -> Option<Self> {
        // Only the accepting task takes places, so load-then-add cannot overshoot.
        if open.load(Ordering::Acquire) >= MAX_CONNECTIONS {
            return None;
        }
        open.fetch_add(1, Ordering::AcqRel);
        Some(Self(open.clone()))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// What a request asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Route {
    Metrics,
    Healthz,
    Readyz,
    NotFound,
    MethodNotAllowed,
}

fn route(method: &Method, path: &str) -> Route {
    if method != Method::GET && method != Method::HEAD {
        return Route::MethodNotAllowed;
    }
    match path {
        "/metrics" => Route::Metrics,
        "/healthz" => Route::Healthz,
        "/readyz" => Route::Readyz,
        _ => Route::NotFound,
    }
}

async fn answer(
    req: Request<Incoming>,
    source: MetricsSource,
    closed: Arc<Closed>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let route = route(req.method(), req.uri().path());
    let (status, body) = match route {
        Route::Metrics => match collect(source, scrape).await {
            Some(mut text) => {
                closed.render(&mut text);
                (StatusCode::OK, text)
            }
            None => (StatusCode::INTERNAL_SERVER_ERROR, FAILED.to_owned()),
        },
        Route::Healthz => (StatusCode::OK, "ok\n".to_owned()),
        Route::Readyz => match collect(source, health::ready).await {
            Some(Ok(())) => (StatusCode::OK, "ready\n".to_owned()),
            Some(Err(why)) => (
                StatusCode::SERVICE_UNAVAILABLE,
                format!("not ready: {why}\n"),
            ),
            None => (StatusCode::SERVICE_UNAVAILABLE, FAILED.to_owned()),
        },
        Route::NotFound => (
            StatusCode::NOT_FOUND,
            "Not found: metrics are at /metrics, health at /healthz and /readyz\n".to_owned(),
        ),
        Route::MethodNotAllowed => (
            StatusCode::METHOD_NOT_ALLOWED,
            "Only GET and HEAD\n".to_owned(),
        ),
    };
    let content_type = if route == Route::Metrics {
        "text/plain; version=0.0.4; charset=utf-8"
    } else {
        "text/plain; charset=utf-8"
    };
    let length = HeaderValue::from(body.len());
    // HEAD: GET's headers, no body.
    let body = if req.method() == Method::HEAD {
        Bytes::new()
    } else {
        Bytes::from(body)
    };
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(CONTENT_LENGTH, length);
    if route == Route::MethodNotAllowed {
        headers.insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
    }
    Ok(response)
}

/// The answer when collecting failed (a panic while rendering, or the endpoint
/// stopping).
const FAILED: &str = "collecting the shards' figures failed\n";

/// Runs `f` (which waits for the shards) on the blocking pool; `None` if it panicked
/// or the runtime is stopping.
async fn collect<T: Send + 'static>(
    source: MetricsSource,
    f: fn(&MetricsSource) -> T,
) -> Option<T> {
    match tokio::task::spawn_blocking(move || f(&source)).await {
        Ok(v) => Some(v),
        Err(e) => {
            tracing::error!(error = %e, "metrics: collecting failed");
            None
        }
    }
}

/// The whole scrape's text.
fn scrape(source: &MetricsSource) -> String {
    let snapshots = source.collect(SCRAPE_TIMEOUT);
    let mut body = render::render(&snapshots, SCRAPE_TIMEOUT);
    render::connections(&mut body, &source.connections());
    if let Some(tls) = source.tls_figures() {
        render::render_tls(&mut body, tls);
    }
    process::render(&mut body);
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_routed_by_method_and_path() {
        assert_eq!(route(&Method::GET, "/metrics"), Route::Metrics);
        assert_eq!(route(&Method::HEAD, "/metrics"), Route::Metrics);
        assert_eq!(route(&Method::GET, "/healthz"), Route::Healthz);
        assert_eq!(route(&Method::HEAD, "/readyz"), Route::Readyz);
        assert_eq!(route(&Method::GET, "/"), Route::NotFound);
        assert_eq!(route(&Method::GET, "/metricsx"), Route::NotFound);
        assert_eq!(route(&Method::POST, "/metrics"), Route::MethodNotAllowed);
        assert_eq!(route(&Method::DELETE, "/nowhere"), Route::MethodNotAllowed);
    }
}
