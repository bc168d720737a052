//! What the load generator's end-to-end tests share: running the binary with `--json`
//! and finding a series in what it wrote.

use std::path::Path;
use std::process::{Command, Output};

/// Runs `rserpool-loadgen ARGS --json JSON`, which must succeed; returns its output and
/// the JSON document (the file is removed).
pub(crate) fn run_json(args: &[&str], json: &Path) -> (Output, serde_json::Value) {
    let out = Command::new(env!("CARGO_BIN_EXE_rserpool-loadgen"))
        .args(args)
        .arg("--json")
        .arg(json)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{args:?}\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let doc = serde_json::from_slice(&std::fs::read(json).unwrap()).unwrap();
    let _ = std::fs::remove_file(json);
    (out, doc)
}

/// The first series whose name starts with `prefix`.
pub(crate) fn series<'a>(doc: &'a serde_json::Value, prefix: &str) -> &'a serde_json::Value {
    doc["series"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"].as_str().unwrap().starts_with(prefix))
        .unwrap_or_else(|| panic!("no series {prefix}: {doc}"))
}
