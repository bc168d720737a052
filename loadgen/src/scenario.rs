//! Measurements: closed- and open-loop request/answer timing, against a registrar or
//! against the echo responder (the transport floor, [`crate::echo`]).

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rserpool::PoolHandle;
use rserpool::client::Resolved;
use rserpool::wire::{AsapMessage, PoolElement};

use crate::conn::{Conn, Target};
use crate::report::Series;

/// What a closed-loop run measured.
#[derive(Debug)]
pub struct ClosedLoop {
    /// Round trip of each answer that passed the check (the others are errors).
    pub latency: Series,
    /// The first answer that passed the check, as it came (the echo floor replays it).
    pub answer: Vec<u8>,
    /// What the check made of the last good answer (PEs, for a resolution).
    pub items: usize,
}

/// Closed loop: `pus` connections, each sending `request` back to back for `duration`,
/// every answer judged by `check`. Every connection is made first and all of them
/// start and stop together, so the run is one window of `duration` with all `pus` busy
/// (a slow connect, as under emulation, would otherwise stagger them).
pub fn closed_loop(
    target: Target,
    request: &[u8],
    pus: u32,
    duration: Duration,
    check: Check,
    (id, label): (&str, &str),
) -> io::Result<ClosedLoop> {
    let template = Series::new(id, label);
    let conns = (0..pus.max(1))
        .map(|_| Conn::connect(target))
        .collect::<io::Result<Vec<_>>>()?;
    let start = Instant::now() + Duration::from_millis(20);
    let threads: Vec<JoinHandle<io::Result<ClosedLoop>>> = conns
        .into_iter()
        .map(|mut conn| {
            let (request, latency) = (request.to_vec(), template.clone());
            std::thread::spawn(move || {
                conn.set_read_timeout(Some(Duration::from_secs(5)))?;
                let mut run = ClosedLoop {
                    latency,
                    answer: Vec::new(),
                    items: 0,
                };
                std::thread::sleep(start.saturating_duration_since(Instant::now()));
                while start.elapsed() < duration {
                    let t = Instant::now();
                    conn.send_bytes(&request)?;
                    let bytes = conn.recv_bytes()?;
                    let rtt = t.elapsed();
                    match check(bytes) {
                        Some(items) => {
                            if run.answer.is_empty() {
                                run.answer = bytes.to_vec();
                            }
                            run.items = items;
                            run.latency.record(rtt);
                            if run.latency.count().is_multiple_of(256) {
                                crate::report::DONE.fetch_add(256, Ordering::Relaxed);
                            }
                        }
                        None => run.latency.errors += 1,
                    }
                }
                run.latency.elapsed = start.elapsed();
                Ok(run)
            })
        })
        .collect();
    let mut total = ClosedLoop {
        latency: template,
        answer: Vec::new(),
        items: 0,
    };
    for t in threads {
        let run = t
            .join()
            .map_err(|_| io::Error::other("a pool user thread panicked"))??;
        total.latency.merge(&run.latency);
        if total.answer.is_empty() {
            total.answer = run.answer;
        }
        total.items = run.items;
    }
    Ok(total)
}

/// What an open-loop run measured.
#[derive(Debug)]
pub struct OpenLoop {
    /// Latency of each answer from its request's *intended* send time.
    pub latency: Series,
    /// How late the generator itself sent each request (its own scheduling delay,
    /// included in `latency`).
    pub send_lag: Series,
    /// Requests sent that got no answer before the end.
    pub lost: u64,
    /// The first answer that passed the check, as it came.
    pub answer: Vec<u8>,
}

/// How long an open loop's pool users may still be busy after their schedule ended
/// (answers arriving late, a last one lost) before the run is given up as stuck.
pub const STALL_LIMIT: Duration = Duration::from_secs(30);

/// How an answer is judged: `Some(items)` for a good one.
pub type Check = fn(&[u8]) -> Option<usize>;

/// A positive handle resolution: how many PEs it held.
pub fn positive_resolution(bytes: &[u8]) -> Option<usize> {
    match Resolved::from_message(AsapMessage::decode(bytes).ok()?.message)? {
        Resolved::Elements { elements, .. } => Some(elements.len()),
        Resolved::Failed { .. } => None,
    }
}

/// Open loop: `pus` connections send `request` on a fixed schedule adding up to `rate`
/// per second for `duration`, whatever the answers do. Each request's latency runs
/// from the moment it was *meant* to go out, so a stall in the registrar (or in the
/// generator) shows up in full instead of silently delaying later requests
/// (coordinated omission).
pub fn open_loop(
    target: Target,
    request: &[u8],
    pus: u32,
    rate: f64,
    duration: Duration,
    check: Check,
    (id, label): (&str, &str),
) -> io::Result<OpenLoop> {
    let template = Series::new(id, label);
    let pus = pus.max(1);
    let period = Duration::from_secs_f64(f64::from(pus) / rate);
    // Every connection first, so connecting does not eat into the schedule.
    let conns = (0..pus)
        .map(|_| Conn::connect(target))
        .collect::<io::Result<Vec<_>>>()?;
    // Handles to end every connection if the pool users are stuck (see below).
    let ends = conns
        .iter()
        .map(Conn::try_clone)
        .collect::<io::Result<Vec<_>>>()?;
    let start = Instant::now() + Duration::from_millis(20);
    let (finished, finish) = std::sync::mpsc::channel();
    let threads: Vec<_> = conns
        .into_iter()
        .enumerate()
        .map(|(k, conn)| {
            let request = request.to_vec();
            let latency = template.clone();
            let finished = finished.clone();
            // Connections interleave their schedules evenly.
            let first = start + period.mul_f64(k as f64 / f64::from(pus));
            std::thread::spawn(move || {
                let r = pu_open_loop(conn, &request, first, period, duration, check, latency);
                let _ = finished.send(());
                r
            })
        })
        .collect();
    // A registrar that stops reading leaves a pool user blocked in a send, which no
    // receive timeout ends: past the schedule plus STALL_LIMIT every connection is shut
    // down, which wakes it, and the run fails instead of hanging.
    let deadline = start + duration + STALL_LIMIT;
    let stalled = (0..threads.len()).any(|_| {
        finish
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .is_err()
    });
    if stalled {
        for c in &ends {
            c.shutdown();
        }
        for t in threads {
            let _ = t.join();
        }
        return Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!(
                "pool users still waiting {STALL_LIMIT:?} after their schedule ended (the \
                 registrar stopped answering, or reading)"
            ),
        ));
    }
    let mut total = OpenLoop {
        send_lag: send_lag_series(&template),
        latency: template,
        lost: 0,
        answer: Vec::new(),
    };
    for t in threads {
        let r = t
            .join()
            .map_err(|_| io::Error::other("a pool user thread panicked"))??;
        total.latency.merge(&r.latency);
        total.send_lag.merge(&r.send_lag);
        total.lost += r.lost;
        if total.answer.is_empty() {
            total.answer = r.answer;
        }
    }
    Ok(total)
}

fn pu_open_loop(
    conn: Conn,
    request: &[u8],
    first: Instant,
    period: Duration,
    duration: Duration,
    check: Check,
    latency: Series,
) -> io::Result<OpenLoop> {
    let mut send_lag = send_lag_series(&latency);
    let mut reader = conn.try_clone()?;
    reader.set_read_timeout(Some(Duration::from_millis(100)))?;
    let sent = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let receiver = {
        let (sent, done) = (sent.clone(), done.clone());
        std::thread::spawn(move || -> io::Result<(Series, u64, Vec<u8>)> {
            let mut latency = latency;
            let mut received = 0u64;
            let mut answer = Vec::new();
            let mut quiet_since: Option<Instant> = None;
            loop {
                let total = sent.load(Ordering::Acquire);
                if done.load(Ordering::Acquire) && received >= total {
                    break;
                }
                match reader.recv_bytes() {
                    Ok(bytes) => {
                        let now = Instant::now();
                        quiet_since = None;
                        let due = first + period.mul_f64(received as f64);
                        if check(bytes).is_some() {
                            if answer.is_empty() {
                                answer = bytes.to_vec();
                            }
                            latency.record(now.saturating_duration_since(due));
                        } else {
                            latency.errors += 1;
                        }
                        received += 1;
                        if received.is_multiple_of(256) {
                            crate::report::DONE.fetch_add(256, Ordering::Relaxed);
                        }
                    }
                    Err(e)
                        if matches!(
                            e.kind(),
                            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                        ) =>
                    {
                        // Answers still missing two seconds after the last request
                        // are lost.
                        if done.load(Ordering::Acquire) {
                            let since = *quiet_since.get_or_insert_with(Instant::now);
                            if since.elapsed() > Duration::from_secs(2) {
                                break;
                            }
                        }
                    }
                    Err(e) => return Err(e),
                }
            }
            latency.elapsed = duration;
            Ok((latency, received, answer))
        })
    };
    tighten_timer_slack();
    let mut conn = conn;
    let end = first + duration;
    let mut i = 0u64;
    loop {
        let due = first + period.mul_f64(i as f64);
        if due >= end {
            break;
        }
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
        if let Err(e) = conn.send_bytes(request) {
            done.store(true, Ordering::Release);
            return Err(e);
        }
        send_lag.record(Instant::now().saturating_duration_since(due));
        i += 1;
        sent.store(i, Ordering::Release);
    }
    done.store(true, Ordering::Release);
    let (latency, received, answer) = receiver
        .join()
        .map_err(|_| io::Error::other("a receiver thread panicked"))??;
    send_lag.elapsed = duration;
    Ok(OpenLoop {
        latency,
        send_lag,
        lost: i.saturating_sub(received),
        answer,
    })
}

/// The open-loop send lag that goes with `latency`: `ID.send_lag`.
fn send_lag_series(latency: &Series) -> Series {
    Series::new(format!("{}.send_lag", latency.id), "generator send lag")
}

/// Resolves `pool` at `target` (asking for `items` PEs) every few milliseconds until
/// `done` accepts the PEs of an answer or `timeout` passes; returns the last PEs seen
/// and whether `done` accepted them. A negative answer counts as no PEs.
pub fn await_pool(
    target: Target,
    pool: &PoolHandle,
    items: u32,
    timeout: Duration,
    done: impl Fn(&[PoolElement]) -> bool,
) -> io::Result<(Vec<PoolElement>, bool)> {
    let mut conn = Conn::connect(target)?;
    conn.set_read_timeout(Some(Duration::from_secs(5)))?;
    let deadline = Instant::now() + timeout;
    loop {
        let elements = match conn.resolve(pool, Some(items))? {
            Resolved::Elements { elements, .. } => elements,
            Resolved::Failed { .. } => Vec::new(),
        };
        if done(&elements) {
            return Ok((elements, true));
        }
        if Instant::now() >= deadline {
            return Ok((elements, false));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Lowers this thread's timer slack to 1 µs so that the open-loop schedule's sleeps
/// end on time (the default slack is 50 µs).
pub fn tighten_timer_slack() {
    rserpool_shards::net::process::tighten_timer_slack();
}
