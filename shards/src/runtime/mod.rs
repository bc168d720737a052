//! Shard threads, their rings and the mesh between them.
//!
//! [`start`] checks io_uring, binds every listening socket on the calling thread (so a
//! bad address is an error there), then starts one thread per shard. Each shard owns an
//! io_uring, a [`Registrar`] and its own listeners: TCP listeners share the address
//! with SO_REUSEPORT, so the kernel spreads connections over the shards; SCTP sockets
//! do the same where the kernel allows it. Shards exchange [`ShardMsg`]s over the
//! mesh (bounded queues, one per pair of shards).
//!
//! ENRP ([`start_with`]) is served by shard 0 alone, where the registrar runs its ENRP
//! server: its ENRP listeners, its multicast sockets, and the connections it opens to
//! peers. Any shard opens the connections its registrar asks for
//! ([`rserpool::registrar::Transmit::Connect`]) through its own ring.
//!
//! - Threads: one per shard, optionally pinned; nothing else runs on the request path.
//!   A request is answered by the shard its connection landed on, from its own replica.
//! - Wake-ups: a shard sleeps only inside its ring (until a completion, the registrar's
//!   next deadline, or a read on its eventfd completes). Another shard writes that
//!   eventfd only if the target said it is about to sleep.
//! - Buffers: each pending operation owns its buffer inside the ring ([`crate::net::ring`]);
//!   a TCP connection has one receive buffer (4 KiB, grown only for a larger message) and
//!   at most one send in flight, with later answers appended behind it.
//! - Backpressure: every queue is bounded. A connection or association with more than
//!   its cap unsent is closed (a slow consumer), and so are a shard's largest backlogs
//!   when together they pass the shard's cap ([`ConnLimits`]); a full mesh queue spills into the
//!   sender's local overflow list, retried every turn, never blocking and never dropping.
//!
//! [`Registrar`]: rserpool::registrar::Registrar
//! [`ShardMsg`]: rserpool::registrar::ShardMsg

mod clock;
mod conns;
mod dial;
pub(crate) mod framing;
mod host;
mod limits;
mod log;
mod mesh;
mod reload;
mod scrape;
mod sctp;
mod shard;
mod tcp;
mod udp;

pub use limits::{ConnCounters, ConnLimits};
pub use reload::{NotTaken, Reload};
pub use scrape::{MetricsSource, Snapshot};

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

use rserpool::enrp::PeerAddress;
use rserpool::registrar::{Protocol, Registrar, Router, ShardId, Transport};

use crate::net;
use crate::tls::TlsServer;
use crate::{Endpoint, EnrpEndpoints, RuntimeConfig};
use mesh::Signal;
use shard::{Shard, Sockets};

/// Why the runtime could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(
        "io_uring is not available ({0}); the registrar needs Linux 5.19 or later with io_uring enabled (some container runtimes block it: allow io_uring_setup in the seccomp profile)"
    )]
    IoUringUnavailable(std::io::Error),
    #[error("cannot listen on {0}: {1}")]
    Listen(Endpoint, std::io::Error),
    #[error("cannot serve ENRP on {0}: {1}")]
    ListenEnrp(Endpoint, std::io::Error),
    #[error("{0}")]
    Tls(#[from] crate::tls::TlsError),
    #[error("{0}")]
    Other(String),
}

/// A running registrar. Dropping it stops the shards too.
#[derive(Debug)]
pub struct Handle {
    endpoints: Vec<Endpoint>,
    enrp_endpoints: Vec<Endpoint>,
    stop: Arc<AtomicBool>,
    signals: Arc<[Signal]>,
    metrics: MetricsSource,
    threads: Vec<JoinHandle<()>>,
    /// The credentials of the `tls://` endpoints, if any.
    tls: Option<Arc<TlsServer>>,
    /// The connection limits every shard reads.
    limits: Arc<limits::Limits>,
    /// The registrar settings posted to the shards by [`Handle::reload`].
    posted: Arc<reload::Posted>,
}

impl Handle {
    /// The endpoints actually bound (ports resolved). An SCTP endpoint is missing when
    /// the kernel has no SCTP.
    pub fn endpoints(&self) -> &[Endpoint] {
        &self.endpoints
    }

    /// The ENRP endpoints actually bound (ports resolved), served by shard 0. An SCTP
    /// endpoint is missing when the kernel has no SCTP.
    pub fn enrp_endpoints(&self) -> &[Endpoint] {
        &self.enrp_endpoints
    }

    /// The first bound TCP endpoint's address (for tests and tools).
    pub fn tcp_addr(&self) -> Option<SocketAddr> {
        self.endpoints.iter().find_map(|e| match e {
            Endpoint::Tcp(a) => Some(*a),
            Endpoint::Sctp(_) | Endpoint::Tls(_) => None,
        })
    }

    /// The first bound `tls://` endpoint's address (for tests and tools).
    pub fn tls_addr(&self) -> Option<SocketAddr> {
        self.endpoints.iter().find_map(|e| match e {
            Endpoint::Tls(a) => Some(*a),
            Endpoint::Sctp(_) | Endpoint::Tcp(_) => None,
        })
    }

    /// Rereads the TLS credentials (what SIGHUP does): new handshakes use them,
    /// connections already up keep theirs; on an error (logged) the old ones stay.
    /// `None` without TLS.
    pub fn reload_tls(&self) -> Option<Result<(), crate::tls::TlsError>> {
        self.tls.as_ref().map(|t| t.reload())
    }

    /// Puts new limits and registrar settings in force (what SIGHUP does with the
    /// config file): new connections and every shard's next message see them. Waits
    /// until every shard has taken the registrar's part (at most 2 s); an error says
    /// how many did not in time (they take it when they next run).
    pub fn reload(&self, r: Reload) -> Result<(), reload::NotTaken> {
        self.limits.set(r.limits);
        let rx = self.posted.post(r.registrar);
        for s in self.signals.iter() {
            s.wake();
        }
        let n = self.signals.len();
        match reload::confirmed(&rx, n) {
            done if done == n => Ok(()),
            done => Err(reload::NotTaken {
                late: n - done,
                shards: n,
            }),
        }
    }

    /// The connection limits in force.
    pub fn conn_limits(&self) -> ConnLimits {
        self.limits.config()
    }

    /// The TLS handshake and reload counts, without TLS `None`.
    pub fn tls_figures(&self) -> Option<crate::tls::TlsFigures> {
        self.tls.as_ref().map(|t| t.figures())
    }

    /// The first bound SCTP endpoint's address (for tests and tools).
    pub fn sctp_addr(&self) -> Option<SocketAddr> {
        self.endpoints.iter().find_map(|e| match e {
            Endpoint::Sctp(a) => Some(*a),
            Endpoint::Tcp(_) | Endpoint::Tls(_) => None,
        })
    }

    /// Collects the shards' metrics: snapshots taken by each shard between two loop
    /// turns, never locked or shared per message. Outlives the runtime (a stopped
    /// shard is reported missing).
    pub fn metrics_source(&self) -> MetricsSource {
        self.metrics.clone()
    }

    /// Serves Prometheus metrics over HTTP on `addr` (`GET /metrics`) from a background
    /// thread, until the returned server is dropped. A port of 0 picks a free one
    /// ([`crate::metrics::Server::addr`]).
    pub fn serve_metrics(&self, addr: SocketAddr) -> std::io::Result<crate::metrics::Server> {
        crate::metrics::serve(addr, self.metrics_source())
    }

    /// Stops every shard (closing all connections) and waits for them.
    pub fn shutdown(mut self) -> Result<(), StartError> {
        self.stop_and_join()
    }

    fn stop_and_join(&mut self) -> Result<(), StartError> {
        self.stop.store(true, Ordering::SeqCst);
        for s in self.signals.iter() {
            s.wake();
        }
        let mut panicked = Vec::new();
        for (i, t) in self.threads.drain(..).enumerate() {
            if t.join().is_err() {
                panicked.push(i);
            }
        }
        if panicked.is_empty() {
            Ok(())
        } else {
            Err(StartError::Other(format!("shard(s) {panicked:?} panicked")))
        }
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        if !self.threads.is_empty() {
            let _ = self.stop_and_join();
        }
    }
}

/// Starts the shards, without ENRP endpoints.
pub fn start(config: RuntimeConfig) -> Result<Handle, StartError> {
    start_with(config, EnrpEndpoints::default())
}

/// Starts the shards with the default [`ConnLimits`] and no TLS credentials; shard 0
/// also serves ENRP on `enrp`'s endpoints (see [`start_configured`]).
pub fn start_with(config: RuntimeConfig, enrp: EnrpEndpoints) -> Result<Handle, StartError> {
    start_configured(config, enrp, ConnLimits::default(), None)
}

/// [`start_configured`] with the default [`ConnLimits`].
pub fn start_with_tls(
    config: RuntimeConfig,
    enrp: EnrpEndpoints,
    tls: Option<crate::tls::TlsConfig>,
) -> Result<Handle, StartError> {
    start_configured(config, enrp, ConnLimits::default(), tls)
}

/// [`start_configured`] without TLS credentials.
pub fn start_limited(
    config: RuntimeConfig,
    enrp: EnrpEndpoints,
    limits: ConnLimits,
) -> Result<Handle, StartError> {
    start_configured(config, enrp, limits, None)
}

/// Starts the shards under the connection limits `limits`; shard 0 also serves ENRP on
/// `enrp`'s endpoints; `tls://` endpoints serve with the credentials of `tls`, loaded
/// here (an error names the file). The bound ENRP
/// endpoints are written into the registrar's ENRP settings
/// ([`rserpool::enrp::Config::endpoints`], which default settings are made for when
/// there are endpoints but no settings), `multicast` is set there when `enrp` has a
/// group, and for a wildcard endpoint `host_addrs` (unless given) is filled from the
/// interfaces.
pub fn start_configured(
    config: RuntimeConfig,
    enrp: EnrpEndpoints,
    limits: ConnLimits,
    tls: Option<crate::tls::TlsConfig>,
) -> Result<Handle, StartError> {
    let n = usize::from(config.shards);
    if n == 0 {
        return Err(StartError::Other("at least one shard is needed".into()));
    }
    net::ring::probe().map_err(StartError::IoUringUnavailable)?;
    let fd_limit = match net::socket::raise_fd_limit() {
        Ok(limit) => {
            tracing::debug!(limit, "open-file limit");
            Some(limit)
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot raise the open-file limit");
            None
        }
    };
    let limits = Arc::new(limits::Limits::new(limits, fd_limit));
    let tls = tls.map(TlsServer::load).transpose()?.map(Arc::new);
    let mut sockets: Vec<Sockets> = (0..n).map(|_| Sockets::default()).collect();
    for s in &mut sockets {
        s.tls_dial = tls.clone();
    }
    let mut sctp_missing = false;
    let endpoints = bind(
        &config.asap,
        Protocol::Asap,
        &mut sockets,
        &mut sctp_missing,
        tls.as_ref(),
    )?;
    let enrp_endpoints = bind(
        &enrp.listen,
        Protocol::Enrp,
        &mut sockets[..1],
        &mut sctp_missing,
        tls.as_ref(),
    )?;
    let mut registrar_config = config.registrar.clone();
    if !enrp.listen.is_empty() || enrp.announce_group.is_some() {
        if enrp_endpoints.is_empty() {
            tracing::warn!("no ENRP endpoint could be bound; peers cannot reach this registrar");
        }
        let settings = registrar_config.enrp.get_or_insert_with(Default::default);
        // A TLS endpoint is not advertised: peers would take it for plain TCP.
        settings.endpoints = enrp_endpoints
            .iter()
            .filter_map(|e| match *e {
                Endpoint::Sctp(addr) => Some(PeerAddress {
                    transport: Transport::Sctp,
                    addr,
                }),
                Endpoint::Tcp(addr) => Some(PeerAddress {
                    transport: Transport::Tcp,
                    addr,
                }),
                Endpoint::Tls(_) => None,
            })
            .collect();
        settings.multicast = enrp.announce_group.is_some();
        if settings.host_addrs.is_empty() {
            settings.host_addrs = host::for_endpoints(&enrp_endpoints);
            if !settings.host_addrs.is_empty() {
                tracing::debug!(addrs = ?settings.host_addrs, "host addresses for a wildcard ENRP endpoint");
            }
        }
    }
    if let Some(group) = enrp.announce_group {
        // RSPLIB takes a peer's ENRP port from its presence's UDP source port.
        let from_port = enrp_endpoints
            .first()
            .map(|e| e.addr().port())
            .ok_or_else(|| {
                StartError::Other(format!(
                    "the ENRP multicast group {group} needs a bound ENRP endpoint to send from"
                ))
            })?;
        let cannot = |e: std::io::Error| {
            StartError::Other(format!("cannot use the ENRP multicast group {group}: {e}"))
        };
        sockets[0].udp.presence =
            Some(net::udp::multicast_sender(group, from_port).map_err(cannot)?);
        sockets[0].udp.presence_rx = Some(net::udp::multicast_receiver(group).map_err(cannot)?);
        tracing::info!(%group, from_port, "ENRP presences to and from a multicast group");
    }
    if let Some(group) = config.announce_group {
        registrar_config.announce_transports = announced(&endpoints);
        let from_port = endpoints
            .iter()
            .find_map(|e| match e {
                Endpoint::Sctp(a) => Some(a.port()),
                Endpoint::Tcp(_) | Endpoint::Tls(_) => None,
            })
            .or_else(|| endpoints.first().map(|e| e.addr().port()))
            .unwrap_or(rserpool::wire::PORT_ASAP);
        let udp = net::udp::multicast_sender(group, from_port)
            .map_err(|e| StartError::Other(format!("cannot send announces to {group}: {e}")))?;
        sockets[0].udp.announce = Some(udp);
        tracing::info!(%group, from_port, "sending server announces");
    }

    let signals: Arc<[Signal]> = (0..n)
        .map(|_| Signal::new())
        .collect::<Result<_, _>>()
        .map_err(|e| StartError::Other(format!("eventfd: {e}")))?;
    let stop = Arc::new(AtomicBool::new(false));
    let router = Router::new(config.shards, routing_key(config.seed));
    let cores = allowed_cores();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let (scrape_tx, scrape_rx) = scrape::queues(n);

    let mut handle = Handle {
        endpoints,
        enrp_endpoints,
        stop: stop.clone(),
        signals: signals.clone(),
        metrics: MetricsSource::new(scrape_tx.into(), signals.clone(), limits.clone())
            .with_tls(tls.clone()),
        threads: Vec::with_capacity(n),
        tls,
        limits: limits.clone(),
        posted: Arc::new(reload::Posted::default()),
    };
    for ((i, port), scrape) in mesh::build(signals.clone(), mesh::QUEUE_CAPACITY)
        .into_iter()
        .enumerate()
        .zip(scrape_rx)
    {
        let registrar = Registrar::new(
            registrar_config.clone(),
            ShardId(i as u16),
            router.clone(),
            config.seed ^ i as u64,
        );
        let socks = std::mem::take(&mut sockets[i]);
        let (signals, stop, ready) = (signals.clone(), stop.clone(), ready_tx.clone());
        let pin = config.pin_cores.then(|| cores[i % cores.len()]);
        let io_mode = config.io_mode;
        let limits = limits.clone();
        let posted = handle.posted.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("shard-{i}"))
            .spawn(move || {
                let _span = tracing::info_span!("shard", id = i).entered();
                if let Some(core) = pin
                    && let Err(e) = affinity::set_thread_affinity([core])
                {
                    tracing::warn!(core, error = %e, "cannot pin shard to its core");
                }
                match Shard::new(
                    i, registrar, socks, port, scrape, signals, stop, io_mode, limits, posted,
                ) {
                    Ok(shard) => {
                        let _ = ready.send(Ok(()));
                        // Held no longer, so `start` sees a shard that dies starting.
                        drop(ready);
                        shard.run();
                    }
                    Err(e) => {
                        let _ = ready.send(Err(e));
                    }
                }
            });
        match spawned {
            Ok(t) => handle.threads.push(t),
            Err(e) => return Err(StartError::Other(format!("cannot spawn shard {i}: {e}"))),
        }
    }
    drop(ready_tx);
    for _ in 0..n {
        match ready_rx.recv() {
            Ok(Ok(())) => {}
            // `handle` stops the shards that did start when it is dropped.
            Ok(Err(e)) => return Err(StartError::IoUringUnavailable(e)),
            Err(_) => return Err(StartError::Other("a shard died while starting".into())),
        }
    }
    let list = |e: &[Endpoint]| {
        e.iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(" ")
    };
    tracing::info!(shards = n, endpoints = %list(&handle.endpoints), enrp = %list(&handle.enrp_endpoints), "registrar running");
    Ok(handle)
}

/// The ASAP transports to announce: every bound endpoint with a specific address. A
/// wildcard bind has no single address to name; receivers then use the announce's
/// source address (RFC 5352 §3.6, and RSPLIB always does).
fn announced(endpoints: &[Endpoint]) -> Vec<rserpool::wire::ServerTransport> {
    use rserpool::wire::{IpTransport, SctpTransport, ServerTransport, TransportUse};
    endpoints
        .iter()
        .filter_map(|e| match *e {
            Endpoint::Sctp(a) if !a.ip().is_unspecified() => {
                Some(ServerTransport::Sctp(SctpTransport {
                    port: a.port(),
                    transport_use: TransportUse::DATA_ONLY,
                    addresses: vec![a.ip()],
                }))
            }
            Endpoint::Tcp(a) if !a.ip().is_unspecified() => {
                Some(ServerTransport::Tcp(IpTransport {
                    port: a.port(),
                    reserved: 0,
                    address: a.ip(),
                }))
            }
            _ => None,
        })
        .collect()
}

/// The cores the calling thread (and so the process, at start) may run on, in
/// increasing order: its affinity mask, as `taskset`, systemd's `CPUAffinity=` or a
/// cpuset leave it. Shard *i* is pinned to the *i*-th of them (modulo their number),
/// so pinning stays inside the set the operator gave. All cores if it cannot be read.
fn allowed_cores() -> Vec<usize> {
    match affinity::get_thread_affinity() {
        Ok(cores) if !cores.is_empty() => cores,
        _ => (0..affinity::get_core_num().max(1)).collect(),
    }
}

/// The pool-ownership routing key: derived from the seed, but not equal to any shard's
/// policy seed (splitmix64 finaliser).
fn routing_key(seed: u64) -> u64 {
    let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Binds every endpoint of `protocol` once per shard of `sockets`; returns the
/// endpoints with their ports resolved. The first SCTP endpoint on a kernel without SCTP
/// logs a warning (`sctp_missing` then skips the others quietly).
fn bind(
    endpoints: &[Endpoint],
    protocol: Protocol,
    sockets: &mut [Sockets],
    sctp_missing: &mut bool,
    tls: Option<&Arc<TlsServer>>,
) -> Result<Vec<Endpoint>, StartError> {
    let refused = |ep: &Endpoint, e| match protocol {
        Protocol::Asap => StartError::Listen(ep.clone(), e),
        Protocol::Enrp => StartError::ListenEnrp(ep.clone(), e),
    };
    let mut bound = Vec::new();
    for ep in endpoints {
        match *ep {
            Endpoint::Tcp(addr) => {
                if addr.port() != 0 {
                    net::socket::check_port_free(addr).map_err(|e| refused(ep, e))?;
                }
                let mut addr = addr;
                for s in sockets.iter_mut() {
                    let l = net::socket::tcp_listener(addr).map_err(|e| refused(ep, e))?;
                    // A port of 0 resolves on the first bind; the others share it.
                    addr = l.local_addr().map_err(|e| refused(ep, e))?;
                    s.tcp.push((l, protocol));
                }
                bound.push(Endpoint::Tcp(addr));
            }
            Endpoint::Tls(addr) => {
                // The configuration check makes sure credentials come with a tls:// endpoint.
                let Some(tls) = tls else {
                    return Err(StartError::Other(format!("{ep} needs TLS credentials")));
                };
                if addr.port() != 0 {
                    net::socket::check_port_free(addr).map_err(|e| refused(ep, e))?;
                }
                let mut addr = addr;
                for s in sockets.iter_mut() {
                    let l = net::socket::tcp_listener(addr).map_err(|e| refused(ep, e))?;
                    addr = l.local_addr().map_err(|e| refused(ep, e))?;
                    s.tls.push((l, protocol, tls.clone()));
                }
                bound.push(Endpoint::Tls(addr));
            }
            Endpoint::Sctp(_) if *sctp_missing => {}
            Endpoint::Sctp(addr) => match bind_sctp(addr, protocol, sockets) {
                Ok(addr) => bound.push(Endpoint::Sctp(addr)),
                Err(e) if net::sctp::is_unsupported(&e) => {
                    tracing::warn!(error = %e, "this kernel has no SCTP; serving the other endpoints only");
                    *sctp_missing = true;
                }
                Err(e) => return Err(refused(ep, e)),
            },
        }
    }
    Ok(bound)
}

/// One SCTP socket per shard with SO_REUSEPORT (Linux 5.9+ spreads associations over
/// them); if a second socket cannot share the port, shard 0 serves SCTP alone.
fn bind_sctp(
    addr: SocketAddr,
    protocol: Protocol,
    sockets: &mut [Sockets],
) -> std::io::Result<SocketAddr> {
    if addr.port() != 0 {
        net::sctp::check_port_free(addr)?;
    }
    let first = net::sctp::listener(addr, true)?;
    let addr = net::sctp::local_addr(std::os::fd::AsRawFd::as_raw_fd(&first))?;
    sockets[0].sctp.push((first, protocol));
    for (i, s) in sockets.iter_mut().enumerate().skip(1) {
        match net::sctp::listener(addr, true) {
            Ok(fd) => s.sctp.push((fd, protocol)),
            Err(e) => {
                tracing::info!(shard = i, error = %e, "SCTP port not shared; shard 0 serves SCTP alone");
                break;
            }
        }
    }
    Ok(addr)
}
