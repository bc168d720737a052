//! The client side of `bench/resolve-cost.sh`: registers a pool of PEs at a registrar
//! over TCP, then resolves it N times with one request in flight, so that the
//! registrar's instruction count (run under callgrind) can be divided by N.
//!
//! ```text
//! resolvecost ADDR:PORT PES RESOLUTIONS [ITEMS [DONE-FILE [PAUSE-US]]]
//! ```
//!
//! PAUSE-US (default 0) is a pause after each answer before the next request: with
//! one, every request finds the registrar asleep in the kernel, the same path each
//! time (back to back, whether the next request is already there when the registrar
//! has sent an answer depends on how fast each side runs, under callgrind as well).
//!
//! With DONE-FILE, it creates `DONE-FILE.ready` once the PEs are registered and its
//! connection is open, waits for `DONE-FILE.go` (the script switches callgrind's
//! instrumentation on in between, so that registration, whose cost depends on timing,
//! is in no total), resolves, creates DONE-FILE, and then holds its connections open
//! until killed, so that the registrar is stopped before it sees them close (the
//! teardown would otherwise fall inside one run's total but not the other's).
//!
//! Prints nothing on success; any failure (a rejected registration, an answer with
//! fewer PEs than asked for) is an error, so a broken registrar cannot pass for a
//! cheap one.

use std::time::Duration;

use anyhow::{Context, bail};
use rserpool::PoolHandle;
use rserpool::client::Resolved;
use rserpool::wire::{AsapMessage, PolicyParam, RegistrationLife};
use rserpool_loadgen::conn::{Conn, Target};
use rserpool_loadgen::pe::element;

/// Connections the PEs register through, round robin.
const LINKS: u32 = 8;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [addr, pes, n, rest @ ..] = args.as_slice() else {
        bail!("usage: resolvecost ADDR:PORT PES RESOLUTIONS [ITEMS [DONE-FILE [PAUSE-US]]]");
    };
    let target = Target::tcp(addr.parse().context("ADDR:PORT")?);
    let pes: u32 = pes.parse().context("PES")?;
    let n: u64 = n.parse().context("RESOLUTIONS")?;
    let items: u32 = rest.first().map_or(Ok(3), |s| s.parse()).context("ITEMS")?;
    let done = rest.get(1);
    let pause: u64 = rest
        .get(2)
        .map_or(Ok(0), |s| s.parse())
        .context("PAUSE-US")?;
    let pause = Duration::from_micros(pause);
    let pool = PoolHandle::new(b"CostPool");

    // The PEs register once and stay (no re-registration, no keep-alive answers: the
    // script sets a keep-alive interval far beyond the run), so that the registrar
    // does nothing but resolve while it is measured.
    let mut links = Vec::new();
    for l in 0..LINKS.min(pes.max(1)) {
        let mut c = Conn::connect(target).context("connecting a PE link")?;
        c.set_read_timeout(Some(Duration::from_secs(60)))?;
        let addr = c.local_addr()?.ip();
        let mine: Vec<u32> = (1..=pes).filter(|id| id % LINKS == l).collect();
        for &id in &mine {
            let mut element = element(id, addr, PolicyParam::round_robin());
            // An hour: no PE expires during a run, however slow valgrind makes it.
            element.registration_life = RegistrationLife(3_600_000);
            c.send(&AsapMessage::Registration {
                handle: pool.clone(),
                element,
            })?;
        }
        for _ in &mine {
            match c.recv()? {
                AsapMessage::RegistrationResponse {
                    rejected: false, ..
                } => {}
                other => bail!("registration refused: {other:?}"),
            }
        }
        links.push(c);
    }

    let mut conn = Conn::connect(target).context("connecting the pool user")?;
    conn.set_read_timeout(Some(Duration::from_secs(60)))?;
    if let Some(path) = done {
        std::fs::write(format!("{path}.ready"), b"ready\n").context("writing DONE-FILE.ready")?;
        let go = format!("{path}.go");
        while !std::path::Path::new(&go).exists() {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    for i in 0..n {
        match conn.resolve(&pool, Some(items))? {
            Resolved::Elements { elements, .. } if elements.len() == items as usize => {}
            other => bail!("resolution {i}: expected {items} PEs, got {other:?}"),
        }
        if !pause.is_zero() {
            std::thread::sleep(pause);
        }
    }
    if let Some(path) = done {
        std::fs::write(path, b"done\n").context("writing DONE-FILE")?;
        std::thread::sleep(Duration::from_secs(3600));
    }
    drop(conn);
    drop(links);
    Ok(())
}
