//! The client side of `bench/memory.sh`: fills a registrar with POOLS × PES pool
//! elements over a few TCP connections and reports the registrar's resident memory
//! before and after, from `/proc/PID/status`.
//!
//! ```text
//! memfill ADDR:PORT PID METRICS-ADDR:PORT [--pools N] [--pes N] [--conns N] [--policy rr|random|wrr|lu]
//! ```
//!
//! Every PE offers one SCTP transport on the connection's address (as the load
//! generator's PEs do); the connections carry whole pools, and registrations are
//! pipelined (a window per connection). Once every registration is accepted it polls
//! the registrar's metrics until every shard's replica holds every PE, so that the
//! figure after includes the replicas, waits 3 s for the allocator to return freed
//! memory, then prints `key value` lines:
//! `rss_before_kib`, `rss_after_kib`, `hwm_kib` (peak), `pes`, `bytes_per_pe`, and the
//! mesh's spills and waits (when the registrar reports them). The connections stay
//! open until the figures are read (closing them removes the PEs).
//! Any refused registration is an error.

use std::io::{BufReader, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use rserpool::PoolHandle;
use rserpool::rng::Rng;
use rserpool::wire::{AsapMessage, PolicyParam, PolicyType};

/// Registrations in flight per connection.
const WINDOW: usize = 512;
/// How long to let the registrar's allocator give freed memory back before reading.
const PURGE_WAIT: Duration = Duration::from_secs(3);
/// How long the replicas may take to catch up after the last answer.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(300);

#[derive(Clone, Copy, Debug)]
struct Args {
    pools: u32,
    pes: u32,
    conns: u32,
    policy: PolicyType,
}

fn main() -> anyhow::Result<()> {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let [addr, pid, metrics, rest @ ..] = argv.as_slice() else {
        bail!(
            "usage: memfill ADDR:PORT PID METRICS-ADDR:PORT [--pools N] [--pes N] [--conns N] [--policy rr|random|wrr|lu]"
        );
    };
    let addr: SocketAddr = addr.parse().context("ADDR:PORT")?;
    let pid: u32 = pid.parse().context("PID")?;
    let metrics: SocketAddr = metrics.parse().context("METRICS-ADDR:PORT")?;
    let mut args = Args {
        pools: 2000,
        pes: 500,
        conns: 40,
        policy: PolicyType::ROUND_ROBIN,
    };
    let mut it = rest.iter();
    while let Some(flag) = it.next() {
        let value = it.next().with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--pools" => args.pools = value.parse().context("--pools")?,
            "--pes" => args.pes = value.parse().context("--pes")?,
            "--conns" => args.conns = value.parse::<u32>().context("--conns")?.max(1),
            "--policy" => {
                args.policy = match value.as_str() {
                    "rr" => PolicyType::ROUND_ROBIN,
                    "random" => PolicyType::RANDOM,
                    "wrr" => PolicyType::WEIGHTED_ROUND_ROBIN,
                    "lu" => PolicyType::LEAST_USED,
                    other => bail!("unknown policy {other:?}"),
                }
            }
            other => bail!("unknown flag {other:?}"),
        }
    }

    let before = status_kib(pid, "VmRSS")?;
    let total = u64::from(args.pools) * u64::from(args.pes);
    let started = Instant::now();
    let conns: Vec<TcpStream> = (0..args.conns)
        .map(|_| TcpStream::connect(addr).context("connecting"))
        .collect::<anyhow::Result<_>>()?;
    std::thread::scope(|s| -> anyhow::Result<()> {
        let workers: Vec<_> = conns
            .iter()
            .enumerate()
            .map(|(c, conn)| s.spawn(move || fill(conn, c as u32, args)))
            .collect();
        for w in workers {
            w.join()
                .map_err(|_| anyhow::anyhow!("a connection's thread panicked"))??;
        }
        Ok(())
    })?;
    let registered = started.elapsed();
    let text = settle(metrics, total)?;
    // Memory freed on the way (a hash table's old array after it grew, a burst's queue
    // blocks) goes back to the OS after the allocator's purge delay (mimalloc: 1 s).
    std::thread::sleep(PURGE_WAIT);
    let after = status_kib(pid, "VmRSS")?;
    let hwm = status_kib(pid, "VmHWM")?;
    println!("pes {total}");
    println!("registered_s {:.1}", registered.as_secs_f64());
    println!("settled_s {:.1}", started.elapsed().as_secs_f64());
    println!("rss_before_kib {before}");
    println!("rss_after_kib {after}");
    println!("hwm_kib {hwm}");
    println!(
        "bytes_per_pe {:.0}",
        (after.saturating_sub(before) * 1024) as f64 / total.max(1) as f64
    );
    for name in ["rserpool_mesh_spills_total", "rserpool_mesh_waits_total"] {
        // The registrar's figure: the sum over shards.
        let prefix = format!("{name}{{shard=\"");
        let sum: f64 = text
            .lines()
            .filter(|l| l.starts_with(prefix.as_str()))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum();
        println!("{name} {sum}");
    }
    // How the kernel spread the connections over the shards (each shard supervises
    // the PEs of its connections, in tables whose size doubles at 7/8 full).
    let supervised: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("rserpool_supervised_pool_elements{shard=\""))
        .filter_map(|l| l.rsplit(' ').next())
        .collect();
    println!("supervised_per_shard {}", supervised.join(","));
    drop(conns);
    Ok(())
}

/// Registers the pools of connection `c` (pools `c`, `c + conns`, …), `WINDOW` at a
/// time.
fn fill(conn: &TcpStream, c: u32, args: Args) -> anyhow::Result<()> {
    conn.set_nodelay(true)?;
    let ip: IpAddr = conn.local_addr()?.ip();
    let mut rng = Rng::new(u64::from(c) + 1);
    let pes = (c..args.pools)
        .step_by(args.conns as usize)
        .flat_map(|p| (1..=args.pes).map(move |id| (p, id)));
    let mut pes = pes.peekable();
    let mut reader = BufReader::with_capacity(64 << 10, conn);
    let mut writer = conn;
    let mut out = Vec::with_capacity(WINDOW * 96);
    let mut in_flight = 0usize;
    let mut buf = Vec::with_capacity(256);
    loop {
        out.clear();
        while in_flight < WINDOW
            && let Some((pool, id)) = pes.next()
        {
            let handle = PoolHandle::new(format!("MemPool-{pool}").as_bytes());
            let element = rserpool_loadgen::pe::element(id, ip, policy(args.policy, &mut rng));
            AsapMessage::Registration { handle, element }.encode(&mut out);
            in_flight += 1;
        }
        if !out.is_empty() {
            writer.write_all(&out).context("sending registrations")?;
        }
        if in_flight == 0 {
            return Ok(());
        }
        // Read half a window before sending more, so writes go out in batches.
        let target = if pes.peek().is_some() {
            in_flight.saturating_sub(WINDOW / 2)
        } else {
            0
        };
        while in_flight > target {
            match read_message(&mut reader, &mut buf)? {
                AsapMessage::RegistrationResponse {
                    rejected: false, ..
                } => in_flight -= 1,
                AsapMessage::RegistrationResponse {
                    handle, id, error, ..
                } => bail!("registration of {handle}/{} refused: {error:?}", id.0),
                // Keep-alives (there should be none with a long interval) need no answer
                // for the few minutes this runs.
                _ => {}
            }
        }
    }
}

fn policy(kind: PolicyType, rng: &mut Rng) -> PolicyParam {
    let value = rng.next_u64() as u32;
    let values: &[u32] = match kind {
        PolicyType::WEIGHTED_ROUND_ROBIN => &[1 + value % 10],
        PolicyType::LEAST_USED => &[value],
        _ => &[],
    };
    PolicyParam::new(kind, values).unwrap_or_else(PolicyParam::round_robin)
}

/// One ASAP message over TCP, framed by its own length field.
fn read_message(r: &mut impl Read, buf: &mut Vec<u8>) -> anyhow::Result<AsapMessage> {
    let mut head = [0u8; 4];
    r.read_exact(&mut head).context("reading an answer")?;
    let len = usize::from(u16::from_be_bytes([head[2], head[3]]));
    if len < 4 {
        bail!("message length {len} below 4");
    }
    buf.clear();
    buf.extend_from_slice(&head);
    buf.resize(len.div_ceil(4) * 4, 0);
    r.read_exact(&mut buf[4..]).context("reading an answer")?;
    Ok(AsapMessage::decode(buf)
        .map_err(|e| anyhow::anyhow!("undecodable answer: {e}"))?
        .message)
}

/// Polls the metrics until every shard's replica holds `total` PEs; returns the last
/// scrape.
fn settle(metrics: SocketAddr, total: u64) -> anyhow::Result<String> {
    let deadline = Instant::now() + SETTLE_TIMEOUT;
    loop {
        let text = scrape(metrics)?;
        let counts: Vec<u64> = text
            .lines()
            .filter(|l| l.starts_with("rserpool_replica_pool_elements{"))
            .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
            .collect();
        if !counts.is_empty() && counts.iter().all(|&n| n == total) {
            return Ok(text);
        }
        if Instant::now() > deadline {
            bail!("replicas hold {counts:?} PEs, not {total}, after {SETTLE_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn scrape(addr: SocketAddr) -> anyhow::Result<String> {
    let mut s = TcpStream::connect(addr).context("connecting to the metrics endpoint")?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")?;
    let mut text = String::new();
    s.read_to_string(&mut text)?;
    Ok(text)
}

/// A `kB` line of `/proc/PID/status`.
fn status_kib(pid: u32, key: &str) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| {
            l.strip_prefix(key)?
                .strip_prefix(':')?
                .trim()
                .strip_suffix("kB")?
                .trim()
                .parse()
                .ok()
        })
        .with_context(|| format!("no {key} in /proc/{pid}/status"))
}
