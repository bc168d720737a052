//! The PE farm: thousands of simulated pool elements on one thread and one io_uring.
//!
//! Every PE is a real registration on a real connection (TCP) or association (SCTP)
//! that answers keep-alives as they arrive. One thread drives them all: each link keeps
//! one receive in flight, sends go out one batch at a time per link, and the thread
//! sleeps in the ring between messages. Commands (crash, hang, revive, deregister,
//! register) arrive over a channel with an eventfd wake-up; what happens comes back as
//! [`Notice`]s.
//!
//! Over TCP every connection the farm opens also listens on its local port (see
//! `port`): when a registrar takes the PEs of a dead peer over, it connects there and
//! sends each PE a keep-alive with the home flag (RFC 5353 §3.5.2). The PE answers on
//! that connection, which carries it from then on ([`Notice::Adopted`]).

use std::io;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam::channel::{self, Receiver, RecvTimeoutError, Sender};
use rserpool::wire::{CauseCode, PolicyParam};
use rserpool::{PoolElementId, PoolHandle, RegistrarId};
use rserpool_shards::net::socket::EventFd;

use crate::conn::Target;

mod engine;
mod link;
mod port;

use engine::Engine;

/// How long start-up waits for every PE to be registered.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// What to simulate.
#[derive(Clone, Debug)]
pub struct FarmConfig {
    pub target: Target,
    pub pool: PoolHandle,
    /// Pool elements.
    pub pes: u32,
    /// Connections the PEs share, round robin; 0 gives each PE its own (as RSPLIB's
    /// PEs have), which `crash` needs to hit one PE at a time.
    pub links: u32,
    /// PE identifier of the first PE; the others follow.
    pub first_id: u32,
    pub policy: PolicyParam,
    /// Each PE in a pool of its own, `{pool}-{index}`; otherwise all in `pool`.
    pub pool_per_pe: bool,
    /// Register every PE at start (and return once all are); otherwise each waits for
    /// [`Command::Register`].
    pub register_at_start: bool,
    /// Over TCP, listen on the local port of every connection the farm opens, so that a
    /// registrar taking the PEs over can reach them there. If a listener cannot be made
    /// the farm says why on standard error and goes on without ([`Farm::listening`]).
    pub listen: bool,
}

impl FarmConfig {
    /// `pes` PEs in `pool` at `target`, one connection each, round robin, registered at
    /// start, listening for takeovers.
    pub fn new(target: Target, pool: PoolHandle, pes: u32) -> Self {
        Self {
            target,
            pool,
            pes,
            links: 0,
            first_id: 1,
            policy: PolicyParam::round_robin(),
            pool_per_pe: false,
            register_at_start: true,
            listen: true,
        }
    }

    /// The pool handle of PE `index`.
    pub fn handle_of(&self, index: usize) -> PoolHandle {
        if self.pool_per_pe {
            let mut h = self.pool.as_bytes().to_vec();
            h.extend_from_slice(format!("-{index}").as_bytes());
            PoolHandle::new(&h)
        } else {
            self.pool.clone()
        }
    }
}

/// Something to do to one PE (by index, `0..pes`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    /// Close the PE's connection as a crashed process's kernel would (TCP FIN, SCTP
    /// SHUTDOWN); every PE sharing it goes too.
    Crash(usize),
    /// Stop answering keep-alives (and re-registering).
    Hang(usize),
    /// Undo a crash or hang: reconnect if needed, answer again, and register.
    Revive(usize),
    /// Send a deregistration.
    Deregister(usize),
    /// Send a registration (a re-registration when registered).
    Register(usize),
    /// Re-register with new policy values (RFC 5352 §3.1 R7: e.g. a new load).
    SetPolicy(usize, PolicyParam),
}

/// What happened, reported by the farm thread.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Notice {
    /// The farm is connected; `listening`: every TCP connection it opened has a
    /// listener on its local port.
    Started {
        listening: bool,
    },
    /// The registrar acknowledged a registration (`at`: when the farm read the answer).
    Registered {
        pe: usize,
        latency: Duration,
        at: Instant,
    },
    Rejected {
        pe: usize,
        cause: Option<CauseCode>,
    },
    Deregistered {
        pe: usize,
        latency: Duration,
        at: Instant,
    },
    /// The connection was closed (`at`: just before the close).
    Crashed {
        pe: usize,
        at: Instant,
    },
    /// The PE stopped answering at `at`.
    Hung {
        pe: usize,
        at: Instant,
    },
    /// The registrar (or the network) closed a link the farm had not crashed.
    LinkLost {
        pe: usize,
    },
    /// `registrar` took the PE over (RFC 5353 §3.5.2): the PE answered its keep-alive
    /// with the home flag at `at`, on the connection that carries it from now on.
    Adopted {
        pe: usize,
        registrar: RegistrarId,
        at: Instant,
    },
}

/// Counters kept by the farm thread.
#[derive(Clone, Copy, Debug, Default)]
pub struct FarmStats {
    pub keep_alives_answered: u64,
    pub keep_alives_ignored: u64,
    pub messages_in: u64,
    pub undecodable: u64,
    /// Connections registrars opened to the PEs' ports.
    pub accepted: u64,
    /// Home-flag keep-alives answered (PEs taken over, counting repeats).
    pub adopted: u64,
}

/// A running farm; dropping it stops the thread and closes every link.
#[derive(Debug)]
pub struct Farm {
    commands: Sender<Control>,
    notices: Receiver<Notice>,
    wake: Arc<EventFd>,
    thread: Option<JoinHandle<io::Result<FarmStats>>>,
    /// PE identifiers by index.
    pub ids: Vec<PoolElementId>,
    /// Registration latency of every PE at start-up.
    pub registration: Vec<Duration>,
    /// Every TCP connection the farm opened listens on its local port (see
    /// [`FarmConfig::listen`]).
    pub listening: bool,
}

#[derive(Debug)]
enum Control {
    Do(Command),
    Stop,
}

impl Farm {
    /// Connects, registers every PE (a few at a time, unless told not to) and returns
    /// once all are registered; a rejection or a lost link is an error.
    pub fn start(config: FarmConfig) -> io::Result<Self> {
        let (commands, command_rx) = channel::unbounded();
        let (notice_tx, notices) = channel::unbounded();
        let wake = Arc::new(EventFd::new()?);
        let ids: Vec<PoolElementId> = (0..config.pes)
            .map(|i| PoolElementId(config.first_id.wrapping_add(i)))
            .collect();
        let thread_wake = wake.clone();
        let thread_config = config.clone();
        // The engine holds raw socket buffers, so it is built on its own thread.
        let thread = std::thread::Builder::new()
            .name("pe-farm".into())
            .spawn(move || {
                Engine::connect(&thread_config)?.run(&command_rx, &notice_tx, &thread_wake)
            })?;
        let mut farm = Self {
            commands,
            notices,
            wake,
            thread: Some(thread),
            ids,
            registration: Vec::with_capacity(config.pes as usize),
            listening: false,
        };
        let deadline = Instant::now() + START_TIMEOUT;
        let mut started = false;
        let wanted = if config.register_at_start {
            config.pes as usize
        } else {
            0
        };
        while !started || farm.registration.len() < wanted {
            let left = deadline.saturating_duration_since(Instant::now());
            match farm.notices.recv_timeout(left) {
                Ok(Notice::Started { listening }) => {
                    started = true;
                    farm.listening = listening;
                }
                Ok(Notice::Registered { latency, .. }) => farm.registration.push(latency),
                Ok(Notice::Rejected { pe, cause }) => {
                    return Err(io::Error::other(format!(
                        "the registrar rejected PE {} (cause {cause:?})",
                        farm.ids[pe].0
                    )));
                }
                Ok(Notice::LinkLost { pe }) => {
                    return Err(io::Error::other(format!(
                        "the registrar closed the connection of PE {} during registration",
                        farm.ids[pe].0
                    )));
                }
                Ok(_) => {}
                Err(RecvTimeoutError::Timeout) => {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!(
                            "only {} of {} PEs registered within {START_TIMEOUT:?}",
                            farm.registration.len(),
                            config.pes
                        ),
                    ));
                }
                Err(RecvTimeoutError::Disconnected) => return Err(farm.join_error()),
            }
        }
        Ok(farm)
    }

    /// Hands `command` to the farm thread.
    pub fn send(&self, command: Command) {
        if self.commands.send(Control::Do(command)).is_ok() {
            self.wake.notify();
        }
    }

    /// The notices reported so far and from now on.
    pub fn notices(&self) -> &Receiver<Notice> {
        &self.notices
    }

    /// Stops the thread, closing every link, and returns its counters.
    pub fn stop(mut self) -> io::Result<FarmStats> {
        self.halt()
    }

    fn halt(&mut self) -> io::Result<FarmStats> {
        let _ = self.commands.send(Control::Stop);
        self.wake.notify();
        match self.thread.take() {
            Some(t) => t
                .join()
                .map_err(|_| io::Error::other("the PE farm thread panicked"))?,
            None => Ok(FarmStats::default()),
        }
    }

    fn join_error(&mut self) -> io::Error {
        match self.halt() {
            Err(e) => e,
            Ok(_) => io::Error::other("the PE farm stopped"),
        }
    }
}

impl Drop for Farm {
    fn drop(&mut self) {
        let _ = self.halt();
    }
}
