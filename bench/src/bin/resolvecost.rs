//! The client side of `bench/resolve-cost.sh`: registers a pool of PEs at a registrar
//! over TCP, then resolves it N times with one request in flight, so that the
//! registrar's instruction count (run under callgrind) can be divided by N.
//!
//! ```text
//! resolvecost ADDR:PORT PES RESOLUTIONS [ITEMS]
//! ```
//!
//! Prints nothing on success; any failure (a rejected registration, an answer with
//! fewer PEs than asked for) is an error, so a broken registrar cannot pass for a
//! cheap one.

use std::time::Duration;

use anyhow::{Context, bail};
use rserpool::PoolHandle;
use rserpool::client::Resolved;
use rserpool_loadgen::conn::{Conn, Target};
use rserpool_loadgen::farm::{Farm, FarmConfig};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [addr, pes, n, rest @ ..] = args.as_slice() else {
        bail!("usage: resolvecost ADDR:PORT PES RESOLUTIONS [ITEMS]");
    };
    let target = Target::tcp(addr.parse().context("ADDR:PORT")?);
    let pes: u32 = pes.parse().context("PES")?;
    let n: u64 = n.parse().context("RESOLUTIONS")?;
    let items: u32 = rest.first().map_or(Ok(3), |s| s.parse()).context("ITEMS")?;
    let pool = PoolHandle::new(b"CostPool");

    let mut config = FarmConfig::new(target, pool.clone(), pes);
    config.links = 8;
    config.listen = false;
    let farm = Farm::start(config).context("registering the pool")?;

    let mut conn = Conn::connect(target).context("connecting the pool user")?;
    conn.set_read_timeout(Some(Duration::from_secs(60)))?;
    for i in 0..n {
        match conn.resolve(&pool, Some(items))? {
            Resolved::Elements { elements, .. } if elements.len() == items as usize => {}
            other => bail!("resolution {i}: expected {items} PEs, got {other:?}"),
        }
    }
    drop(conn);
    farm.stop().context("deregistering")?;
    Ok(())
}
