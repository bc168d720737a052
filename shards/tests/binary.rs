//! The `rserpool-registrar` binary as an operator runs it: flags, a config error, and a
//! clean shutdown on SIGTERM.

use std::io::{BufRead, BufReader, Lines};
use std::process::{Child, ChildStdout, Command, Stdio};

fn registrar() -> Command {
    Command::new(env!("CARGO_BIN_EXE_rserpool-registrar"))
}

/// Starts the binary with 2 unpinned shards and `args`; returns it once its log says it
/// started, with that line and the rest of its standard output.
fn start(args: &[&str]) -> (Child, String, Lines<BufReader<ChildStdout>>) {
    let mut child = registrar()
        .args(["--shards", "2", "--no-pin"])
        .args(args)
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let started = lines
        .by_ref()
        .map_while(Result::ok)
        .find(|l| l.contains("registrar started"))
        .expect("a start line");
    (child, started, lines)
}

/// SIGTERM, as systemd stops it; the exit must be clean.
fn terminate(mut child: Child) {
    let kill = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
}

#[test]
fn bad_flags_and_config_keys_are_named_and_refused() {
    let out = registrar()
        .args(["--asap", "udp://0.0.0.0:1"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("udp://0.0.0.0:1") && err.contains("unknown scheme"),
        "{err}"
    );

    let dir = std::env::temp_dir().join(format!("rserpool-binary-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("bad.toml");
    std::fs::write(&file, "[asap]\nkeep_alive = 5\n").unwrap();
    let out = registrar().arg("--config").arg(&file).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("keep_alive") && err.contains("bad.toml"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn sigterm_shuts_down_cleanly() {
    // A free port: the binary needs a fixed one to be reachable.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (child, _, lines) = start(&[
        "--asap",
        &format!("tcp://127.0.0.1:{port}"),
        "--log-level",
        "info",
    ]);
    // Started: the log says so, and the port answers.
    std::net::TcpStream::connect(("127.0.0.1", port)).expect("serving");
    terminate(child);
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    assert!(rest.iter().any(|l| l.contains("stopped")), "{rest:?}");
}

/// `--metrics` serves Prometheus text from the running shards; port 0 picks a free port,
/// which the start line names.
#[test]
fn metrics_flag_serves_the_shards_figures() {
    use std::io::{Read as _, Write as _};
    let (child, started, _) = start(&["--asap", "tcp://127.0.0.1:0", "--metrics", "127.0.0.1:0"]);
    let addr: std::net::SocketAddr = started
        .split_once("metrics=Some(")
        .and_then(|(_, rest)| rest.split_once(')'))
        .map(|(addr, _)| addr.parse().expect("an address"))
        .unwrap_or_else(|| panic!("no metrics address in {started:?}"));
    let mut s = std::net::TcpStream::connect(addr).expect("the metrics endpoint listens");
    s.write_all(b"GET /metrics HTTP/1.1\r\n\r\n").unwrap();
    let mut response = String::new();
    s.read_to_string(&mut response).unwrap();
    terminate(child);
    assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
    for line in [
        "rserpool_shards 2",
        "rserpool_shard_up{shard=\"0\"} 1",
        "rserpool_shard_up{shard=\"1\"} 1",
        "rserpool_pools{shard=\"all\"} 0",
    ] {
        assert!(response.contains(line), "{line} in {response}");
    }
}

/// `--help` describes every ENRP flag with RSPLIB's equivalent option.
#[test]
fn help_names_the_enrp_flags_and_rsplibs_options() {
    let out = registrar().arg("--help").output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for (flag, rsplib) in [
        ("--enrp <URI>", "-enrp"),
        ("--peer <URI>", "-peer"),
        ("--id <ID>", "-identifier"),
        ("--enrp-announce-group", "-enrpannounce"),
        ("--peer-heartbeat-cycle", "-peerheartbeatcycle"),
        ("--peer-max-time-last-heard", "-peermaxtimelastheard"),
        ("--peer-max-time-no-response", "-peermaxtimenoresponse"),
        ("--mentor-discovery-timeout", "-mentordiscoverytimeout"),
        ("--takeover-expiry", "-takeoverexpiryinterval"),
    ] {
        assert!(help.contains(flag), "{flag} in {help}");
        assert!(
            help.contains(&format!("RSPLIB: {rsplib}"))
                || help.contains(&format!("RSPLIB's {rsplib}")),
            "{rsplib} in {help}"
        );
    }
    assert!(
        help.contains("--registrar-id"),
        "the old name stays an alias"
    );
}

/// `--enrp` serves ENRP on its own port, which the start line names; `--peer` without
/// it is refused by name.
#[test]
fn enrp_flag_serves_enrp_and_peers_need_it() {
    let (child, started, _) = start(&[
        "--asap",
        "tcp://127.0.0.1:0",
        "--enrp",
        "tcp://127.0.0.1:0",
        "--id",
        "0x10",
    ]);
    let addr: std::net::SocketAddr = started
        .split_once("enrp=tcp://")
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .map(|addr| addr.parse().expect("an address"))
        .unwrap_or_else(|| panic!("no ENRP endpoint in {started:?}"));
    assert_ne!(addr.port(), 0);
    std::net::TcpStream::connect(addr).expect("the ENRP port accepts");
    terminate(child);

    let out = registrar()
        .args(["--peer", "192.0.2.10:9901"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--enrp") && err.contains("sctp://192.0.2.10:9901"),
        "{err}"
    );
}
