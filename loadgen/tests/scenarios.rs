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
    let json = std::env::temp_dir().join(format!(
        "rserpool-loadgen-{}-{}.json",
        std::process::id(),
        args[0]
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
