//! The client side of `bench/keepalive-cost.sh`: registers PES pool elements at a
//! registrar over TCP, one connection each (as RSPLIB's PEs have), and holds them for
//! SECONDS, answering every keep-alive, so that the registrar's instruction count (run
//! under callgrind) at rest can be divided by the time and by the keep-alives.
//!
//! ```text
//! restcost ADDR:PORT PES SECONDS
//! ```
//!
//! Prints `registered` once every PE is and `rested` after SECONDS more (so that a
//! script can measure in between), then waits for a line (or the end) on standard input
//! before it closes the connections and prints `keep_alives N`: the keep-alives the PEs
//! answered, from their registration on. Any failure (a rejected registration, a lost connection, a
//! keep-alive left unanswered) is an error, so a broken registrar cannot pass for a
//! cheap one. The farm re-registers its PEs every 30 s: hold them for less to measure
//! keep-alives alone.

use std::io::Write as _;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use rserpool::PoolHandle;
use rserpool_loadgen::conn::Target;
use rserpool_loadgen::farm::{Farm, FarmConfig, Notice};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [addr, pes, seconds] = args.as_slice() else {
        bail!("usage: restcost ADDR:PORT PES SECONDS");
    };
    let target = Target::tcp(addr.parse().context("ADDR:PORT")?);
    let pes: u32 = pes.parse().context("PES")?;
    let seconds: f64 = seconds.parse().context("SECONDS")?;
    let hold = Duration::try_from_secs_f64(seconds).context("SECONDS")?;

    let mut config = FarmConfig::new(target, PoolHandle::new(b"RestPool"), pes);
    config.listen = false;
    let farm = Farm::start(config).context("registering the pool")?;
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "registered")?;
    stdout.flush()?;
    let end = Instant::now() + hold;
    // Rest: nothing to do but watch for a PE the registrar dropped.
    loop {
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        match farm.notices().recv_timeout(left) {
            Ok(Notice::LinkLost { pe }) => bail!("the registrar closed the link of PE {pe}"),
            // The farm thread stopped: `stop` says why.
            Err(e) if e.is_disconnected() => break,
            Ok(_) | Err(_) => {}
        }
    }
    writeln!(stdout, "rested")?;
    stdout.flush()?;
    let mut line = String::new();
    std::io::stdin().read_line(&mut line)?;
    let stats = farm.stop().context("stopping the farm")?;
    if stats.keep_alives_ignored > 0 {
        bail!("{} keep-alives went unanswered", stats.keep_alives_ignored);
    }
    writeln!(stdout, "keep_alives {}", stats.keep_alives_answered)?;
    Ok(())
}
