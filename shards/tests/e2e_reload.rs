//! SIGHUP end to end: the registrar binary started with a config file takes a new
//! access rule and a new connection limit from it without a restart, keeps serving,
//! keeps a value given as a flag, and keeps the rules in force when the file no longer
//! parses or checks.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, channel};

use rserpool::wire::{AsapMessage, CauseCode};

const GUARD: std::time::Duration = std::time::Duration::from_secs(20);

/// The registrar with its standard error read line by line on a thread.
struct Registrar {
    child: Child,
    log: Receiver<String>,
    seen: Vec<String>,
}

impl Registrar {
    fn start(config: &Path) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_rserpool-registrar"))
            .args(["--no-pin", "--max-connections", "50", "--config"])
            .arg(config)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = BufReader::new(child.stderr.take().unwrap());
        let (tx, log) = channel();
        std::thread::spawn(move || {
            for line in stderr.lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut r = Self {
            child,
            log,
            seen: Vec::new(),
        };
        r.wait_line("registrar started");
        r
    }

    /// The next log line containing `what`.
    fn wait_line(&mut self, what: &str) -> String {
        loop {
            match self.log.recv_timeout(GUARD) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(what) {
                        return line;
                    }
                }
                Err(e) => panic!("no log line {what:?} ({e}); seen: {:#?}", self.seen),
            }
        }
    }

    fn hangup(&self) {
        let status = Command::new("kill")
            .args(["-HUP", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// SIGTERM; returns the log lines not seen yet.
    fn terminate(mut self) -> Vec<String> {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let status = self.child.wait().unwrap();
        assert!(status.success(), "{status:?}");
        // The reader thread ends at the end of the stream, closing the channel.
        self.log.iter().collect()
    }
}

fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(GUARD)).unwrap();
    s
}

/// A handle resolution of "Pool" on `s` and the error cause of its answer, if any.
fn resolve(s: &mut TcpStream) -> Option<CauseCode> {
    let mut out = Vec::new();
    AsapMessage::HandleResolution {
        subscribe: false,
        handle: "Pool".into(),
        items: Some(3),
    }
    .encode(&mut out);
    s.write_all(&out).unwrap();
    let mut head = [0u8; 4];
    s.read_exact(&mut head).expect("an answer");
    let len = usize::from(u16::from_be_bytes([head[2], head[3]]));
    let mut msg = head.to_vec();
    msg.resize(len.max(4), 0);
    s.read_exact(&mut msg[4..]).unwrap();
    match AsapMessage::decode(&msg).unwrap().message {
        AsapMessage::HandleResolutionResponse { error, .. } => error.and_then(|e| e.code()),
        other => panic!("not a resolution answer: {other:?}"),
    }
}

/// Whether the registrar closed `s` (a read sees the end of the stream or a reset).
fn closed(s: &mut TcpStream) -> bool {
    let mut b = [0u8; 1];
    match s.read(&mut b) {
        Ok(n) => n == 0,
        Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
    }
}

fn config(port: u16, extra: &str) -> String {
    format!(
        "[registrar]\nshards = 1\nlog_level = \"info\"\n[asap]\nlisten = [\"tcp://127.0.0.1:{port}\"]\n{extra}"
    )
}

const DENY_POOL: &str = "[[access.rule]]\nname = \"no-pool\"\naction = \"deny\"\nops = [\"resolve\"]\npools = [\"Pool\"]\n";

#[test]
fn sighup_applies_new_access_rules_and_limits_and_a_bad_file_changes_nothing() {
    let dir = std::env::temp_dir().join(format!("rserpool-reload-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("registrar.toml");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    std::fs::write(&file, config(port, "")).unwrap();
    let mut registrar = Registrar::start(&file);

    // Allowed at first: whatever the answer, not a denial.
    let mut before = connect(addr);
    assert_ne!(resolve(&mut before), Some(CauseCode::REJECTED_SECURITY));

    // A rule denying the pool and one connection per source.
    std::fs::write(
        &file,
        config(
            port,
            &format!("[limits]\nmax_connections_per_source = 2\nmax_connections = 60\n{DENY_POOL}"),
        ),
    )
    .unwrap();
    registrar.hangup();
    // One line per change, in the order of the file's sections.
    registrar.wait_line("reloaded: limits.max_connections_per_source 1000 -> 2");
    registrar.wait_line("reloaded: access.rule no-pool: none -> deny resolve pools Pool");
    // The flag wins over the file, and the log says so.
    registrar.wait_line(
        "not reloaded: limits.max_connections stays 50 (given on the command line; the file says 60)",
    );
    // In force for the connection already up and for new ones.
    assert_eq!(resolve(&mut before), Some(CauseCode::REJECTED_SECURITY));
    let mut second = connect(addr);
    assert_eq!(resolve(&mut second), Some(CauseCode::REJECTED_SECURITY));
    // A third connection from 127.0.0.1 is over the new cap: closed at accept.
    let mut third = connect(addr);
    assert!(closed(&mut third), "the per-source cap closes the third");

    // A file that does not parse: logged, and the rule stays.
    std::fs::write(&file, "[limits\n").unwrap();
    registrar.hangup();
    registrar.wait_line("reload failed, the settings in force stay");
    assert_eq!(resolve(&mut before), Some(CauseCode::REJECTED_SECURITY));
    // One that parses but does not check (a rule without an action): the same.
    std::fs::write(
        &file,
        config(port, "[[access.rule]]\nops = [\"resolve\"]\n"),
    )
    .unwrap();
    registrar.hangup();
    registrar.wait_line("reload failed, the settings in force stay");
    assert_eq!(resolve(&mut second), Some(CauseCode::REJECTED_SECURITY));
    assert!(
        registrar.child.try_wait().unwrap().is_none(),
        "still running"
    );

    // The rule removed again, the log level raised (and a restart-only change named,
    // not applied).
    drop((second, third));
    let text = config(port, "[metrics]\nlisten = \"127.0.0.1:1\"\n")
        .replace("log_level = \"info\"", "log_level = \"debug\"");
    std::fs::write(&file, text).unwrap();
    registrar.hangup();
    registrar.wait_line("reloaded: registrar.log_level info -> debug");
    registrar.wait_line("not applied until restart: metrics.listen none -> 127.0.0.1:1");
    registrar.wait_line("reloaded: access.rule no-pool: deny resolve pools Pool -> none");
    assert_ne!(resolve(&mut before), Some(CauseCode::REJECTED_SECURITY));

    drop(before);
    let rest = registrar.terminate();
    // A debug line: the new level is in force.
    assert!(
        rest.iter()
            .any(|l| l.contains("DEBUG") && l.contains("shard stopped")),
        "{rest:#?}"
    );
    let _ = std::fs::remove_dir_all(dir);
}
