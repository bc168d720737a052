//! The load generator end to end: `demo` starts a registrar, registers PEs, resolves,
//! measures the floor, and reports in all three forms.

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
            "--pe-connections",
            "4",
            "--items",
            "5",
            "--duration",
            "0.3",
        ])
        .arg("--json")
        .arg(&json)
        .arg("--svg")
        .arg(&svg)
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
        "resolution",
        "echo (transport floor)",
        "p99.9",
    ] {
        assert!(stdout.contains(row), "missing {row}: {stdout}");
    }
    let doc: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(doc["series"][0]["count"], 40, "every PE registered once");
    assert!(doc["series"][1]["count"].as_u64().unwrap() > 0);
    assert_eq!(
        doc["series"][1]["errors"], 0,
        "every resolution answered positively"
    );
    assert!(std::fs::read_to_string(&svg).unwrap().contains("<polyline"));
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn bad_arguments_are_named() {
    let out = Command::new(env!("CARGO_BIN_EXE_rserpool-loadgen"))
        .args(["demo", "--items", "500"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--items"));
    let out = Command::new(env!("CARGO_BIN_EXE_rserpool-loadgen"))
        .args(["resolve"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--registrar"));
}
