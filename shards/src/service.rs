//! Running as a systemd service (`Type=notify`, `WatchdogSec=`): the `sd_notify(3)`
//! protocol without libsystemd, on a std unix datagram socket.
//!
//! - `READY=1` only once every shard answered a scrape ([`MetricsSource::collect`]): a
//!   shard that answers has its ring, sockets and registrar running, so a service
//!   ordered `After=` the registrar finds it serving.
//! - The watchdog asks every shard the same way every half `WATCHDOG_USEC` and sends
//!   `WATCHDOG=1` only when all answered within that half. A stuck shard (a loop turn
//!   that never ends) stops the feeding, so systemd restarts the registrar, even though
//!   the process and its other shards are alive; the shard is named in a warning.
//! - `RELOADING=1` … `READY=1` around a SIGHUP reload, `STOPPING=1` at shutdown.
//!
//! Without `$NOTIFY_SOCKET` (not under systemd, or `Type=simple`) all of this is off and
//! costs nothing. The protocol: one datagram of `KEY=VALUE` lines to the socket named
//! by `$NOTIFY_SOCKET`, a path, or an abstract name when it starts with '@'.

use std::ffi::OsStr;
use std::io;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tracing::{info, warn};

use crate::runtime::MetricsSource;

/// How long one readiness check waits for the shards before it asks again.
const READY_POLL: Duration = Duration::from_secs(1);

/// A connection to the service manager's notification socket.
#[derive(Debug)]
pub struct Notifier {
    socket: UnixDatagram,
    addr: SocketAddr,
}

impl Notifier {
    /// The socket named by `$NOTIFY_SOCKET`; `Ok(None)` when it is not set.
    pub fn from_env() -> io::Result<Option<Self>> {
        match std::env::var_os("NOTIFY_SOCKET") {
            Some(name) if !name.is_empty() => Self::new(&name).map(Some),
            _ => Ok(None),
        }
    }

    /// The socket `name`: an absolute path, or an abstract name when it starts with '@'
    /// (systemd's spelling of the leading NUL byte).
    pub fn new(name: &OsStr) -> io::Result<Self> {
        let bytes = name.as_bytes();
        let addr = match bytes.first() {
            Some(b'@') => SocketAddr::from_abstract_name(&bytes[1..])?,
            Some(b'/') => SocketAddr::from_pathname(name)?,
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("NOTIFY_SOCKET {name:?} is neither a path nor '@'-abstract"),
                ));
            }
        };
        Ok(Self {
            socket: UnixDatagram::unbound()?,
            addr,
        })
    }

    /// Another sender to the same socket (for another thread).
    pub fn try_clone(&self) -> io::Result<Self> {
        Ok(Self {
            socket: self.socket.try_clone()?,
            addr: self.addr.clone(),
        })
    }

    /// Sends `state`, newline-separated `KEY=VALUE` assignments, in one datagram.
    pub fn notify(&self, state: &str) -> io::Result<()> {
        self.socket
            .send_to_addr(state.as_bytes(), &self.addr)
            .map(drop)
    }
}

/// The watchdog period systemd asks for: `WATCHDOG_USEC` (`usec`) when it is meant for
/// this process (`WATCHDOG_PID` (`pid`) unset or `our_pid`); `None` when off or
/// unreadable. systemd expects a ping at least once per period.
pub fn watchdog_period(usec: Option<&str>, pid: Option<&str>, our_pid: u32) -> Option<Duration> {
    if let Some(pid) = pid
        && pid.trim().parse::<u32>().ok()? != our_pid
    {
        return None;
    }
    let usec = usec?.trim().parse::<u64>().ok()?;
    (usec > 0).then(|| Duration::from_micros(usec))
}

/// The shards that did not answer a scrape: those whose entry is `None`. Empty: every
/// shard serves, and the watchdog may be fed.
pub fn silent_shards<T>(answers: &[Option<T>]) -> Vec<usize> {
    answers
        .iter()
        .enumerate()
        .filter_map(|(i, a)| a.is_none().then_some(i))
        .collect()
}

/// One watchdog round: asks every shard of `source` for a snapshot, waits at most
/// `timeout`, and returns the shards that did not answer (a stopped shard at once).
/// Empty: feed the watchdog.
pub fn silent(source: &MetricsSource, timeout: Duration) -> Vec<usize> {
    silent_shards(&source.collect(timeout))
}

/// The registrar's side of the service manager: readiness, watchdog, reload, stop.
/// Inert when not started by systemd with `Type=notify`.
#[derive(Debug)]
pub struct Service {
    notifier: Option<Notifier>,
    watchdog: Option<(Sender<()>, JoinHandle<()>)>,
}

impl Service {
    /// Reads `$NOTIFY_SOCKET` and `$WATCHDOG_USEC`; when set, waits until every shard
    /// of `source` answers, sends `READY=1`, and starts the watchdog thread. A bad
    /// `$NOTIFY_SOCKET` is logged and the service runs without notifications (systemd
    /// then times the start out, which names the problem in its status).
    pub fn start(source: &MetricsSource) -> Self {
        let notifier = match Notifier::from_env() {
            Ok(n) => n,
            Err(e) => {
                warn!(error = %e, "cannot notify the service manager");
                None
            }
        };
        let Some(notifier) = notifier else {
            return Self {
                notifier: None,
                watchdog: None,
            };
        };
        wait_until_serving(source);
        send(&notifier, "READY=1\nSTATUS=serving");
        info!("every shard serves; READY=1 sent to the service manager");
        let period = watchdog_period(
            std::env::var("WATCHDOG_USEC").ok().as_deref(),
            std::env::var("WATCHDOG_PID").ok().as_deref(),
            std::process::id(),
        );
        let watchdog = period.and_then(|p| match spawn_watchdog(&notifier, source.clone(), p) {
            Ok(w) => Some(w),
            Err(e) => {
                warn!(error = %e, "cannot start the watchdog thread");
                None
            }
        });
        Self {
            notifier: Some(notifier),
            watchdog,
        }
    }

    /// Before a reload (SIGHUP).
    pub fn reloading(&self) {
        if let Some(n) = &self.notifier {
            send(n, "RELOADING=1");
        }
    }

    /// After a reload, whatever its outcome: the registrar serves on.
    pub fn reloaded(&self) {
        if let Some(n) = &self.notifier {
            send(n, "READY=1");
        }
    }

    /// At shutdown, before the shards stop: `STOPPING=1`, and the watchdog ends (it
    /// would take the stopping shards for stuck ones).
    pub fn stopping(mut self) {
        if let Some(n) = &self.notifier {
            send(n, "STOPPING=1");
        }
        if let Some((stop, thread)) = self.watchdog.take() {
            drop(stop);
            let _ = thread.join();
        }
    }
}

fn send(notifier: &Notifier, state: &str) {
    if let Err(e) = notifier.notify(state) {
        warn!(error = %e, state, "cannot notify the service manager");
    }
}

/// Asks every shard until all answer in one round. Shards answer between two loop
/// turns, so this returns as soon as they run; systemd's start timeout bounds a shard
/// that never does.
fn wait_until_serving(source: &MetricsSource) {
    loop {
        let missing = silent(source, READY_POLL);
        if missing.is_empty() {
            return;
        }
        warn!(shards = ?missing, "not ready: shards did not answer within {READY_POLL:?}");
    }
}

/// Every `period / 2`: ask every shard, allowing half of that for the answers; feed
/// the watchdog only if all answered. Ends when the returned sender is dropped.
fn spawn_watchdog(
    notifier: &Notifier,
    source: MetricsSource,
    period: Duration,
) -> io::Result<(Sender<()>, JoinHandle<()>)> {
    let notifier = notifier.try_clone()?;
    let (stop, stopped) = mpsc::channel::<()>();
    let interval = period / 2;
    let thread = std::thread::Builder::new()
        .name("watchdog".into())
        .spawn(move || {
            info!(period = ?period, "watchdog: pinging every shard every {interval:?}");
            loop {
                let round = Instant::now();
                let missing = silent(&source, interval / 2);
                if missing.is_empty() {
                    send(&notifier, "WATCHDOG=1");
                } else {
                    warn!(
                        shards = ?missing,
                        "watchdog: shards did not answer within {:?}; not feeding the watchdog",
                        interval / 2
                    );
                }
                let next = interval.saturating_sub(round.elapsed());
                match stopped.recv_timeout(next) {
                    Err(RecvTimeoutError::Timeout) => {}
                    Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
                }
            }
        })?;
    Ok((stop, thread))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A socket to play the service manager, under a fresh temporary directory.
    fn manager(name: &str) -> (UnixDatagram, std::path::PathBuf) {
        let dir =
            std::env::temp_dir().join(format!("rserpool-notify-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("notify");
        let socket = UnixDatagram::bind(&path).unwrap();
        // Only so that a broken sender fails the test instead of hanging it.
        socket
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        (socket, path)
    }

    fn recv(socket: &UnixDatagram) -> String {
        let mut buf = [0u8; 512];
        let n = socket.recv(&mut buf).unwrap();
        String::from_utf8(buf[..n].to_vec()).unwrap()
    }

    #[test]
    fn ready_arrives_on_a_path_socket() {
        let (socket, path) = manager("path");
        let n = Notifier::new(path.as_os_str()).unwrap();
        n.notify("READY=1").unwrap();
        assert_eq!(recv(&socket), "READY=1");
        n.notify("WATCHDOG=1").unwrap();
        assert_eq!(recv(&socket), "WATCHDOG=1");
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }

    #[test]
    fn ready_arrives_on_an_abstract_socket() {
        let name = format!("rserpool-notify-test-{}", std::process::id());
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let socket = UnixDatagram::bind_addr(&addr).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let n = Notifier::new(OsStr::new(&format!("@{name}"))).unwrap();
        n.notify("READY=1\nSTATUS=serving").unwrap();
        assert_eq!(recv(&socket), "READY=1\nSTATUS=serving");
    }

    #[test]
    fn socket_names_other_than_paths_and_abstract_are_refused() {
        for bad in ["", "relative/path", "vsock:2:1234"] {
            assert!(Notifier::new(OsStr::new(bad)).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn no_socket_is_not_an_error() {
        // The test runner is not a systemd service (unless CI runs under one, then the
        // socket is real and Some is right too).
        if std::env::var_os("NOTIFY_SOCKET").is_none() {
            assert!(Notifier::from_env().unwrap().is_none());
        }
    }

    #[test]
    fn watchdog_period_is_for_this_process_only() {
        let us = 4242;
        let p = |usec, pid| watchdog_period(usec, pid, us);
        assert_eq!(p(Some("10000000"), None), Some(Duration::from_secs(10)));
        assert_eq!(
            p(Some("10000000"), Some("4242")),
            Some(Duration::from_secs(10))
        );
        // Meant for another process (a parent's variables inherited).
        assert_eq!(p(Some("10000000"), Some("1")), None);
        assert_eq!(p(Some("10000000"), Some("x")), None);
        assert_eq!(p(None, None), None);
        assert_eq!(p(Some("0"), None), None);
        assert_eq!(p(Some("-5"), None), None);
        assert_eq!(p(Some("ten"), None), None);
    }

    #[test]
    fn watchdog_is_fed_only_when_every_shard_answered() {
        assert!(silent_shards(&[Some(()), Some(()), Some(())]).is_empty());
        assert!(silent_shards::<()>(&[]).is_empty());
        assert_eq!(silent_shards(&[Some(()), None, Some(())]), [1]);
        assert_eq!(silent_shards::<()>(&[None, None]), [0, 1]);
    }
}
