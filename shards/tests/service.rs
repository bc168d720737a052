//! The binary as systemd runs it with `Type=notify` and `WatchdogSec=`, without systemd:
//! the test binds the notification socket and reads what the registrar sends.

use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::time::Duration;

use rserpool::RegistrarId;
use rserpool::registrar::Config;
use rserpool_shards::{Endpoint, RuntimeConfig, runtime, service};

/// Plays the service manager: a datagram socket in a fresh directory.
struct Manager {
    socket: UnixDatagram,
    dir: std::path::PathBuf,
}

impl Manager {
    fn new(name: &str) -> Self {
        let dir =
            std::env::temp_dir().join(format!("rserpool-service-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let socket = UnixDatagram::bind(dir.join("notify")).unwrap();
        // Only so that a registrar that never notifies fails the test instead of hanging it.
        socket
            .set_read_timeout(Some(Duration::from_secs(60)))
            .unwrap();
        Self { socket, dir }
    }

    fn path(&self) -> std::path::PathBuf {
        self.dir.join("notify")
    }

    /// The next notification other than a watchdog ping.
    fn next_state(&self) -> String {
        loop {
            let s = self.recv();
            if s != "WATCHDOG=1" {
                return s;
            }
        }
    }

    fn recv(&self) -> String {
        let mut buf = [0u8; 512];
        let n = self.socket.recv(&mut buf).expect("a notification");
        String::from_utf8(buf[..n].to_vec()).unwrap()
    }
}

impl Drop for Manager {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn signal(pid: u32, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok);
}

#[test]
fn notifies_ready_feeds_the_watchdog_and_reports_reload_and_stop() {
    let manager = Manager::new("notify");
    let mut child = Command::new(env!("CARGO_BIN_EXE_rserpool-registrar"))
        .args(["--shards", "2", "--no-pin", "--asap", "tcp://127.0.0.1:0"])
        .args(["--log-level", "warn"])
        .env("NO_COLOR", "1")
        .env("NOTIFY_SOCKET", manager.path())
        // 200 ms: pings every 100 ms.
        .env("WATCHDOG_USEC", "200000")
        .env_remove("WATCHDOG_PID")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();

    // READY=1 first: nothing before the shards serve.
    let first = manager.recv();
    assert!(first.lines().any(|l| l == "READY=1"), "{first:?}");
    // Then the watchdog is fed (every shard answered).
    assert_eq!(manager.recv(), "WATCHDOG=1");
    assert_eq!(manager.recv(), "WATCHDOG=1");

    signal(pid, "-HUP");
    assert_eq!(manager.next_state(), "RELOADING=1");
    assert_eq!(manager.next_state(), "READY=1");

    signal(pid, "-TERM");
    assert_eq!(manager.next_state(), "STOPPING=1");
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
}

#[test]
fn a_watchdog_meant_for_another_process_is_not_fed() {
    let manager = Manager::new("other-pid");
    let mut child = Command::new(env!("CARGO_BIN_EXE_rserpool-registrar"))
        .args(["--shards", "1", "--no-pin", "--asap", "tcp://127.0.0.1:0"])
        .args(["--log-level", "warn"])
        .env("NOTIFY_SOCKET", manager.path())
        .env("WATCHDOG_USEC", "200000")
        // systemd sets WATCHDOG_PID to the main process; pid 1 is never us.
        .env("WATCHDOG_PID", "1")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let first = manager.recv();
    assert!(first.lines().any(|l| l == "READY=1"), "{first:?}");
    // No ping may come between READY=1 and STOPPING=1, however long that is.
    signal(child.id(), "-TERM");
    assert_eq!(manager.recv(), "STOPPING=1");
    assert!(child.wait().unwrap().success());
}

/// The watchdog's round against the real scrape queues: every running shard answers
/// (the timeout only bounds a broken runtime; the round returns once all answered), and
/// a stopped shard counts as silent, so the watchdog is not fed.
#[test]
fn a_watchdog_round_feeds_only_while_every_shard_answers() {
    let config = RuntimeConfig {
        shards: 2,
        pin_cores: false,
        io_mode: Default::default(),
        asap: vec![Endpoint::Tcp("127.0.0.1:0".parse().unwrap())],
        registrar: Config {
            id: RegistrarId(0x5e41),
            ..Config::default()
        },
        seed: 7,
        announce_group: None,
    };
    let handle = runtime::start(config).expect("the runtime starts");
    let source = handle.metrics_source();
    assert!(service::silent(&source, Duration::from_secs(60)).is_empty());
    handle.shutdown().unwrap();
    assert_eq!(service::silent(&source, Duration::from_secs(60)), [0, 1]);
}
