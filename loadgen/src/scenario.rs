//! Measurements: closed-loop handle resolution and the transport floor (echo).

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rserpool::PoolHandle;
use rserpool::client::{Resolved, resolution_request};
use rserpool::wire::AsapMessage;

use crate::conn::{Conn, Target};
use crate::report::Series;

/// What a resolution run saw besides latency.
#[derive(Debug, Default, Clone)]
pub struct ResolveStats {
    /// Size of the last answer on the wire (the echo floor uses the same size).
    pub answer_bytes: usize,
    /// PEs per answer, last seen.
    pub items: usize,
}

/// `pus` connections, each resolving `pool` back to back (closed loop) for `duration`.
/// Every answer is decoded and checked to be a positive resolution.
pub fn resolve_closed_loop(
    registrar: Target,
    pool: &PoolHandle,
    items: Option<u32>,
    pus: u32,
    duration: Duration,
) -> io::Result<(Series, ResolveStats)> {
    let mut request = Vec::new();
    resolution_request(pool, items, &mut request);
    let threads: Vec<JoinHandle<io::Result<(Series, ResolveStats)>>> = (0..pus.max(1))
        .map(|_| {
            let request = request.clone();
            std::thread::spawn(move || {
                let mut conn = Conn::connect(registrar)?;
                conn.set_read_timeout(Some(Duration::from_secs(5)))?;
                let mut series = Series::new("resolution");
                let mut stats = ResolveStats::default();
                let start = Instant::now();
                while start.elapsed() < duration {
                    let t = Instant::now();
                    conn.send_bytes(&request)?;
                    let bytes = conn.recv_bytes()?;
                    let rtt = t.elapsed();
                    stats.answer_bytes = bytes.len();
                    let msg = AsapMessage::decode(bytes)
                        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
                    match Resolved::from_message(msg.message) {
                        Some(Resolved::Elements { elements, .. }) => {
                            stats.items = elements.len();
                            series.record(rtt);
                        }
                        _ => series.errors += 1,
                    }
                }
                series.elapsed = start.elapsed();
                Ok((series, stats))
            })
        })
        .collect();
    let mut total = Series::new("resolution");
    let mut stats = ResolveStats::default();
    for t in threads {
        let (s, st) = t
            .join()
            .map_err(|_| io::Error::other("a pool user thread panicked"))??;
        total.merge(&s);
        stats = st;
    }
    Ok((total, stats))
}

/// A TCP responder that answers every framed message with `reply_bytes` bytes: the bare
/// transport round trip with the registrar's message sizes.
#[derive(Debug)]
pub struct EchoResponder {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
}

impl EchoResponder {
    pub fn start(reply_bytes: usize) -> io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if flag.load(Ordering::Relaxed) {
                    return;
                }
                let Ok(mut s) = stream else { continue };
                std::thread::spawn(move || echo_loop(&mut s, reply_bytes));
            }
        });
        Ok(Self { addr, stop })
    }
}

impl Drop for EchoResponder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Unblocks accept.
        let _ = TcpStream::connect(self.addr);
    }
}

fn echo_loop(s: &mut TcpStream, reply_bytes: usize) {
    let _ = s.set_nodelay(true);
    // A well-formed framed reply of the wanted size (a padded ASAP header).
    let len = reply_bytes.clamp(4, 65_532);
    let mut reply = vec![0u8; len.div_ceil(4) * 4];
    reply[0] = 0x06;
    reply[2..4].copy_from_slice(&(len as u16).to_be_bytes());
    let mut head = [0u8; 4];
    let mut body = Vec::new();
    loop {
        if s.read_exact(&mut head).is_err() {
            return;
        }
        let n = usize::from(u16::from_be_bytes([head[2], head[3]]))
            .max(4)
            .div_ceil(4)
            * 4;
        body.resize(n - 4, 0);
        if s.read_exact(&mut body).is_err() || s.write_all(&reply).is_err() {
            return;
        }
    }
}

/// The floor: the same request bytes, closed loop, against the echo responder.
pub fn echo_closed_loop(
    echo: SocketAddr,
    request: &[u8],
    pus: u32,
    duration: Duration,
) -> io::Result<Series> {
    let threads: Vec<JoinHandle<io::Result<Series>>> = (0..pus.max(1))
        .map(|_| {
            let request = request.to_vec();
            std::thread::spawn(move || {
                let mut conn = Conn::connect(Target::tcp(echo))?;
                conn.set_read_timeout(Some(Duration::from_secs(5)))?;
                let mut series = Series::new("echo (transport floor)");
                let start = Instant::now();
                while start.elapsed() < duration {
                    let t = Instant::now();
                    conn.send_bytes(&request)?;
                    conn.recv_bytes()?;
                    series.record(t.elapsed());
                }
                series.elapsed = start.elapsed();
                Ok(series)
            })
        })
        .collect();
    let mut total = Series::new("echo (transport floor)");
    for t in threads {
        total.merge(
            &t.join()
                .map_err(|_| io::Error::other("an echo thread panicked"))??,
        );
    }
    Ok(total)
}
