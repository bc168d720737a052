//! The Prometheus endpoint: `GET /metrics` over plain HTTP/1.1, from one background
//! thread that no shard ever waits for.
//!
//! Each scrape asks every shard for a snapshot ([`MetricsSource::collect`]), waits at
//! most [`SCRAPE_TIMEOUT`] for the answers, and renders them ([`render::render`]). One
//! client is served at a time, each with read and write timeouts, so a slow or hostile
//! scraper delays only other scrapes, never the registrar. Other paths get 404, other
//! methods 405; HEAD gets GET's headers.
//!
//! [`MetricsSource::collect`]: crate::runtime::MetricsSource::collect

pub mod render;

use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::runtime::MetricsSource;

/// How long a scrape waits for the shards' snapshots; a shard that has not answered by
/// then is reported missing.
pub const SCRAPE_TIMEOUT: Duration = Duration::from_secs(1);
/// How long a client may take to send its request, and to take the answer.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest request head read; a longer one is refused.
const MAX_REQUEST: usize = 8 << 10;

/// The metrics endpoint. Dropping it stops the thread (after the scrape in progress).
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
        // Wakes the blocking accept; if this fails the thread ends at the next scrape.
        let ip = match self.addr.ip() {
            IpAddr::V4(a) if a.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(a) if a.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
            ip => ip,
        };
        let _ = TcpStream::connect_timeout(&SocketAddr::new(ip, self.addr.port()), CLIENT_TIMEOUT);
    }
}

/// Serves `GET /metrics` on `addr` from a background thread, with figures from
/// `source`.
pub fn serve(addr: SocketAddr, source: MetricsSource) -> io::Result<Server> {
    let listener = TcpListener::bind(addr)?;
    let addr = listener.local_addr()?;
    let stop = Arc::new(AtomicBool::new(false));
    let stopped = stop.clone();
    std::thread::Builder::new()
        .name("metrics".into())
        .spawn(move || {
            for stream in listener.incoming() {
                if stopped.load(Ordering::SeqCst) {
                    break;
                }
                match stream {
                    Ok(s) => {
                        if let Err(e) = answer(s, &source) {
                            tracing::debug!(error = %e, "metrics client");
                        }
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "metrics accept failed");
                        // Out of descriptors: do not spin.
                        std::thread::sleep(Duration::from_millis(100));
                    }
                }
            }
        })?;
    Ok(Server { addr, stop })
}

/// What a request asks for.
#[derive(Debug, PartialEq, Eq)]
enum Request {
    Metrics { head_only: bool },
    NotFound { head_only: bool },
    MethodNotAllowed,
    Bad,
}

fn answer(mut stream: TcpStream, source: &MetricsSource) -> io::Result<()> {
    stream.set_read_timeout(Some(CLIENT_TIMEOUT))?;
    stream.set_write_timeout(Some(CLIENT_TIMEOUT))?;
    let head = read_head(&mut stream)?;
    let (status, body, head_only) = match parse(&head) {
        Request::Metrics { head_only } => {
            let snapshots = source.collect(SCRAPE_TIMEOUT);
            let mut body = render::render(&snapshots, SCRAPE_TIMEOUT);
            render::connections(&mut body, &source.connections());
            if let Some(tls) = source.tls_figures() {
                render::render_tls(&mut body, tls);
            }
            ("200 OK", body, head_only)
        }
        Request::NotFound { head_only } => (
            "404 Not Found",
            "Not found: metrics are at /metrics\n".to_owned(),
            head_only,
        ),
        Request::MethodNotAllowed => (
            "405 Method Not Allowed",
            "Only GET and HEAD\n".to_owned(),
            false,
        ),
        Request::Bad => ("400 Bad Request", "Bad request\n".to_owned(), false),
    };
    let content_type = if status.starts_with("200") {
        "text/plain; version=0.0.4; charset=utf-8"
    } else {
        "text/plain; charset=utf-8"
    };
    let mut response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n",
        body.len()
    );
    if status.starts_with("405") {
        response.push_str("Allow: GET, HEAD\r\n");
    }
    response.push_str("Connection: close\r\n\r\n");
    if !head_only {
        response.push_str(&body);
    }
    stream.write_all(response.as_bytes())?;
    stream.flush()
}

/// Reads up to the blank line that ends the request head (or [`MAX_REQUEST`] bytes,
/// or what came before the peer stopped sending).
fn read_head(stream: &mut TcpStream) -> io::Result<Vec<u8>> {
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < MAX_REQUEST {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    Ok(head)
}

fn parse(head: &[u8]) -> Request {
    let line = head.split(|b| *b == b'\n').next().unwrap_or_default();
    // Lenient about a bare LF, as most servers are.
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let Ok(line) = std::str::from_utf8(line) else {
        return Request::Bad;
    };
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Request::Bad;
    };
    if !version.starts_with("HTTP/1.") {
        return Request::Bad;
    }
    let head_only = match method {
        "GET" => false,
        "HEAD" => true,
        _ => return Request::MethodNotAllowed,
    };
    let path = target.split('?').next().unwrap_or_default();
    if path == "/metrics" {
        Request::Metrics { head_only }
    } else {
        Request::NotFound { head_only }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_routed_by_method_and_path() {
        let m = |s: &str| parse(s.as_bytes());
        assert_eq!(
            m("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"),
            Request::Metrics { head_only: false }
        );
        assert_eq!(
            m("HEAD /metrics?x=1 HTTP/1.0\r\n\r\n"),
            Request::Metrics { head_only: true }
        );
        assert_eq!(
            m("GET / HTTP/1.1\r\n\r\n"),
            Request::NotFound { head_only: false }
        );
        assert_eq!(
            m("GET /metricsx HTTP/1.1\r\n\r\n"),
            Request::NotFound { head_only: false }
        );
        assert_eq!(
            m("POST /metrics HTTP/1.1\r\n\r\n"),
            Request::MethodNotAllowed
        );
        assert_eq!(
            m("GET /metrics HTTP/1.1\n\n"),
            Request::Metrics { head_only: false }
        );
        for bad in [
            "",
            "GET /metrics\r\n\r\n",
            "GET  /metrics HTTP/1.1\r\n",
            "GET /metrics SPDY/3\r\n",
            "\u{0}\u{1}\r\n",
        ] {
            assert_eq!(m(bad), Request::Bad, "{bad:?}");
        }
        assert_eq!(parse(b"GET /\xff HTTP/1.1\r\n\r\n"), Request::Bad);
    }
}
