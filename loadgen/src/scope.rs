//! A scope of registrar processes on loopback: `rserpool-registrar` started K times with
//! ASAP and ENRP over TCP, each with every other one as a static peer, for the
//! scenarios that need several registrars or one to kill.
//!
//! The processes die with the scope: dropping it kills them, each is started with a
//! parent-death signal (so they go even if this process is killed), and
//! [`Scope::kill_on_termination`] kills them on SIGINT or SIGTERM before exiting.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use rserpool::RegistrarId;
use rserpool::enrp::Config as EnrpConfig;

use crate::conn::Target;

/// The registrar binary's name.
pub const REGISTRAR_BINARY: &str = "rserpool-registrar";
/// How long a started registrar may take to accept ASAP connections.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// The registrars' ENRP timers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Timers {
    /// The registrar's own defaults (RSPLIB's).
    Default,
    /// Heartbeat 100 ms; max-time-last-heard, max-time-no-response, takeover expiry
    /// and mentor discovery 200 ms.
    Fast,
}

impl Timers {
    /// The timers in effect (the rest of the ENRP settings as the registrar's defaults).
    pub fn config(self) -> EnrpConfig {
        match self {
            Self::Default => EnrpConfig::default(),
            Self::Fast => EnrpConfig {
                heartbeat: Duration::from_millis(100),
                max_time_last_heard: Duration::from_millis(200),
                max_time_no_response: Duration::from_millis(200),
                takeover_expiry: Duration::from_millis(200),
                mentor_discovery: Duration::from_millis(200),
                ..EnrpConfig::default()
            },
        }
    }

    /// The registrar's flags for these timers (none for its defaults).
    fn flags(self) -> Vec<String> {
        if self == Self::Default {
            return Vec::new();
        }
        let c = self.config();
        let ms = |d: Duration| d.as_millis().to_string();
        [
            ("--peer-heartbeat-cycle", c.heartbeat),
            ("--peer-max-time-last-heard", c.max_time_last_heard),
            ("--peer-max-time-no-response", c.max_time_no_response),
            ("--takeover-expiry", c.takeover_expiry),
            ("--mentor-discovery-timeout", c.mentor_discovery),
        ]
        .into_iter()
        .flat_map(|(flag, d)| [flag.to_owned(), ms(d)])
        .collect()
    }
}

/// What to start.
#[derive(Clone, Debug)]
pub struct ScopeConfig {
    pub binary: PathBuf,
    pub registrars: usize,
    pub shards: u16,
    pub timers: Timers,
    pub keep_alive_interval: Duration,
    pub keep_alive_timeout: Duration,
    /// The registrars' --resolution-items-limit (their default when `None`).
    pub resolution_items_limit: Option<u32>,
    /// The registrars' --log-level.
    pub log_level: String,
}

impl ScopeConfig {
    /// `registrars` registrars of 1 shard each with default timers and 1 s keep-alives.
    pub fn new(binary: PathBuf, registrars: usize) -> Self {
        Self {
            binary,
            registrars,
            shards: 1,
            timers: Timers::Default,
            keep_alive_interval: Duration::from_secs(1),
            keep_alive_timeout: Duration::from_secs(1),
            resolution_items_limit: None,
            log_level: "info".into(),
        }
    }
}

#[derive(Debug)]
struct Member {
    id: RegistrarId,
    asap: SocketAddr,
    child: Option<Child>,
    log: PathBuf,
}

/// The running registrars.
#[derive(Debug)]
pub struct Scope {
    members: Vec<Member>,
    logs: PathBuf,
    keep_logs: bool,
    /// Process IDs still running, for the termination watcher.
    live: Arc<Mutex<Vec<u32>>>,
}

/// `rserpool-registrar` next to this executable (cargo puts every binary of the
/// workspace in one directory), unless `explicit` names one.
pub fn registrar_binary(explicit: Option<&Path>) -> io::Result<PathBuf> {
    if let Some(p) = explicit {
        return if p.is_file() {
            Ok(p.to_owned())
        } else {
            Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("no registrar binary at {}", p.display()),
            ))
        };
    }
    let exe = std::env::current_exe()?;
    let p = exe.with_file_name(REGISTRAR_BINARY);
    if p.is_file() {
        Ok(p)
    } else {
        Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!(
                "no {REGISTRAR_BINARY} next to {} (build it: cargo build -p rserpool-shards, \
                 with --release for a release loadgen; or give --registrar-binary PATH)",
                exe.display()
            ),
        ))
    }
}

impl Scope {
    /// Starts every registrar and returns once each accepts ASAP connections. Registrar
    /// `i` has server ID `i + 1`.
    pub fn start(config: &ScopeConfig) -> io::Result<Self> {
        let k = config.registrars;
        if !(1..=64).contains(&k) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("a scope of {k} registrars: 1..=64 please"),
            ));
        }
        let ports = free_ports(2 * k)?;
        let addr = |port: u16| SocketAddr::from(([127, 0, 0, 1], port));
        let logs = std::env::temp_dir().join(format!(
            "rserpool-scope-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos())
        ));
        std::fs::create_dir_all(&logs)?;
        let mut scope = Self {
            members: Vec::with_capacity(k),
            logs,
            keep_logs: false,
            live: Arc::new(Mutex::new(Vec::new())),
        };
        for i in 0..k {
            let (asap, enrp) = (addr(ports[2 * i]), addr(ports[2 * i + 1]));
            let log = scope.logs.join(format!("registrar-{i}.log"));
            let mut cmd = Command::new(&config.binary);
            cmd.arg("--id")
                .arg((i + 1).to_string())
                .arg("--asap")
                .arg(format!("tcp://{asap}"))
                .arg("--enrp")
                .arg(format!("tcp://{enrp}"))
                .args(["--allow-loopback", "--no-pin", "--shards"])
                .arg(config.shards.to_string())
                .arg("--keep-alive-interval")
                .arg(config.keep_alive_interval.as_millis().to_string())
                .arg("--keep-alive-timeout")
                .arg(config.keep_alive_timeout.as_millis().to_string())
                .arg("--log-level")
                .arg(&config.log_level)
                .args(config.timers.flags());
            if let Some(n) = config.resolution_items_limit {
                cmd.arg("--resolution-items-limit").arg(n.to_string());
            }
            for j in (0..k).filter(|&j| j != i) {
                cmd.arg("--peer")
                    .arg(format!("tcp://{}", addr(ports[2 * j + 1])));
            }
            let out = File::create(&log)?;
            cmd.stdin(Stdio::null())
                .stdout(out.try_clone()?)
                .stderr(out);
            // Killed with us, however we end; SIGINT and SIGTERM not blocked in the
            // child even if we block them (see `kill_on_termination`).
            rserpool_shards::net::process::die_with_parent(&mut cmd);
            let child = cmd.spawn().map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("starting {}: {e}", config.binary.display()),
                )
            })?;
            scope.live.lock().push(child.id());
            scope.members.push(Member {
                id: RegistrarId((i + 1) as u32),
                asap,
                child: Some(child),
                log,
            });
        }
        for i in 0..k {
            scope.await_listening(i)?;
        }
        Ok(scope)
    }

    fn await_listening(&mut self, i: usize) -> io::Result<()> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if TcpStream::connect_timeout(&self.members[i].asap, Duration::from_millis(200)).is_ok()
            {
                return Ok(());
            }
            let exited = match self.members[i].child.as_mut() {
                Some(c) => c.try_wait()?,
                None => None,
            };
            if let Some(status) = exited {
                self.keep_logs = true;
                return Err(io::Error::other(format!(
                    "registrar {i} exited at start ({status}):\n{}",
                    self.log_tail(i, 20)
                )));
            }
            if Instant::now() > deadline {
                self.keep_logs = true;
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "registrar {i} did not accept connections on {} within {START_TIMEOUT:?}:\n{}",
                        self.members[i].asap,
                        self.log_tail(i, 20)
                    ),
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn len(&self) -> usize {
        self.members.len()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Where registrar `i` serves ASAP.
    pub fn asap(&self, i: usize) -> Target {
        Target::tcp(self.members[i].asap)
    }

    /// Registrar `i`'s server ID.
    pub fn id(&self, i: usize) -> RegistrarId {
        self.members[i].id
    }

    /// Kills registrar `i` with SIGKILL and reaps it; returns the moment just before
    /// the signal went.
    pub fn kill(&mut self, i: usize) -> io::Result<Instant> {
        let Some(mut child) = self.members[i].child.take() else {
            return Err(io::Error::other(format!("registrar {i} is not running")));
        };
        let pid = child.id();
        let at = Instant::now();
        child.kill()?;
        self.live.lock().retain(|&p| p != pid);
        child.wait()?;
        Ok(at)
    }

    /// The last `lines` lines of registrar `i`'s log.
    pub fn log_tail(&self, i: usize, lines: usize) -> String {
        let mut text = String::new();
        if let Ok(mut f) = File::open(&self.members[i].log) {
            // The tail is in the last 64 KiB or so.
            let len = f.metadata().map_or(0, |m| m.len());
            let _ = f.seek(SeekFrom::Start(len.saturating_sub(65_536)));
            let _ = f.read_to_string(&mut text);
        }
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// The directory of the registrars' logs (`registrar-I.log`).
    pub fn logs(&self) -> &Path {
        &self.logs
    }

    /// Keeps the logs when the scope goes (they are removed otherwise).
    pub fn keep_logs(&mut self) {
        self.keep_logs = true;
    }

    /// On SIGINT or SIGTERM: kill every registrar still running, say where the logs
    /// are, and exit (status 130). Needs the signals blocked in every thread
    /// (`rserpool_shards::net::signals::block_termination` before any thread starts).
    pub fn kill_on_termination(&self) {
        let (live, logs) = (self.live.clone(), self.logs.clone());
        std::thread::spawn(move || {
            if let Ok(sig) = rserpool_shards::net::signals::wait() {
                for &pid in live.lock().iter() {
                    // Our unreaped children: none of the PIDs was reused.
                    let _ = rserpool_shards::net::process::kill_child(pid);
                }
                eprintln!(
                    "rserpool-loadgen: signal {sig}: registrars killed; their logs are in {}",
                    logs.display()
                );
                std::process::exit(130);
            }
        });
    }
}

impl Drop for Scope {
    fn drop(&mut self) {
        for m in &mut self.members {
            if let Some(mut c) = m.child.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
        self.live.lock().clear();
        if !self.keep_logs {
            let _ = std::fs::remove_dir_all(&self.logs);
        }
    }
}

/// `n` distinct TCP ports free on loopback right now.
fn free_ports(n: usize) -> io::Result<Vec<u16>> {
    let held = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<io::Result<Vec<_>>>()?;
    held.iter()
        .map(|l| l.local_addr().map(|a| a.port()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_timers_become_flags_and_default_ones_none() {
        assert!(Timers::Default.flags().is_empty());
        let f = Timers::Fast.flags();
        assert_eq!(f.len(), 10);
        assert_eq!(f[0..2], ["--peer-heartbeat-cycle", "100"]);
        assert!(f.windows(2).any(|w| w == ["--takeover-expiry", "200"]));
    }

    #[test]
    fn free_ports_are_distinct() {
        let mut p = free_ports(8).unwrap();
        p.sort_unstable();
        p.dedup();
        assert_eq!(p.len(), 8);
    }
}
