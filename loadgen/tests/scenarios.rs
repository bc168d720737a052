//! Each scenario against a registrar running in the test process.

mod common;

use std::process::Output;
use std::time::Duration;

use common::{run_json, series};
use rserpool_shards::runtime::Handle;
use rserpool_shards::{Endpoint, RuntimeConfig};

fn registrar() -> (Handle, String) {
    let handle = rserpool_shards::runtime::start(RuntimeConfig {
        shards: 2,
        pin_cores: false,
        io_mode: Default::default(),
        asap: vec![Endpoint::Tcp("127.0.0.1:0".parse().unwrap())],
        registrar: rserpool::registrar::Config {
            allow_loopback: true,
            keep_alive_interval: Duration::from_millis(100),
            keep_alive_timeout: Duration::from_millis(300),
            ..rserpool::registrar::Config::default()
        },
        seed: 7,
        announce_group: None,
    })
    .unwrap();
    let uri = format!("tcp://{}", handle.tcp_addr().unwrap());
    (handle, uri)
}

fn loadgen(args: &[&str]) -> (Output, serde_json::Value) {
    // Tests run in parallel: one file each.
    static RUN: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let json = std::env::temp_dir().join(format!(
        "rserpool-loadgen-{}-{}-{}.json",
        std::process::id(),
        args[0],
        RUN.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    run_json(args, &json)
}

#[test]
fn open_loop_sends_exactly_on_schedule_and_every_request_is_answered() {
    let (handle, uri) = registrar();
    // 2 pool users at 2000/s for 0.5 s: each sends every millisecond, 500 requests.
    let (_, doc) = loadgen(&[
        "resolve",
        "--registrar",
        &uri,
        "--pes",
        "20",
        "--pus",
        "2",
        "--rate",
        "2000",
        "--duration",
        "0.5",
    ]);
    let open = series(&doc, "resolution (open, 2000/s)");
    assert_eq!(open["count"], 1000, "{open}");
    assert_eq!(open["errors"], 0);
    assert_eq!(series(&doc, "echo floor (open")["count"], 1000);
    handle.shutdown().unwrap();
}

#[test]
fn churn_registers_reregisters_and_deregisters() {
    let (handle, uri) = registrar();
    let (_, doc) = loadgen(&[
        "churn",
        "--registrar",
        &uri,
        "--pes",
        "50",
        "--pe-connections",
        "5",
        "--rate",
        "1000",
        "--duration",
        "0.5",
    ]);
    for kind in [
        "churn: registration",
        "churn: re-registration",
        "churn: deregistration",
    ] {
        let s = series(&doc, kind);
        assert!(s["count"].as_u64().unwrap() > 0, "{kind}: {s}");
        assert_eq!(s["errors"], 0, "{kind}");
    }
    handle.shutdown().unwrap();
}

#[test]
fn failover_times_crashed_and_hung_pes_until_gone_from_every_answer() {
    let (handle, uri) = registrar();
    for (mode, trials, batch, count) in [("crash", "10", "1", 10), ("hang", "2", "4", 8)] {
        let (out, doc) = loadgen(&[
            "failover",
            "--registrar",
            &uri,
            "--pool",
            mode,
            "--pes",
            "60",
            "--mode",
            mode,
            "--trials",
            trials,
            "--batch",
            batch,
            "--keep-alive-interval",
            "100",
            "--keep-alive-timeout",
            "300",
        ]);
        let s = &doc["series"][0];
        assert_eq!(s["count"], count, "{mode}: {s}");
        if mode == "hang" {
            // Removal takes a keep-alive timeout at least: anything faster would mean
            // the PE was not really hung (or the registrar removed a live PE).
            let p0 = s["latency_s"][0][1].as_f64().unwrap();
            assert!(p0 > 0.0, "{s}");
            assert!(String::from_utf8_lossy(&out.stdout).contains("bound"));
        }
    }
    handle.shutdown().unwrap();
}

/// The floor's canned answer is as long as the registrar's answer to the same
/// resolution, so the floor times the same bytes on the wire.
#[test]
fn the_canned_answer_has_the_size_of_the_registrars() {
    use rserpool::PoolHandle;
    use rserpool::client::resolution_request;
    use rserpool_loadgen::conn::{Conn, Target};
    use rserpool_loadgen::echo::Answers;
    use rserpool_loadgen::farm::{Farm, FarmConfig};

    let (handle, uri) = registrar();
    let target: Target = uri.parse().unwrap();
    let pool = PoolHandle::from("SizePool");
    let farm = Farm::start(FarmConfig {
        listen: false,
        ..FarmConfig::new(target, pool.clone(), 5)
    })
    .unwrap();
    let mut conn = Conn::connect(target).unwrap();
    let mut req = Vec::new();
    resolution_request(&pool, Some(3), &mut req);
    conn.send_bytes(&req).unwrap();
    let answer = conn.recv_bytes().unwrap().to_vec();
    let canned = Answers::resolution(&pool, 3, target.addr.ip());
    assert_eq!(canned.canned().len(), answer.len());
    farm.stop().unwrap();
    handle.shutdown().unwrap();
}

/// `echo --listen` stands in for a registrar: the PE farm registers at it and the pool
/// users' every answer holds the PEs asked for (bench/vm-compare.sh's `floor`).
#[test]
fn a_standalone_echo_responder_stands_in_for_a_registrar() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};

    let mut echo = Command::new(env!("CARGO_BIN_EXE_rserpool-loadgen"))
        .args(["echo", "--listen", "tcp://127.0.0.1:0", "--items", "2"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(echo.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let uri = line
        .split_whitespace()
        .find(|w| w.starts_with("tcp://"))
        .unwrap_or_else(|| panic!("no address in {line:?}"))
        .to_owned();
    let (_, doc) = loadgen(&[
        "resolve",
        "--registrar",
        &uri,
        "--pes",
        "20",
        "--items",
        "2",
        "--duration",
        "0.3",
        "--no-floor",
    ]);
    assert_eq!(series(&doc, "registration")["count"], 20);
    let s = series(&doc, "resolution (closed loop)");
    assert!(s["count"].as_u64().unwrap() > 0, "{s}");
    assert_eq!(s["errors"], 0);
    echo.kill().unwrap();
    echo.wait().unwrap();
}

/// `resolve --rounds N` takes turns between the registrar and the floor, each round
/// giving one rate ratio, the floor in a process of its own unless asked otherwise.
#[test]
fn rounds_take_turns_between_the_registrar_and_a_floor_in_its_own_process() {
    let (handle, uri) = registrar();
    for (extra, in_process) in [(None, false), (Some("--floor-in-process"), true)] {
        let mut args = vec![
            "resolve",
            "--registrar",
            &uri,
            "--pes",
            "20",
            "--pus",
            "2",
            "--duration",
            "0.2",
            "--rounds",
            "3",
        ];
        args.extend(extra);
        let (out, doc) = loadgen(&args);
        let summary = &doc["summary"];
        let rounds = summary["max_rate_over_floor_rounds"].as_array().unwrap();
        assert_eq!(rounds.len(), 3, "{summary}");
        assert!(
            rounds.iter().all(|r| r.as_f64().unwrap() > 0.0),
            "{summary}"
        );
        assert_eq!(summary["floor_in_process"], in_process);
        let median = summary["max_rate_over_floor"].as_f64().unwrap();
        assert_eq!(
            median,
            rounds[1].as_f64().unwrap(),
            "the middle of three, sorted"
        );
        // Three windows each, their rates over all three.
        for name in ["resolution (closed loop)", "echo floor (closed loop)"] {
            let s = series(&doc, name);
            assert!(s["count"].as_u64().unwrap() > 0, "{s}");
            assert_eq!(s["errors"], 0);
            let elapsed = s["count"].as_f64().unwrap() / s["rate_per_s"].as_f64().unwrap();
            assert!(elapsed >= 0.6, "{name}: {elapsed} s");
        }
        let where_ = if in_process {
            "in the load generator's process"
        } else {
            "in its own process"
        };
        assert!(String::from_utf8_lossy(&out.stdout).contains(where_));
    }
    handle.shutdown().unwrap();
}

/// The floor's own process answers resolutions with the bytes it was given, is
/// another process than ours, and is gone once dropped.
#[test]
fn an_echo_process_replays_the_answer_it_was_given_until_dropped() {
    use rserpool::PoolHandle;
    use rserpool::client::resolution_request;
    use rserpool_loadgen::conn::{Conn, Target};
    use rserpool_loadgen::echo::{Answers, EchoProcess};

    let pool = PoolHandle::from("ApartPool");
    let answer = Answers::resolution(&pool, 4, "127.0.0.1".parse().unwrap())
        .canned()
        .to_vec();
    let program = std::path::Path::new(env!("CARGO_BIN_EXE_rserpool-loadgen"));
    let listen: Target = "tcp://127.0.0.1:0".parse().unwrap();
    let echo = EchoProcess::start(program, listen, &answer).unwrap();
    assert_ne!(echo.id(), std::process::id());
    assert_eq!(echo.answer_bytes(), answer.len());
    let proc_dir = std::path::PathBuf::from(format!("/proc/{}", echo.id()));
    assert!(proc_dir.exists());
    let mut conn = Conn::connect(echo.target).unwrap();
    let mut req = Vec::new();
    resolution_request(&pool, Some(4), &mut req);
    for _ in 0..3 {
        conn.send_bytes(&req).unwrap();
        assert_eq!(conn.recv_bytes().unwrap(), &answer[..]);
    }
    let target = echo.target;
    drop(echo);
    assert!(!proc_dir.exists(), "killed and reaped");
    assert!(std::net::TcpStream::connect(target.addr).is_err());
}

/// A responder that cannot start says why (here: an address on no interface).
#[test]
fn an_echo_process_that_cannot_listen_says_why() {
    use rserpool::PoolHandle;
    use rserpool_loadgen::echo::{Answers, EchoProcess};

    let program = std::path::Path::new(env!("CARGO_BIN_EXE_rserpool-loadgen"));
    let answers = Answers::resolution(&PoolHandle::from("P"), 1, "127.0.0.1".parse().unwrap());
    let listen = "tcp://192.0.2.1:0".parse().unwrap();
    let err = EchoProcess::start(program, listen, answers.canned())
        .unwrap_err()
        .to_string();
    // Its own error after ours: where it tried to listen, and the system's reason.
    assert!(err.contains("did not start"), "{err}");
    assert!(err.contains("listening at tcp://192.0.2.1:0"), "{err}");
    assert!(err.contains("assign"), "EADDRNOTAVAIL: {err}");
}
