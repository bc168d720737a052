//! Takeover: how long the PEs of a registrar that dies go without a home.
//!
//! In a [`Scope`] of registrar processes, a [`Farm`] registers the PEs at registrar 0
//! (the victim) over TCP, every connection listening on its local port. Once a pool
//! user at every survivor sees all of them, the victim is killed (SIGKILL) at T0. The
//! survivors notice through ENRP (MAX-TIME-LAST-HEARD, then MAX-TIME-NO-RESPONSE), one
//! of them takes the victim over (RFC 5353 §3.5: INIT_TAKEOVER, the others'
//! acknowledgements or the expiry, TAKEOVER_SERVER) and reaches every PE at its port
//! with a keep-alive whose home flag is set. Per PE the time runs from T0 until the PE
//! answers that keep-alive (T1). At the end every survivor must list every PE with a
//! survivor as its home; a PE not adopted within the bound, or missing or homed at the
//! dead registrar at the end, is lost.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::time::{Duration, Instant};

use rserpool::PoolHandle;
use rserpool::wire::PoolElement;

use crate::farm::{Farm, FarmConfig, FarmStats, Notice};
use crate::report::Series;
use crate::scenario::await_pool;
use crate::scope::Scope;

/// One takeover run.
#[derive(Clone, Debug)]
pub struct TakeoverConfig {
    pub pool: PoolHandle,
    pub pes: u32,
    /// Connections the PEs share (0: one each).
    pub links: u32,
    /// How long after the kill a PE may take to be adopted before it counts as lost.
    pub bound: Duration,
    /// How long the survivors may take to show every PE, before the kill and after the
    /// adoptions.
    pub settle: Duration,
}

/// What a takeover run measured.
#[derive(Debug)]
pub struct TakeoverResult {
    pub registration: Series,
    /// Per PE: the kill until it answered a home-flag keep-alive from a survivor.
    pub adoption: Series,
    /// From the last registration until every survivor showed every PE.
    pub visible_after: Duration,
    /// PEs adopted, by the server ID of the registrar that adopted them.
    pub adopters: BTreeMap<u32, usize>,
    /// PE identifiers not adopted within the bound.
    pub not_adopted: Vec<u32>,
    /// PE identifiers some survivor did not list at the end.
    pub missing: Vec<u32>,
    /// PE identifiers some survivor listed with a home that is not a survivor.
    pub homeless: Vec<u32>,
    /// Adoptions of a PE already adopted (a second survivor reaching it).
    pub repeats: u64,
    pub farm: FarmStats,
}

impl TakeoverResult {
    /// Distinct PEs lost for any of the reasons above.
    pub fn lost(&self) -> usize {
        let all: BTreeSet<u32> = self
            .not_adopted
            .iter()
            .chain(&self.missing)
            .chain(&self.homeless)
            .copied()
            .collect();
        all.len()
    }
}

/// Runs `config` in `scope` (at least two registrars; registrar 0 is killed).
pub fn run(scope: &mut Scope, config: &TakeoverConfig) -> io::Result<TakeoverResult> {
    if scope.len() < 2 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "a takeover needs at least two registrars",
        ));
    }
    let n = config.pes as usize;
    let started = Instant::now();
    let farm = Farm::start(FarmConfig {
        links: config.links,
        ..FarmConfig::new(scope.asap(0), config.pool.clone(), config.pes)
    })?;
    if !farm.listening {
        return Err(io::Error::other(
            "the PEs' connections do not listen on their ports (see above): no registrar \
             could take them over",
        ));
    }
    let mut registration = Series::new("takeover.registration", "registration");
    for d in &farm.registration {
        registration.record(*d);
    }
    registration.elapsed = started.elapsed();
    let registered = Instant::now();

    let ids: Vec<u32> = farm.ids.iter().map(|id| id.0).collect();
    let survivors: Vec<usize> = (1..scope.len()).collect();
    for &s in &survivors {
        let (seen, all) = await_pool(
            scope.asap(s),
            &config.pool,
            config.pes,
            config.settle,
            |e| e.len() >= n,
        )?;
        if !all {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "registrar {s} showed {} of the {n} PEs registered at registrar 0 within {:?}: \
                     is ENRP up between them?",
                    seen.len(),
                    config.settle
                ),
            ));
        }
    }
    let visible_after = registered.elapsed();

    let t0 = scope.kill(0)?;
    let mut adoption = Series::new("takeover.adoption", "takeover: PE adopted");
    let mut adopted = vec![false; n];
    let mut adopters = BTreeMap::new();
    let mut count = 0;
    let mut repeats = 0;
    let deadline = t0 + config.bound;
    while count < n {
        let left = deadline.saturating_duration_since(Instant::now());
        match farm.notices().recv_timeout(left) {
            Ok(Notice::Adopted { pe, registrar, at }) => {
                if adopted[pe] {
                    repeats += 1;
                    continue;
                }
                adopted[pe] = true;
                count += 1;
                adoption.record(at.saturating_duration_since(t0));
                *adopters.entry(registrar.0).or_insert(0) += 1;
                crate::report::DONE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            // The victim's connections end with it; the PEs wait to be adopted.
            Ok(_) => {}
            Err(_) => break,
        }
    }
    adoption.elapsed = t0.elapsed();
    let not_adopted = (0..n).filter(|&i| !adopted[i]).map(|i| ids[i]).collect();

    // Every survivor lists every PE, each with a survivor as its home.
    let homes: BTreeSet<u32> = survivors.iter().map(|&s| scope.id(s).0).collect();
    let settled = |e: &[PoolElement]| {
        let listed: BTreeSet<u32> = e.iter().map(|p| p.id.0).collect();
        ids.iter().all(|id| listed.contains(id)) && e.iter().all(|p| homes.contains(&p.home.0))
    };
    let mut missing = BTreeSet::new();
    let mut homeless = BTreeSet::new();
    for &s in &survivors {
        let (seen, _) = await_pool(
            scope.asap(s),
            &config.pool,
            config.pes,
            config.settle,
            settled,
        )?;
        let listed: BTreeSet<u32> = seen.iter().map(|p| p.id.0).collect();
        missing.extend(ids.iter().filter(|id| !listed.contains(id)));
        homeless.extend(
            seen.iter()
                .filter(|p| !homes.contains(&p.home.0))
                .map(|p| p.id.0),
        );
    }
    let stats = farm.stop()?;
    Ok(TakeoverResult {
        registration,
        adoption,
        visible_after,
        adopters,
        not_adopted,
        missing: missing.into_iter().collect(),
        homeless: homeless.into_iter().collect(),
        repeats,
        farm: stats,
    })
}
