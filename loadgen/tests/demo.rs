//! The load generator end to end: `demo` starts a registrar, registers PEs, resolves
//! closed and open loop, measures the floor, fails PEs over, and reports in all three
//! forms.

use std::process::Command;

#[test]
fn demo_reports_every_series_in_table_json_and_svg() {
    let dir = std::env::temp_dir().join(format!("rserpool-loadgen-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (json, svg) = (dir.join("r.json"), dir.join("r.svg"));
    let out = Command::new(env!("CARGO_BIN_EXE_rserpool-loadgen"))
        .args([
            "demo",
            "--pes",
            "40",
            "--items",
            "5",
            "--duration",
            "0.3",
            "--crash-trials",
            "5",
            "--hang-trials",
            "2",
            "--hang-batch",
            "3",
        ])
        .arg("--json")
        .arg(&json)
        .arg("--svg")
        .arg(&svg)
        .arg("--hgrm")
        .arg(&dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for row in [
        "registration",
        "resolution (closed loop)",
        "resolution (open,",
        "generator send lag",
        "echo floor (open,",
        "failover: crashed PE gone",
        "failover: hung PE gone",
        "resolution vs. transport floor",
        "p99.9",
    ] {
        assert!(stdout.contains(row), "missing {row}: {stdout}");
    }
    let doc: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let series = doc["series"].as_array().unwrap();
    let by_name = |prefix: &str| {
        series
            .iter()
            .find(|s| s["name"].as_str().unwrap().starts_with(prefix))
            .unwrap_or_else(|| panic!("no series {prefix}"))
    };
    assert_eq!(
        by_name("registration")["count"],
        40,
        "every PE registered once"
    );
    for name in ["resolution (closed loop)", "resolution (open"] {
        assert!(by_name(name)["count"].as_u64().unwrap() > 0, "{name}");
        assert_eq!(by_name(name)["errors"], 0, "{name}: every answer positive");
    }
    assert_eq!(
        by_name("failover: crashed")["count"],
        5,
        "one per crash trial"
    );
    assert_eq!(by_name("failover: hung")["count"], 6, "2 trials of 3");
    assert!(doc["summary"]["max_rate_per_s"].as_f64().unwrap() > 0.0);
    assert!(doc["summary"]["p50_over_floor"].as_f64().unwrap() > 0.0);
    assert!(std::fs::read_to_string(&svg).unwrap().contains("<polyline"));

    // Schema 2: the run's parameters with their defaults, stable ids, raw histograms
    // that decode to the counts, and one .hgrm per series under its id.
    assert_eq!(doc["schema_version"], 2);
    assert_eq!(doc["tool"]["name"], "rserpool-loadgen");
    assert!(doc["timestamp"].as_str().unwrap().ends_with('Z'));
    assert_eq!(doc["parameters"]["pes"], 40);
    assert_eq!(doc["parameters"]["pus"], 2, "a default");
    assert_eq!(doc["parameters"]["hang_batch"], 3);
    let ids: Vec<&str> = series.iter().map(|s| s["id"].as_str().unwrap()).collect();
    for id in [
        "registration",
        "resolution.closed",
        "resolution.open",
        "resolution.open.send_lag",
        "floor.open",
        "failover.crash",
        "failover.hang",
    ] {
        assert!(ids.contains(&id), "{id}: {ids:?}");
        let hgrm = std::fs::read_to_string(dir.join(format!("{id}.hgrm"))).unwrap();
        assert!(hgrm.starts_with("       Value     Percentile TotalCount 1/(1-Percentile)"));
    }
    for s in series {
        let h =
            rserpool_loadgen::report::decode_histogram(s["histogram"]["data"].as_str().unwrap())
                .unwrap();
        assert_eq!(h.len(), s["count"].as_u64().unwrap(), "{}", s["id"]);
        for (i, q) in [0.5, 0.9, 0.99, 0.999, 0.9999, 1.0].into_iter().enumerate() {
            let listed = s["latency_s"][i][1].as_f64().unwrap();
            let decoded = h.value_at_quantile(q) as f64 / 1e9;
            assert!((listed - decoded).abs() < 1e-12, "{} q {q}", s["id"]);
        }
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn bad_arguments_are_named() {
    for (args, want) in [
        (&["demo", "--items", "5000"][..], "--items"),
        (&["resolve"][..], "--registrar"),
        (&["resolve", "--registrar", "udp://1.2.3.4:5"][..], "udp"),
        (
            &["resolve", "--registrar", "127.0.0.1:1", "--rate", "150%"][..],
            "150%",
        ),
        (
            &["failover", "--registrar", "127.0.0.1:1", "--mode", "melt"][..],
            "melt",
        ),
        (
            &["churn", "--registrar", "127.0.0.1:1", "--pes", "0"][..],
            "--pes",
        ),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_rserpool-loadgen"))
            .args(args)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(want), "{args:?}: {stderr}");
    }
}
