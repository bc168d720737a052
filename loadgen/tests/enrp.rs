//! The ENRP scenarios end to end against real registrar processes: a takeover of a
//! killed registrar's PEs, and propagation between peers.
//!
//! The registrar binary belongs to another package, so cargo does not hand its path to
//! these tests; it sits next to the load generator's binary in the target directory,
//! and is built there first (a no-op when it is up to date).

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use common::{run_json, series};
use rserpool_loadgen::scope::{REGISTRAR_BINARY, Scope, ScopeConfig};

fn loadgen() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_rserpool-loadgen"))
}

/// `rserpool-registrar` of the same profile as these tests, built if need be.
fn registrar() -> &'static PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let exe = loadgen();
        let path = exe.with_file_name(REGISTRAR_BINARY);
        let profile_dir = exe.parent().expect("the binary is in a directory");
        let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
            Some("debug") | None => "dev".to_owned(),
            Some(p) => p.to_owned(),
        };
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| env!("CARGO").to_owned());
        let built = Command::new(cargo)
            .args(["build", "--offline", "-p", "rserpool-shards", "--bin"])
            .arg(REGISTRAR_BINARY)
            .args(["--profile", &profile])
            .env(
                "CARGO_TARGET_DIR",
                profile_dir.parent().expect("a target directory"),
            )
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output();
        match built {
            Ok(out) if out.status.success() => {}
            // A binary built earlier still serves.
            Ok(_) | Err(_) if path.is_file() => {}
            Ok(out) => panic!(
                "building {REGISTRAR_BINARY} failed:\n{}",
                String::from_utf8_lossy(&out.stderr)
            ),
            Err(e) => panic!("running cargo to build {REGISTRAR_BINARY}: {e}"),
        }
        assert!(path.is_file(), "no {}", path.display());
        path
    })
}

fn temp(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("rserpool-enrp-{}-{name}", std::process::id()))
}

#[test]
fn takeover_adopts_every_pe_of_the_killed_registrar() {
    let binary = registrar().to_str().unwrap().to_owned();
    // Each PE on its own connection (one connection from the survivor per PE), then
    // five PEs per connection (one connection, five home keep-alives on it).
    for connections in ["0", "4"] {
        let (out, doc) = run_json(
            &[
                "takeover",
                "--registrars",
                "3",
                "--pes",
                "20",
                "--pe-connections",
                connections,
                "--timers",
                "fast",
                "--registrar-binary",
                &binary,
                "--registrar-log-level",
                "debug",
            ],
            &temp(&format!("takeover-{connections}.json")),
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(doc["summary"]["lost"], 0, "{stdout}");
        assert_eq!(doc["summary"]["adopted"], 20, "{stdout}");
        assert_eq!(series(&doc, "takeover: PE adopted")["count"], 20);
        assert_eq!(series(&doc, "registration")["count"], 20);
        assert!(stdout.contains("every PE adopted after"), "{stdout}");
    }
}

#[test]
fn propagation_between_peers_shows_every_registration_and_deregistration() {
    let scope = Scope::start(&ScopeConfig::new(registrar().clone(), 3)).unwrap();
    let (a, b) = (scope.asap(0).to_string(), scope.asap(2).to_string());
    // 300 trials at 500/s.
    let (out, doc) = run_json(
        &[
            "propagation",
            "--pe-registrar",
            &a,
            "--pu-registrar",
            &b,
            "--rate",
            "500",
            "--duration",
            "0.6",
            "--observer-connections",
            "2",
        ],
        &temp("propagation.json"),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    for name in ["propagation: registration", "propagation: deregistration"] {
        let s = series(&doc, name);
        assert_eq!(s["count"], 300, "{name}: {stdout}");
        assert_eq!(s["errors"], 0, "{name}: {stdout}");
    }
    assert!(stdout.contains("late by at most one round"), "{stdout}");
}

#[test]
fn takeover_refuses_what_it_cannot_do() {
    for (args, want) in [
        (&["takeover", "--registrars", "1"][..], "--registrars"),
        (&["takeover", "--pes", "5000"][..], "--pes"),
        (
            &["takeover", "--registrar-binary", "/nonexistent/registrar"][..],
            "/nonexistent/registrar",
        ),
        (
            &["propagation", "--pe-registrar", "127.0.0.1:1"][..],
            "--pu-registrar",
        ),
        (
            &[
                "propagation",
                "--registrar",
                "127.0.0.1:1",
                "--pool",
                "ABCDEFGHIJKLMNOPQRSTUVWXYZ",
            ][..],
            "35 bytes",
        ),
    ] {
        let out = Command::new(loadgen()).args(args).output().unwrap();
        assert!(!out.status.success(), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(want), "{args:?}: {stderr}");
    }
}
