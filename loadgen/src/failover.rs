//! Failover: how long a failed PE stays in the registrar's answers.
//!
//! A [`Farm`] keeps a pool of PEs under the Priority policy, each PE on its own
//! connection. A trial first promotes its victims (one or more PEs) to the highest
//! priority, so that every answer of `batch` items names exactly them while they are
//! registered, and waits until every observer connection sees that. Then it fails them,
//! by crashing them (closing the connection) or hanging them (no more keep-alive
//! acknowledgements), and times, per PE, from the failure until the first answer
//! without it on *every* observer connection. Observer threads resolve back to back
//! over several connections so that every shard of a sharded registrar is asked (each
//! answers from its own replica); the answers are small, so a round takes tens of
//! microseconds and bounds the timing error. Then the victims come back at the common
//! priority.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use rserpool::PoolHandle;
use rserpool::client::resolution_request;
use rserpool::rng::Rng;
use rserpool::wire::{AsapType, ParamType, PolicyParam, PolicyType};

use crate::conn::{Conn, Target};
use crate::farm::{Command, Farm, FarmConfig, Notice};
use crate::report::Series;

/// How PEs fail.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Close the connection (TCP FIN / SCTP SHUTDOWN), as when the process dies.
    Crash,
    /// Keep the connection but stop acknowledging keep-alives, as a hung process.
    Hang,
}

/// One failover run.
#[derive(Clone, Debug)]
pub struct FailoverConfig {
    /// Where the PEs register.
    pub pe_target: Target,
    /// Where the observers resolve (the same registrar, or a peer of it).
    pub pu_target: Target,
    pub pool: PoolHandle,
    pub pes: u32,
    pub mode: Mode,
    /// Trials; each fails `batch` PEs at once.
    pub trials: u32,
    pub batch: u32,
    /// Observer threads, and connections each one resolves over.
    pub observers: u32,
    pub connections_per_observer: u32,
    /// Shortest time between an observer's rounds (one request per connection, then
    /// every answer): zero resolves back to back, which saturates a small machine and
    /// queues the very removal being timed behind observer requests.
    pub round_interval: Duration,
    /// How long one trial may take before the PE counts as never removed.
    pub trial_timeout: Duration,
    /// Seeds the choice of victims.
    pub seed: u64,
    /// The PEs' connections listen on their ports (see [`FarmConfig::listen`]).
    pub pe_listeners: bool,
}

/// What a failover run measured.
#[derive(Debug)]
pub struct FailoverResult {
    /// Per failed PE: failure until absent from every observer connection's answers.
    pub gone: Series,
    /// Resolutions the observers made meanwhile.
    pub resolutions: u64,
    /// Most PEs one answer held (must be the whole pool for exact timing).
    pub answer_items: usize,
    /// Observer connections.
    pub connections: usize,
}

/// The trial in progress, shared with the observers.
#[derive(Debug, Default)]
struct Trial {
    /// This trial's victims by PE identifier, and when each failed (once it has).
    victims: Vec<(u32, Option<Instant>)>,
    /// Per victim, per connection: the first answer without it (received at).
    gone_at: Vec<Vec<Option<Instant>>>,
    /// Per connection: send time of the latest answer naming every victim.
    last_all: Vec<Option<Instant>>,
    /// Most items seen in one answer.
    max_items: usize,
    resolutions: u64,
    error: Option<String>,
}

/// Every PE's priority; victims get [`TOP`] for their trial.
const COMMON: u32 = 1;
const TOP: u32 = 1_000;

fn priority(p: u32) -> PolicyParam {
    PolicyParam::new(PolicyType::PRIORITY, &[p]).expect("one value fits")
}

/// Runs `config` and returns the per-PE removal times.
pub fn run(config: &FailoverConfig) -> io::Result<FailoverResult> {
    let farm = Farm::start(FarmConfig {
        policy: priority(COMMON),
        listen: config.pe_listeners,
        ..FarmConfig::new(config.pe_target, config.pool.clone(), config.pes)
    })?;
    let connections = (config.observers.max(1) * config.connections_per_observer.max(1)) as usize;
    let trial = Arc::new(Mutex::new(Trial {
        last_all: vec![None; connections],
        ..Trial::default()
    }));
    let stop = Arc::new(AtomicBool::new(false));
    let batch = config.batch.clamp(1, config.pes.saturating_sub(1).max(1));
    let mut request = Vec::new();
    resolution_request(&config.pool, Some(batch), &mut request);
    let observers: Vec<JoinHandle<io::Result<()>>> = (0..config.observers.max(1))
        .map(|o| {
            let per = config.connections_per_observer.max(1) as usize;
            let conns = (0..per)
                .map(|_| Conn::connect(config.pu_target))
                .collect::<io::Result<Vec<_>>>()?;
            let (trial, stop, request) = (trial.clone(), stop.clone(), request.clone());
            let interval = config.round_interval;
            Ok(std::thread::spawn(move || {
                let first = o as usize * per;
                observe(conns, first, &request, interval, &trial, &stop)
            }))
        })
        .collect::<io::Result<_>>()?;

    let result = trials(config, batch as usize, &farm, &trial, connections);
    stop.store(true, Ordering::Release);
    for o in observers {
        o.join()
            .map_err(|_| io::Error::other("an observer thread panicked"))??;
    }
    let _ = farm.stop();
    let gone = result?;
    let t = trial.lock();
    Ok(FailoverResult {
        gone,
        resolutions: t.resolutions,
        answer_items: t.max_items,
        connections,
    })
}

fn trials(
    config: &FailoverConfig,
    batch: usize,
    farm: &Farm,
    trial: &Mutex<Trial>,
    connections: usize,
) -> io::Result<Series> {
    let (id, label) = match config.mode {
        Mode::Crash => ("failover.crash", "failover: crashed PE gone"),
        Mode::Hang => ("failover.hang", "failover: hung PE gone"),
    };
    let mut gone = Series::new(id, label);
    let started = Instant::now();
    let mut rng = Rng::new(config.seed);
    for _ in 0..config.trials {
        let mut victims: Vec<usize> = Vec::with_capacity(batch);
        while victims.len() < batch {
            let v = rng.below(u64::from(config.pes)) as usize;
            if !victims.contains(&v) {
                victims.push(v);
            }
        }
        {
            let mut t = trial.lock();
            t.victims = victims.iter().map(|&v| (farm.ids[v].0, None)).collect();
            t.gone_at = vec![vec![None; connections]; batch];
        }
        // Promote the victims and wait until every connection's answers name them all.
        for &v in &victims {
            farm.send(Command::SetPolicy(v, priority(TOP)));
        }
        await_notices(farm, batch, config.trial_timeout, "promoting", |n| {
            matches!(n, Notice::Registered { .. })
        })?;
        wait_all_named(
            trial,
            Instant::now(),
            connections,
            batch,
            config.trial_timeout,
        )?;

        for &v in &victims {
            farm.send(match config.mode {
                Mode::Crash => Command::Crash(v),
                Mode::Hang => Command::Hang(v),
            });
        }
        let deadline = Instant::now() + config.trial_timeout;
        let mut failed = 0;
        while failed < batch {
            match farm
                .notices()
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            {
                Ok(Notice::Crashed { pe, at } | Notice::Hung { pe, at }) => {
                    let id = farm.ids[pe].0;
                    let mut t = trial.lock();
                    if let Some(v) = t.victims.iter_mut().find(|v| v.0 == id) {
                        v.1 = Some(at);
                    }
                    failed += 1;
                }
                Ok(Notice::LinkLost { pe }) => return Err(lost(farm, pe)),
                Ok(_) => {}
                Err(_) => return Err(io::Error::other("the PE farm stopped answering")),
            }
        }
        // Wait until every victim is gone from every connection's answers.
        loop {
            {
                let t = trial.lock();
                if let Some(e) = &t.error {
                    return Err(io::Error::other(e.clone()));
                }
                if t.gone_at.iter().all(|c| c.iter().all(Option::is_some)) {
                    for (v, &(id, failed_at)) in t.victims.iter().enumerate() {
                        match (t.gone_at[v].iter().flatten().max(), failed_at) {
                            (Some(last), Some(at)) => {
                                gone.record(last.saturating_duration_since(at));
                            }
                            _ => return Err(io::Error::other(format!("PE {id}: no answer"))),
                        }
                    }
                    break;
                }
            }
            if Instant::now() > deadline {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "failed PEs were still in the registrar's answers {:?} after failing",
                        config.trial_timeout
                    ),
                ));
            }
            std::thread::sleep(Duration::from_micros(100));
        }
        {
            let mut t = trial.lock();
            t.victims.clear();
            t.gone_at.clear();
        }
        crate::report::DONE.fetch_add(batch as u64, Ordering::Relaxed);
        // Bring them back at the common priority.
        for &v in &victims {
            farm.send(Command::Revive(v));
            farm.send(Command::SetPolicy(v, priority(COMMON)));
        }
        // Each registers twice: on revival, then with the common priority.
        await_notices(farm, 2 * batch, config.trial_timeout, "reviving", |n| {
            matches!(n, Notice::Registered { .. })
        })?;
    }
    gone.elapsed = started.elapsed();
    Ok(gone)
}

fn lost(farm: &Farm, pe: usize) -> io::Error {
    io::Error::other(format!(
        "the registrar closed the connection of PE {} (a live one)",
        farm.ids[pe].0
    ))
}

/// Waits for `n` notices that `counts`; a rejection or a lost link is an error.
fn await_notices(
    farm: &Farm,
    n: usize,
    timeout: Duration,
    what: &str,
    counts: impl Fn(&Notice) -> bool,
) -> io::Result<()> {
    let deadline = Instant::now() + timeout;
    let mut seen = 0;
    while seen < n {
        match farm
            .notices()
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        {
            Ok(Notice::Rejected { pe, cause }) => {
                return Err(io::Error::other(format!(
                    "the registrar rejected PE {} (cause {cause:?})",
                    farm.ids[pe].0
                )));
            }
            Ok(Notice::LinkLost { pe }) => return Err(lost(farm, pe)),
            Ok(n) if counts(&n) => seen += 1,
            Ok(_) => {}
            Err(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "{what} PEs: the registrar answered {seen} of {n} registrations within {timeout:?}"
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// Waits until every connection got an answer naming every victim to a request sent
/// after `since`.
fn wait_all_named(
    trial: &Mutex<Trial>,
    since: Instant,
    connections: usize,
    batch: usize,
    timeout: Duration,
) -> io::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        {
            let t = trial.lock();
            if let Some(e) = &t.error {
                return Err(io::Error::other(e.clone()));
            }
            if t.last_all.len() == connections
                && t.last_all.iter().all(|f| f.is_some_and(|f| f > since))
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "answers of {batch} items never named all {batch} PEs promoted to the highest priority (most items seen in one answer: {}); the registrar must honour the Priority policy and the requested item count",
                        t.max_items
                    ),
                ));
            }
        }
        std::thread::sleep(Duration::from_micros(100));
    }
}

/// One observer: resolves over each of its connections in turn (all requests out,
/// then all answers in) until told to stop.
fn observe(
    mut conns: Vec<Conn>,
    first_index: usize,
    request: &[u8],
    interval: Duration,
    trial: &Mutex<Trial>,
    stop: &AtomicBool,
) -> io::Result<()> {
    crate::scenario::tighten_timer_slack();
    for c in &conns {
        c.set_read_timeout(Some(Duration::from_secs(5)))?;
    }
    let mut ids = Vec::with_capacity(16);
    let mut answers: Vec<(Instant, Instant, Vec<u32>)> = Vec::with_capacity(conns.len());
    let mut next_round = Instant::now();
    while !stop.load(Ordering::Acquire) {
        let now = Instant::now();
        if next_round > now {
            std::thread::sleep(next_round - now);
        }
        let sent = Instant::now();
        next_round = sent + interval;
        for c in &mut conns {
            c.send_bytes(request)?;
        }
        answers.clear();
        for c in &mut conns {
            let bytes = c.recv_bytes()?;
            let at = Instant::now();
            ids.clear();
            if !element_ids(bytes, &mut ids) {
                let mut t = trial.lock();
                t.error = Some(format!(
                    "an answer was not a positive handle resolution ({} bytes)",
                    bytes.len()
                ));
                return Ok(());
            }
            answers.push((sent, at, ids.clone()));
        }
        let mut t = trial.lock();
        t.resolutions += answers.len() as u64;
        for (k, (sent, at, present)) in answers.iter().enumerate() {
            let conn = first_index + k;
            t.max_items = t.max_items.max(present.len());
            if !t.victims.is_empty() && t.victims.iter().all(|(id, _)| present.contains(id)) {
                t.last_all[conn] = Some(*sent);
            }
            let Trial {
                victims, gone_at, ..
            } = &mut *t;
            for (v, (id, failed_at)) in victims.iter().enumerate() {
                if failed_at.is_some_and(|f| *sent >= f)
                    && !present.contains(id)
                    && let Some(slot) = gone_at.get_mut(v).and_then(|g| g.get_mut(conn))
                    && slot.is_none()
                {
                    *slot = Some(*at);
                }
            }
        }
    }
    Ok(())
}

/// The PE identifiers of a positive HANDLE_RESOLUTION_RESPONSE, read straight from
/// the bytes (a full decode of 500 PEs per answer would slow the observers down);
/// `false` for anything else.
fn element_ids(msg: &[u8], out: &mut Vec<u32>) -> bool {
    let [kind, ..] = *msg else {
        return false;
    };
    if kind != AsapType::HANDLE_RESOLUTION_RESPONSE.0 {
        return false;
    }
    let mut at = 4;
    while let Some(&[t0, t1, l0, l1]) = msg.get(at..at + 4) {
        let ty = u16::from_be_bytes([t0, t1]) & 0x3fff;
        let len = usize::from(u16::from_be_bytes([l0, l1]));
        if len < 4 {
            return false;
        }
        // A negative answer carries an Operation Error instead of PEs.
        if ty == ParamType::OPERATION_ERROR.0 {
            return false;
        }
        if ty == ParamType::POOL_ELEMENT.0
            && let Some(id) = msg.get(at + 4..at + 8)
        {
            out.push(u32::from_be_bytes([id[0], id[1], id[2], id[3]]));
        }
        at += len.next_multiple_of(4);
    }
    true
}

#[cfg(test)]
mod tests {
    use rserpool::wire::AsapMessage;
    use rserpool::wire::samples;

    use super::*;

    #[test]
    fn element_ids_match_the_decoder() {
        let mut checked = 0;
        for m in samples::asap_messages() {
            let mut bytes = Vec::new();
            m.encode(&mut bytes);
            let mut ids = Vec::new();
            let positive = element_ids(&bytes, &mut ids);
            match m {
                AsapMessage::HandleResolutionResponse {
                    error: None,
                    elements,
                    ..
                } => {
                    assert!(positive);
                    let want: Vec<u32> = elements.iter().map(|e| e.id.0).collect();
                    assert_eq!(ids, want);
                    checked += 1;
                }
                AsapMessage::HandleResolutionResponse { .. } => assert!(!positive),
                _ => assert!(!positive, "{m:?}"),
            }
        }
        assert!(checked > 0, "the samples hold a positive resolution");
    }
}
