//! Propagation: how long a registration acknowledged at one registrar (A) takes to show
//! at a peer (B), and a deregistration to vanish there (RFC 5353 §3.3: the home sends
//! ENRP_HANDLE_UPDATE to every peer).
//!
//! Trials start on a fixed schedule (open loop). Each uses a PE of its own in a pool
//! of its own, so B answers "unknown pool handle" until the registration has arrived
//! and again once the deregistration has. A trial registers its PE at A; from A's
//! acknowledgement it is timed until the first answer from B that lists the PE; then it
//! deregisters, and from A's acknowledgement it is timed until the first answer from B
//! that no longer does. One thread polls B back to back for every trial waiting, over
//! one or more connections (a request per waiting trial per connection, then every
//! answer): a round of such small answers takes tens of microseconds, and it bounds the
//! error of each time. With several connections a trial waits for all of them.

use std::io;
use std::time::{Duration, Instant};

use crossbeam::channel::RecvTimeoutError;
use rserpool::PoolHandle;
use rserpool::client::{Resolved, resolution_request};
use rserpool::wire::{AsapMessage, CauseCode};

use crate::conn::{Conn, Target};
use crate::farm::{Command, Farm, FarmConfig, Notice};
use crate::report::Series;

/// One propagation run.
#[derive(Clone, Debug)]
pub struct PropagationConfig {
    /// A: where the PEs register.
    pub pe_target: Target,
    /// B: where the observer resolves.
    pub pu_target: Target,
    /// Trial `i` uses the pool `{prefix}-{i}`.
    pub prefix: PoolHandle,
    /// Trials per second.
    pub rate: f64,
    pub duration: Duration,
    /// How long a registration may take to show at B (or a deregistration to vanish,
    /// or A to answer) before the trial counts as an error.
    pub timeout: Duration,
    /// How long the first (untimed) trial may take: the scope may still be forming.
    pub warm_up: Duration,
    /// Connections the PEs share at A.
    pub pe_links: u32,
    /// Observer connections to B.
    pub observers: u32,
}

/// What a propagation run measured.
#[derive(Debug)]
pub struct PropagationResult {
    /// Acknowledged at A until listed at B.
    pub registration: Series,
    /// Deregistration acknowledged at A until no longer listed at B.
    pub deregistration: Series,
    /// The observer's rounds (each bounds the error of the times it ends).
    pub round: Series,
    /// Answers from B that were neither a positive resolution nor "unknown pool
    /// handle" (read as "not listed").
    pub odd_answers: u64,
    /// How long the warm-up trial took to show at B.
    pub warm_up: Duration,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stage {
    Waiting,
    Registering {
        sent: Instant,
    },
    /// Acknowledged at A; `seen` marks the observer connections that listed it.
    Showing {
        acked: Instant,
        seen: u64,
        last: Instant,
    },
    Deregistering {
        sent: Instant,
        timed: bool,
    },
    Vanishing {
        acked: Instant,
        seen: u64,
        last: Instant,
    },
    Done,
}

struct Run<'a> {
    config: &'a PropagationConfig,
    farm: Farm,
    conns: Vec<Conn>,
    requests: Vec<Vec<u8>>,
    stages: Vec<Stage>,
    /// Trials neither waiting nor done.
    active: Vec<usize>,
    result: PropagationResult,
    all_seen: u64,
    /// The timeout in force (longer for the warm-up).
    timeout: Duration,
}

/// Runs `config`.
pub fn run(config: &PropagationConfig) -> io::Result<PropagationResult> {
    let trials = (config.rate * config.duration.as_secs_f64())
        .round()
        .max(1.0) as usize;
    // Trial 0 is the warm-up.
    let n = trials + 1;
    let farm = Farm::start(FarmConfig {
        links: config.pe_links,
        pool_per_pe: true,
        register_at_start: false,
        listen: false,
        ..FarmConfig::new(config.pe_target, config.prefix.clone(), n as u32)
    })?;
    let handles = FarmConfig {
        pool_per_pe: true,
        ..FarmConfig::new(config.pe_target, config.prefix.clone(), 0)
    };
    let requests = (0..n)
        .map(|i| {
            let mut r = Vec::with_capacity(48);
            resolution_request(&handles.handle_of(i), None, &mut r);
            r
        })
        .collect();
    let conns = (0..config.observers.clamp(1, 64))
        .map(|_| {
            let c = Conn::connect(config.pu_target)?;
            c.set_read_timeout(Some(Duration::from_secs(5)))?;
            Ok(c)
        })
        .collect::<io::Result<Vec<_>>>()?;
    let all_seen = if conns.len() == 64 {
        u64::MAX
    } else {
        (1u64 << conns.len()) - 1
    };
    let mut run = Run {
        config,
        farm,
        conns,
        requests,
        stages: vec![Stage::Waiting; n],
        active: Vec::new(),
        result: PropagationResult {
            registration: Series::new("propagation.registration", "propagation: registration"),
            deregistration: Series::new(
                "propagation.deregistration",
                "propagation: deregistration",
            ),
            round: Series::new("propagation.observer_round", "  observer round"),
            odd_answers: 0,
            warm_up: Duration::ZERO,
        },
        all_seen,
        timeout: config.warm_up,
    };
    run.warm_up()?;
    run.trials(trials)?;
    run.farm.stop()?;
    Ok(run.result)
}

impl Run<'_> {
    /// Trial 0, untimed, with a long timeout: the scope carries updates from A to B.
    fn warm_up(&mut self) -> io::Result<()> {
        let start = Instant::now();
        self.begin(0, start);
        while self.stages[0] != Stage::Done {
            self.step(Instant::now() + Duration::from_millis(10))?;
        }
        if self.result.registration.count() == 0 {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "a registration at {} did not show at {} within {:?}: are they ENRP peers?",
                    self.config.pe_target, self.config.pu_target, self.config.warm_up
                ),
            ));
        }
        self.timeout = self.config.timeout;
        self.result.warm_up = start.elapsed();
        self.result.registration =
            Series::new("propagation.registration", "propagation: registration");
        self.result.deregistration =
            Series::new("propagation.deregistration", "propagation: deregistration");
        self.result.round = Series::new("propagation.observer_round", "  observer round");
        Ok(())
    }

    fn trials(&mut self, trials: usize) -> io::Result<()> {
        crate::scenario::tighten_timer_slack();
        let period = Duration::from_secs_f64(1.0 / self.config.rate);
        let start = Instant::now() + Duration::from_millis(5);
        let mut next = 1;
        loop {
            let now = Instant::now();
            while next <= trials && start + period.mul_f64((next - 1) as f64) <= now {
                self.begin(next, now);
                next += 1;
            }
            if next > trials && self.active.is_empty() {
                break;
            }
            let due = if next <= trials {
                start + period.mul_f64((next - 1) as f64)
            } else {
                now + Duration::from_millis(1)
            };
            self.step(due)?;
        }
        let elapsed = start.elapsed();
        for s in [
            &mut self.result.registration,
            &mut self.result.deregistration,
            &mut self.result.round,
        ] {
            s.elapsed = elapsed.min(self.config.duration);
        }
        Ok(())
    }

    fn begin(&mut self, trial: usize, now: Instant) {
        self.stages[trial] = Stage::Registering { sent: now };
        self.active.push(trial);
        self.farm.send(Command::Register(trial));
    }

    /// Reads the farm's news, then polls B once if a trial is waiting to show or
    /// vanish; otherwise waits for news until `until`.
    fn step(&mut self, until: Instant) -> io::Result<()> {
        while let Ok(n) = self.farm.notices().try_recv() {
            self.notice(n)?;
        }
        self.expire(Instant::now());
        let watched: Vec<usize> = self
            .active
            .iter()
            .copied()
            .filter(|&t| {
                matches!(
                    self.stages[t],
                    Stage::Showing { .. } | Stage::Vanishing { .. }
                )
            })
            .collect();
        if watched.is_empty() {
            let wait = until.saturating_duration_since(Instant::now());
            match self.farm.notices().recv_timeout(wait) {
                Ok(n) => self.notice(n)?,
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(io::Error::other("the PE farm stopped"));
                }
            }
            return Ok(());
        }
        self.round(&watched)
    }

    fn notice(&mut self, n: Notice) -> io::Result<()> {
        match n {
            Notice::Registered { pe, at, .. } => {
                if let Stage::Registering { .. } = self.stages[pe] {
                    self.stages[pe] = Stage::Showing {
                        acked: at,
                        seen: 0,
                        last: at,
                    };
                }
            }
            Notice::Rejected { pe, .. } => {
                if let Stage::Registering { .. } = self.stages[pe] {
                    self.result.registration.errors += 1;
                    self.finish(pe);
                }
            }
            Notice::Deregistered { pe, at, .. } => {
                if let Stage::Deregistering { timed, .. } = self.stages[pe] {
                    if timed {
                        self.stages[pe] = Stage::Vanishing {
                            acked: at,
                            seen: 0,
                            last: at,
                        };
                    } else {
                        self.finish(pe);
                    }
                }
            }
            Notice::LinkLost { pe } => {
                return Err(io::Error::other(format!(
                    "{} closed the connection of PE {}",
                    self.config.pe_target, self.farm.ids[pe].0
                )));
            }
            _ => {}
        }
        Ok(())
    }

    /// Counts trials stuck past the timeout as errors.
    fn expire(&mut self, now: Instant) {
        let timeout = self.timeout;
        for i in 0..self.active.len() {
            let t = self.active[i];
            match self.stages[t] {
                Stage::Registering { sent } if now > sent + timeout => {
                    self.result.registration.errors += 1;
                    // Whatever A makes of it, take it away again (untimed).
                    self.deregister(t, now, false);
                }
                Stage::Showing { acked, .. } if now > acked + timeout => {
                    self.result.registration.errors += 1;
                    self.deregister(t, now, false);
                }
                Stage::Deregistering { sent, timed } if now > sent + timeout => {
                    if timed {
                        self.result.deregistration.errors += 1;
                    }
                    self.stages[t] = Stage::Done;
                }
                Stage::Vanishing { acked, .. } if now > acked + timeout => {
                    self.result.deregistration.errors += 1;
                    self.stages[t] = Stage::Done;
                }
                _ => {}
            }
        }
        self.active.retain(|&t| self.stages[t] != Stage::Done);
    }

    fn deregister(&mut self, trial: usize, now: Instant, timed: bool) {
        self.stages[trial] = Stage::Deregistering { sent: now, timed };
        self.farm.send(Command::Deregister(trial));
    }

    fn finish(&mut self, trial: usize) {
        self.stages[trial] = Stage::Done;
        self.active.retain(|&t| t != trial);
    }

    /// One observer round: every watched trial asked on every connection.
    fn round(&mut self, watched: &[usize]) -> io::Result<()> {
        let start = Instant::now();
        for c in &mut self.conns {
            for &t in watched {
                c.send_bytes(&self.requests[t])?;
            }
        }
        for k in 0..self.conns.len() {
            for &t in watched {
                let listed = {
                    let bytes = self.conns[k].recv_bytes()?;
                    listed(bytes, &mut self.result.odd_answers)
                };
                let at = Instant::now();
                let bit = 1u64 << k;
                match &mut self.stages[t] {
                    Stage::Showing { seen, last, .. } if listed && *seen & bit == 0 => {
                        *seen |= bit;
                        *last = at;
                    }
                    Stage::Vanishing { seen, last, .. } if !listed && *seen & bit == 0 => {
                        *seen |= bit;
                        *last = at;
                    }
                    _ => {}
                }
            }
        }
        self.result.round.record(start.elapsed());
        let now = Instant::now();
        for &t in watched {
            match self.stages[t] {
                Stage::Showing { acked, seen, last } if seen == self.all_seen => {
                    self.result
                        .registration
                        .record(last.saturating_duration_since(acked));
                    self.deregister(t, now, true);
                }
                Stage::Vanishing { acked, seen, last } if seen == self.all_seen => {
                    self.result
                        .deregistration
                        .record(last.saturating_duration_since(acked));
                    self.finish(t);
                    crate::report::DONE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                _ => {}
            }
        }
        Ok(())
    }
}

/// Whether a resolution answer lists a PE; anything but a positive answer or "unknown
/// pool handle" is counted in `odd` (and lists nothing).
fn listed(bytes: &[u8], odd: &mut u64) -> bool {
    let resolved = AsapMessage::decode(bytes)
        .ok()
        .and_then(|d| Resolved::from_message(d.message));
    match resolved {
        Some(Resolved::Elements { elements, .. }) if !elements.is_empty() => true,
        Some(Resolved::Failed {
            cause: Some(CauseCode::UNKNOWN_POOL_HANDLE),
            ..
        }) => false,
        _ => {
            *odd += 1;
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use rserpool::wire::samples;

    use super::*;

    #[test]
    fn only_positive_answers_list_and_unknown_handles_are_not_odd() {
        let mut odd = 0;
        let mut positives = 0;
        for m in samples::asap_messages() {
            let mut b = Vec::new();
            m.encode(&mut b);
            let before = odd;
            let l = listed(&b, &mut odd);
            match &m {
                AsapMessage::HandleResolutionResponse {
                    error: None,
                    elements,
                    ..
                } if !elements.is_empty() => {
                    assert!(l);
                    positives += 1;
                }
                AsapMessage::HandleResolutionResponse { error: Some(e), .. }
                    if e.code() == Some(CauseCode::UNKNOWN_POOL_HANDLE) =>
                {
                    assert!(!l);
                    assert_eq!(odd, before, "{m:?}");
                }
                _ => assert!(!l, "{m:?}"),
            }
        }
        assert!(positives > 0);
        assert!(odd > 0, "the samples hold other messages");
    }
}
