//! Measurements: closed- and open-loop request/answer timing, against a registrar or
//! against the echo responder (the transport floor, [`crate::echo`]).

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier, OnceLock};
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
    let ready = Arc::new(Barrier::new(conns.len()));
    let start_at = Arc::new(OnceLock::new());
    let threads: Vec<JoinHandle<io::Result<ClosedLoop>>> = conns
        .into_iter()
        .map(|mut conn| {
            let (request, latency) = (request.to_vec(), template.clone());
            let schedule = Schedule {
                ready: ready.clone(),
                start: start_at.clone(),
                offset: Duration::ZERO,
            };
            std::thread::spawn(move || {
                // One untimed round trip, then all start together ([`Schedule`]).
                let setup = conn
                    .set_read_timeout(Some(Duration::from_secs(5)))
                    .and_then(|()| warm_up(&mut conn, &request));
                let start = schedule.first_send();
                setup?;
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
    // The schedule starts once every pool user is ready (below).
    let ready = Arc::new(Barrier::new(pus as usize));
    let start = Arc::new(OnceLock::new());
    let (finished, finish) = std::sync::mpsc::channel();
    let threads: Vec<_> = conns
        .into_iter()
        .enumerate()
        .map(|(k, conn)| {
            let request = request.to_vec();
            let latency = template.clone();
            let finished = finished.clone();
            let schedule = Schedule {
                ready: ready.clone(),
                start: start.clone(),
                // Connections interleave their schedules evenly.
                offset: period.mul_f64(k as f64 / f64::from(pus)),
            };
            std::thread::spawn(move || {
                let r = pu_open_loop(conn, &request, (schedule, period), duration, check, latency);
                let _ = finished.send(());
                r
            })
        })
        .collect();
    // A registrar that stops reading leaves a pool user blocked in a send, which no
    // receive timeout ends: past the schedule plus STALL_LIMIT every connection is shut
    // down, which wakes it, and the run fails instead of hanging.
    let deadline = Instant::now() + READY_DELAY + duration + STALL_LIMIT;
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

/// How long after the last pool user is ready the schedule starts.
const READY_DELAY: Duration = Duration::from_millis(20);

/// One pool user's place in a run's schedule (closed loop: all start at once).
struct Schedule {
    /// Every pool user waits here once ready to send.
    ready: Arc<Barrier>,
    /// When the schedule starts, set by one of them once all are ready.
    start: Arc<OnceLock<Instant>>,
    /// This pool user's first request, after the start.
    offset: Duration,
}

/// The untimed round trip a pool user makes before the schedule ([`Schedule`]).
fn warm_up(conn: &mut Conn, request: &[u8]) -> io::Result<()> {
    conn.send_bytes(request)?;
    conn.recv_bytes().map(drop)
}

impl Schedule {
    /// Waits until every pool user is ready, and returns this one's first send time.
    ///
    /// Every pool user starts its threads and makes one untimed round trip first: run
    /// for the first time, that code costs far more than in steady state where it is
    /// emulated (the lab VM translates it first; 4 open-loop pool users there were up
    /// to 100 ms late at the start, the p99.9 of a 4 s run), and a schedule already
    /// running would count that warm-up as the registrar's delay.
    fn first_send(&self) -> Instant {
        if self.ready.wait().is_leader() {
            let _ = self.start.set(Instant::now() + READY_DELAY);
        }
        self.ready.wait();
        // Set by the leader before the second wait, which every thread passed.
        *self.start.get_or_init(|| Instant::now() + READY_DELAY) + self.offset
    }
}

fn pu_open_loop(
    mut conn: Conn,
    request: &[u8],
    (schedule, period): (Schedule, Duration),
    duration: Duration,
    check: Check,
    latency: Series,
) -> io::Result<OpenLoop> {
    let mut send_lag = send_lag_series(&latency);
    // The warm-up round trip and the receiver's handle. If either fails, this pool
    // user still waits with the others, so that none is left waiting for it.
    let setup = warm_up(&mut conn, request)
        .and_then(|()| conn.try_clone())
        .and_then(|r| {
            r.set_read_timeout(Some(Duration::from_millis(100)))
                .map(|()| r)
        });
    let mut reader = match setup {
        Ok(r) => r,
        Err(e) => {
            schedule.first_send();
            return Err(e);
        }
    };
    let (first_tx, first_rx) = std::sync::mpsc::channel::<Instant>();
    let sent = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let receiver = {
        let (sent, done) = (sent.clone(), done.clone());
        std::thread::spawn(move || -> io::Result<(Series, u64, Vec<u8>)> {
            let mut latency = latency;
            let Ok(first) = first_rx.recv() else {
                return Ok((latency, 0, Vec::new()));
            };
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
    let first = schedule.first_send();
    let _ = first_tx.send(first);
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

#[cfg(test)]
mod tests {
    use std::io::Write as _;
    use std::net::TcpListener;
    use std::sync::Mutex;

    use rserpool::client::resolution_request;

    use super::*;
    use crate::conn::read_frame;
    use crate::echo::Answers;

    /// A responder whose first connection answers its first request late; records when
    /// that answer left and when every later request arrived.
    struct SlowStart {
        target: Target,
        late_answer_sent: Arc<OnceLock<Instant>>,
        arrivals: Arc<Mutex<Vec<Instant>>>,
    }

    fn slow_start(pool: &PoolHandle) -> SlowStart {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let target = Target::tcp(listener.local_addr().unwrap());
        let canned = Answers::resolution(pool, 3, "127.0.0.1".parse().unwrap())
            .canned()
            .to_vec();
        let late_answer_sent: Arc<OnceLock<Instant>> = Arc::new(OnceLock::new());
        let arrivals: Arc<Mutex<Vec<Instant>>> = Arc::default();
        let (sent, seen) = (late_answer_sent.clone(), Arc::clone(&arrivals));
        std::thread::spawn(move || {
            for (k, s) in listener.incoming().enumerate() {
                let (mut s, canned) = (s.unwrap(), canned.clone());
                let (sent, seen) = (sent.clone(), seen.clone());
                std::thread::spawn(move || {
                    let mut buf = Vec::new();
                    let mut n = 0;
                    while read_frame(&mut s, &mut buf).is_ok() {
                        if n == 0 && k == 0 {
                            std::thread::sleep(Duration::from_millis(300));
                            let _ = sent.set(Instant::now());
                        } else if n > 0 {
                            seen.lock().unwrap().push(Instant::now());
                        }
                        n += 1;
                        if s.write_all(&canned).is_err() {
                            return;
                        }
                    }
                });
            }
        });
        SlowStart {
            target,
            late_answer_sent,
            arrivals,
        }
    }

    /// The schedule starts once every pool user has made its untimed first round trip,
    /// so a slow first answer on one connection delays no timed request, on any.
    #[test]
    fn no_timed_request_leaves_before_every_warm_up_round_trip_ended() {
        let pool = PoolHandle::from("WarmPool");
        let mut request = Vec::new();
        resolution_request(&pool, Some(3), &mut request);
        for open in [true, false] {
            let r = slow_start(&pool);
            let duration = Duration::from_millis(200);
            let (count, errors) = if open {
                let run = open_loop(
                    r.target,
                    &request,
                    4,
                    400.0,
                    duration,
                    positive_resolution,
                    ("t", "t"),
                )
                .unwrap();
                assert_eq!(run.lost, 0);
                (run.latency.count(), run.latency.errors)
            } else {
                let run = closed_loop(
                    r.target,
                    &request,
                    4,
                    duration,
                    positive_resolution,
                    ("t", "t"),
                )
                .unwrap();
                (run.latency.count(), run.latency.errors)
            };
            assert_eq!(errors, 0);
            let late = *r
                .late_answer_sent
                .get()
                .expect("the slow first answer went out");
            let arrivals = r.arrivals.lock().unwrap();
            // Every timed request came in (4 connections' warm-ups are not in it)...
            assert_eq!(arrivals.len() as u64, count, "open loop: {open}");
            assert!(count > 0);
            // ... and none before the slow warm-up's answer left.
            assert!(arrivals.iter().all(|&t| t >= late), "open loop: {open}");
        }
    }
}
