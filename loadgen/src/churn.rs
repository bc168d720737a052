//! Churn: registrations, re-registrations and deregistrations at a set rate.
//!
//! A [`Farm`] registers the pool; then, on a fixed schedule, a random PE with nothing
//! in flight is changed: a registered one re-registers or deregisters (even odds), an
//! unregistered one registers. Each operation's latency runs from the farm sending it
//! to the registrar's answer.

use std::io;
use std::time::{Duration, Instant};

use rserpool::PoolHandle;
use rserpool::rng::Rng;

use crate::conn::Target;
use crate::farm::{Command, Farm, FarmConfig, Notice};
use crate::report::Series;

#[derive(Clone, Debug)]
pub struct ChurnConfig {
    pub target: Target,
    pub pool: PoolHandle,
    pub pes: u32,
    /// Connections the PEs share (0: one each).
    pub links: u32,
    /// Operations per second, all kinds together.
    pub rate: f64,
    pub duration: Duration,
    pub seed: u64,
    /// The PEs' connections listen on their ports (see [`FarmConfig::listen`]).
    pub pe_listeners: bool,
}

#[derive(Debug)]
pub struct ChurnResult {
    pub registration: Series,
    pub reregistration: Series,
    pub deregistration: Series,
    /// Scheduled operations skipped because every PE tried had one in flight.
    pub skipped: u64,
    /// Operations without an answer at the end.
    pub unanswered: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Pending {
    None,
    Register,
    Reregister,
    Deregister,
}

pub fn run(config: &ChurnConfig) -> io::Result<ChurnResult> {
    let farm = Farm::start(FarmConfig {
        links: config.links,
        listen: config.pe_listeners,
        ..FarmConfig::new(config.target, config.pool.clone(), config.pes)
    })?;
    let n = config.pes as usize;
    let mut registered = vec![true; n];
    let mut pending = vec![Pending::None; n];
    let mut in_flight = 0usize;
    let mut result = ChurnResult {
        registration: Series::new("churn.registration", "churn: registration"),
        reregistration: Series::new("churn.reregistration", "churn: re-registration"),
        deregistration: Series::new("churn.deregistration", "churn: deregistration"),
        skipped: 0,
        unanswered: 0,
    };
    let mut rng = Rng::new(config.seed);
    crate::scenario::tighten_timer_slack();
    let period = Duration::from_secs_f64(1.0 / config.rate);
    let start = Instant::now();
    let end = start + config.duration;
    let mut i = 0u64;
    let mut settle_until = None;
    loop {
        // Answers first.
        while let Ok(notice) = farm.notices().try_recv() {
            let (pe, latency, ok) = match notice {
                Notice::Registered { pe, latency, .. } => (pe, latency, true),
                Notice::Deregistered { pe, latency, .. } => (pe, latency, true),
                Notice::Rejected { pe, .. } => (pe, Duration::ZERO, false),
                Notice::LinkLost { pe } => {
                    return Err(io::Error::other(format!(
                        "the registrar closed the connection of PE {}",
                        farm.ids[pe].0
                    )));
                }
                _ => continue,
            };
            let series = match pending[pe] {
                Pending::None => continue,
                Pending::Register => &mut result.registration,
                Pending::Reregister => &mut result.reregistration,
                Pending::Deregister => &mut result.deregistration,
            };
            if ok {
                series.record(latency);
                registered[pe] = pending[pe] != Pending::Deregister;
            } else {
                series.errors += 1;
            }
            pending[pe] = Pending::None;
            in_flight -= 1;
        }
        let now = Instant::now();
        if now >= end {
            let until = *settle_until.get_or_insert(now + Duration::from_secs(2));
            if in_flight == 0 || now >= until {
                break;
            }
            std::thread::sleep(Duration::from_micros(100));
            continue;
        }
        let due = start + period.mul_f64(i as f64);
        if due > now {
            std::thread::sleep((due - now).min(Duration::from_micros(500)));
            continue;
        }
        i += 1;
        let pick = (0..8)
            .map(|_| rng.below(n as u64) as usize)
            .find(|&pe| pending[pe] == Pending::None);
        let Some(pe) = pick else {
            result.skipped += 1;
            continue;
        };
        let (kind, command) = if !registered[pe] {
            (Pending::Register, Command::Register(pe))
        } else if rng.below(2) == 0 {
            (Pending::Reregister, Command::Register(pe))
        } else {
            (Pending::Deregister, Command::Deregister(pe))
        };
        pending[pe] = kind;
        in_flight += 1;
        farm.send(command);
    }
    result.unanswered = in_flight as u64;
    let elapsed = start.elapsed().min(config.duration);
    for s in [
        &mut result.registration,
        &mut result.reregistration,
        &mut result.deregistration,
    ] {
        s.elapsed = elapsed;
    }
    farm.stop()?;
    Ok(result)
}
