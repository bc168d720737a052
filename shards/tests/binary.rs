//! The `rserpool-registrar` binary as an operator runs it: flags, a config error, and a
//! clean shutdown on SIGTERM.

use std::io::{BufRead, BufReader, Lines};
use std::process::{Child, ChildStderr, Command, Stdio};

fn registrar() -> Command {
    Command::new(env!("CARGO_BIN_EXE_rserpool-registrar"))
}

/// Starts the binary with 2 unpinned shards and `args`; returns it once its log says it
/// started, with that line and the rest of its standard error (where it logs).
fn start(args: &[&str]) -> (Child, String, Lines<BufReader<ChildStderr>>) {
    let mut child = registrar()
        .args(["--shards", "2", "--no-pin"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let started = lines
        .by_ref()
        .map_while(Result::ok)
        .find(|l| l.contains("registrar started"))
        .expect("a start line");
    (child, started, lines)
}

/// SIGTERM, as systemd stops it; the exit must be clean, with nothing on standard
/// output (logs go to standard error).
fn terminate(mut child: Child) {
    let kill = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let mut stdout = String::new();
    if let Some(mut out) = child.stdout.take() {
        std::io::Read::read_to_string(&mut out, &mut stdout).unwrap();
    }
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    assert_eq!(stdout, "", "nothing on standard output");
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
    // Standard error is not a terminal here: no colour codes.
    assert!(rest.iter().all(|l| !l.contains("\x1b[")), "{rest:?}");
}

/// A misspelt level is refused by name, not taken for a target that logs nothing.
#[test]
fn a_misspelt_log_level_is_refused_by_name() {
    for (level, named) in [("inf", "\"inf\""), ("warn,rserpool=dbug", "\"dbug\"")] {
        let out = registrar().args(["--log-level", level]).output().unwrap();
        assert!(!out.status.success(), "{level}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(&format!("unknown log level {named}"))
                && err.contains("expected one of error, warn, info, debug, trace, off"),
            "{err}"
        );
        assert!(out.stdout.is_empty());
    }
}

/// `--log-format json`: one JSON object per line with timestamp, level, message and
/// the fields.
#[test]
fn json_logs_are_one_object_per_line() {
    let (child, started, lines) = start(&[
        "--asap",
        "tcp://127.0.0.1:0",
        "--log-format",
        "json",
        "--metrics",
        "127.0.0.1:0",
    ]);
    let line: serde_json::Value = serde_json::from_str(&started).expect("JSON");
    assert_eq!(line["level"], "INFO");
    assert_eq!(line["message"], "registrar started");
    assert!(line["timestamp"].is_string(), "{line}");
    assert_eq!(line["shards"], 2);
    let metrics = line["metrics"].as_str().unwrap();
    assert!(metrics.parse::<std::net::SocketAddr>().is_ok(), "{metrics}");
    terminate(child);
    for l in lines.map_while(Result::ok) {
        serde_json::from_str::<serde_json::Value>(&l).unwrap_or_else(|e| panic!("{e}: {l}"));
    }
}

/// `--metrics` serves Prometheus text from the running shards; port 0 picks a free port,
/// which the start line names.
#[test]
fn metrics_flag_serves_the_shards_figures() {
    use std::io::{Read as _, Write as _};
    let (child, started, _) = start(&["--asap", "tcp://127.0.0.1:0", "--metrics", "127.0.0.1:0"]);
    let addr: std::net::SocketAddr = started
        .split_once("metrics=")
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .map(|addr| addr.parse().expect("an address"))
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
        "rserpool_pools{shard=\"0\"} 0",
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

mod common;

/// Runs `rserpool-registrar dump ARGS…`; returns its status, standard output and error.
fn dump(args: &[&str]) -> (std::process::ExitStatus, String, String) {
    let out = registrar().arg("dump").args(args).output().unwrap();
    (
        out.status,
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Every PE of a JSON dump as (pool, PE ID, home).
fn json_elements(json: &serde_json::Value) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for pool in json["pools"].as_array().expect("pools") {
        for e in pool["elements"].as_array().expect("elements") {
            out.push((
                pool["handle"].as_str().unwrap().to_owned(),
                e["id"].as_str().unwrap().to_owned(),
                e["home"].as_str().unwrap().to_owned(),
            ));
        }
    }
    out
}

/// `dump` over TCP against a running registrar with PEs in two pools: the table names
/// the registrar, each pool with its policy, each PE with its home, life and
/// transports, and the totals; `--json FILE` holds the same.
#[test]
fn dump_prints_a_registrars_pools_as_a_table_and_as_json() {
    use common::scenarios::enrp_registrar;
    use common::{Kind, Lab};

    let (config, enrp) = enrp_registrar(0x10, Kind::Tcp, Vec::new());
    let lab = Lab::with(Kind::Tcp, config, enrp);
    let uri = lab.handle.as_ref().unwrap().enrp_endpoints()[0].to_string();
    assert!(uri.starts_with("tcp://"), "{uri}");
    let pes: Vec<_> = common::register_all(&lab, "alpha", 1..=3)
        .into_iter()
        .chain(common::register_all(&lab, "beta", [0x1f, 0x20]))
        .collect();

    let dir = std::env::temp_dir().join(format!("rserpool-dump-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("dump.json");
    let (status, table, err) = dump(&[&uri, "--json", file.to_str().unwrap()]);
    assert!(status.success(), "{status:?}: {err}");
    assert!(
        table.starts_with("registrar 0x00000010 at tcp://"),
        "{table}"
    );
    assert!(table.contains("\npeers: none\n"), "{table}");
    assert!(
        table.contains("\npool alpha: policy round_robin, 3 PEs\n"),
        "{table}"
    );
    assert!(
        table.contains("\npool beta: policy round_robin, 2 PEs\n"),
        "{table}"
    );
    for id in [
        "0x00000001",
        "0x00000002",
        "0x00000003",
        "0x0000001f",
        "0x00000020",
    ] {
        // PE ID, home, registration life, no policy values, the user transport.
        let row = format!("  {id}  0x00000010  600000 ms  -              tcp 127.0.0.1 port 20000");
        assert!(table.contains(&row), "{row:?} in\n{table}");
    }
    assert!(
        table.ends_with("total: 2 pools, 5 PEs (by home: 0x00000010: 5)\n"),
        "{table}"
    );

    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(json["registrar"], "0x00000010");
    assert_eq!(json["peers"], serde_json::json!([]));
    let home = "0x00000010".to_owned();
    let want: Vec<(String, String, String)> = [
        ("alpha", "0x00000001"),
        ("alpha", "0x00000002"),
        ("alpha", "0x00000003"),
        ("beta", "0x0000001f"),
        ("beta", "0x00000020"),
    ]
    .iter()
    .map(|(p, id)| ((*p).to_owned(), (*id).to_owned(), home.clone()))
    .collect();
    assert_eq!(json_elements(&json), want);
    let pe = &json["pools"][0]["elements"][0];
    assert_eq!(pe["registration_life"], 600_000);
    assert_eq!(json["pools"][0]["policy"], "round_robin");
    assert_eq!(
        pe["user_transport"],
        serde_json::json!({
            "kind": "tcp", "addresses": ["127.0.0.1"], "port": 20000, "transport_use": "data_only"
        })
    );
    assert_eq!(json["totals"]["pools"], 2);
    assert_eq!(json["totals"]["elements"], 5);
    assert_eq!(
        json["totals"]["elements_by_home"],
        serde_json::json!({ "0x00000010": 5 })
    );
    let _ = std::fs::remove_dir_all(dir);
    drop(pes);
    lab.finish();
}

/// `dump` of either of two peered registrars lists the PEs of both homes, and the
/// other registrar among its peers; `--json -` prints the JSON instead of the table.
#[test]
fn dump_of_a_peered_registrar_shows_the_pes_of_both_homes() {
    use std::collections::BTreeSet;

    use common::scenarios::enrp_registrar;
    use common::{Kind, Lab};
    use rserpool::enrp::PeerAddress;
    use rserpool::registrar::Transport;

    let (config, enrp) = enrp_registrar(0x10, Kind::Tcp, Vec::new());
    let lab = Lab::with(Kind::Tcp, config, enrp);
    let a_enrp = lab.handle.as_ref().unwrap().enrp_endpoints()[0].clone();
    let peer_a = PeerAddress {
        transport: Transport::Tcp,
        addr: a_enrp.addr(),
    };
    let (config, enrp) = enrp_registrar(0x20, Kind::Tcp, vec![peer_a]);
    let (b, b_asap) = common::start_registrar(Kind::Tcp, config, enrp);
    let b_enrp = b.enrp_endpoints()[0].clone();

    let pe_a = lab.connect();
    common::assert_accepted(&pe_a.register(Kind::Tcp, "shared", 1), 1);
    let pe_b = lab.connect_to(b_asap);
    common::assert_accepted(&pe_b.register(Kind::Tcp, "shared", 2), 2);
    let (pu_a, pu_b) = (lab.connect(), lab.connect_to(b_asap));
    common::wait_until(&lab, "each registrar resolves both PEs", || {
        pu_a.members("shared") == BTreeSet::from([1, 2])
            && pu_b.members("shared") == BTreeSet::from([1, 2])
    });

    let both = vec![
        (
            "shared".to_owned(),
            "0x00000001".to_owned(),
            "0x00000010".to_owned(),
        ),
        (
            "shared".to_owned(),
            "0x00000002".to_owned(),
            "0x00000020".to_owned(),
        ),
    ];
    for (endpoint, me, other) in [
        (&a_enrp, "0x00000010", "0x00000020"),
        (&b_enrp, "0x00000020", "0x00000010"),
    ] {
        let (status, out, err) = dump(&[&endpoint.to_string(), "--json", "-"]);
        assert!(status.success(), "{endpoint}: {status:?}: {err}");
        let json: serde_json::Value = serde_json::from_str(&out).expect("only JSON on stdout");
        assert_eq!(json["registrar"], me);
        assert_eq!(json_elements(&json), both, "{endpoint}");
        let peers: Vec<&str> = json["peers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["id"].as_str().unwrap())
            .collect();
        assert!(peers.contains(&other), "{endpoint}: {peers:?}");
        assert_eq!(
            json["totals"]["elements_by_home"],
            serde_json::json!({ "0x00000010": 1, "0x00000020": 1 })
        );

        let (status, table, err) = dump(&[&endpoint.to_string()]);
        assert!(status.success(), "{endpoint}: {status:?}: {err}");
        assert!(
            table.contains(&format!("\n  {other}  tcp ")),
            "the peer {other} in\n{table}"
        );
        assert!(
            table.ends_with("total: 1 pool, 2 PEs (by home: 0x00000010: 1, 0x00000020: 1)\n"),
            "{table}"
        );
    }
    drop((pe_a, pe_b, pu_a, pu_b));
    b.shutdown().expect("clean shutdown");
    lab.finish();
}

/// A fake registrar on loopback TCP: reads what the dump sends, answers `answer` (if
/// any), then keeps the connection open until the dump closes it.
fn fake_registrar(answer: Option<Vec<u8>>) -> std::net::SocketAddr {
    use std::io::{Read as _, Write as _};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut buf = [0u8; 4096];
        let _ = s.read(&mut buf);
        if let Some(a) = answer {
            let _ = s.write_all(&a);
        }
        while matches!(s.read(&mut buf), Ok(n) if n > 0) {}
    });
    addr
}

/// A failed dump exits non-zero and says why, naming the endpoint: nothing listens; a
/// refusal (R flag); no answer before --timeout; an answer that is not ENRP; bad
/// arguments.
#[test]
fn a_failed_dump_says_why_and_exits_non_zero() {
    use rserpool::RegistrarId;
    use rserpool::wire::{EnrpIds, EnrpMessage};

    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut refusal = Vec::new();
    EnrpMessage::HandleTableResponse {
        ids: EnrpIds {
            sender: RegistrarId(0x77),
            receiver: RegistrarId(1),
        },
        reject: true,
        more: false,
        entries: Vec::new(),
    }
    .encode(&mut refusal);
    let refusing = fake_registrar(Some(refusal));
    let silent = fake_registrar(None);
    let garbage = fake_registrar(Some(vec![0x7f, 0, 0, 4]));

    let cases: [(Vec<String>, &str); 6] = [
        (
            vec![format!("tcp://{closed}")],
            "cannot connect to tcp://127.0.0.1:",
        ),
        (
            vec![format!("tcp://{refusing}")],
            "(registrar 0x00000077) refused the handle table request (R flag)",
        ),
        (
            vec![format!("tcp://{silent}"), "--timeout".into(), "0.3".into()],
            "did not complete the dump within 300ms: no handle table received",
        ),
        (
            vec![format!("tcp://{garbage}")],
            "undecodable answer from tcp://127.0.0.1:",
        ),
        (vec!["udp://127.0.0.1:9901".into()], "unknown scheme"),
        (
            vec![format!("tcp://{closed}"), "--timeout".into(), "0".into()],
            "invalid --timeout 0",
        ),
    ];
    for (args, want) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (status, out, err) = dump(&args);
        assert_eq!(status.code(), Some(1), "{args:?}: {err}");
        assert!(out.is_empty(), "{args:?}: {out}");
        assert!(
            err.starts_with("rserpool-registrar dump: ") && err.contains(want),
            "{args:?}: {want:?} in {err}"
        );
    }
}

/// `--help` describes `dump`; a subcommand and the registrar's flags do not mix.
#[test]
fn help_describes_dump_and_the_flat_cli_stays() {
    let out = registrar().arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(
        help.contains("dump  Print a registrar's handlespace"),
        "{help}"
    );
    let out = registrar().args(["dump", "--help"]).output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    for part in ["<URI>", "--json <FILE|->", "--timeout <S>", "hsdump"] {
        assert!(help.contains(part), "{part} in {help}");
    }
    let out = registrar()
        .args(["--shards", "2", "dump", "tcp://127.0.0.1:9901"])
        .output()
        .unwrap();
    assert!(!out.status.success());
}
