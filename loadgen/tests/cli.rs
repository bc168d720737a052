//! The command line refuses what makes no sense before any load is generated, and says
//! which flag or path is wrong.

use std::process::{Command, Output};

fn loadgen(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rserpool-loadgen"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn zero_pool_users_are_refused_by_name() {
    for sub in ["demo", "resolve", "echo"] {
        let out = loadgen(&[sub, "--pus", "0"]);
        assert!(!out.status.success(), "{sub}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("--pus"), "{sub}: {stderr}");
        assert!(out.stdout.is_empty(), "{sub}: nothing ran");
    }
}

#[test]
fn an_output_in_a_missing_directory_fails_before_the_run() {
    let missing = std::env::temp_dir()
        .join(format!("rserpool-loadgen-missing-{}", std::process::id()))
        .join("deeper");
    for (flag, path) in [
        ("--json", missing.join("r.json")),
        ("--svg", missing.join("r.svg")),
        ("--hgrm", missing.clone()),
    ] {
        let path = path.to_str().unwrap();
        // `demo` without --registrar would start a registrar and run for seconds: the
        // check comes first, so it prints nothing and starts nothing.
        let out = loadgen(&["demo", flag, path]);
        assert!(!out.status.success(), "{flag}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(flag) && stderr.contains(path),
            "{flag}: {stderr}"
        );
        assert!(
            out.stdout.is_empty(),
            "{flag}: the run started: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
}

#[test]
fn an_hgrm_directory_that_is_a_file_is_refused() {
    let file = std::env::temp_dir().join(format!("rserpool-loadgen-file-{}", std::process::id()));
    std::fs::write(&file, b"").unwrap();
    let out = loadgen(&["demo", "--hgrm", file.to_str().unwrap()]);
    let _ = std::fs::remove_file(&file);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("is not a directory"), "{stderr}");
    assert!(out.stdout.is_empty());
}

#[test]
fn an_output_path_that_is_a_directory_is_refused() {
    let dir = std::env::temp_dir();
    let out = loadgen(&["demo", "--json", dir.to_str().unwrap()]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("is a directory"), "{stderr}");
    assert!(out.stdout.is_empty());
}

#[test]
fn an_answer_that_is_not_hex_or_not_asap_is_refused_by_name() {
    for (hex, why) in [
        ("0g", "hexadecimal"),
        ("123", "hexadecimal"),
        ("0102", "not an ASAP message"),
    ] {
        let out = loadgen(&["echo", "--listen", "tcp://127.0.0.1:0", "--answer-hex", hex]);
        assert!(!out.status.success(), "{hex}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("--answer-hex") && stderr.contains(why),
            "{hex}: {stderr}"
        );
        assert!(out.stdout.is_empty(), "{hex}: nothing listened");
    }
}

#[test]
fn rounds_without_a_closed_loop_floor_are_refused() {
    for extra in [&["--no-floor"][..], &["--rate", "1000"][..]] {
        let mut args = vec![
            "resolve",
            "--registrar",
            "tcp://127.0.0.1:1",
            "--rounds",
            "3",
        ];
        args.extend(extra);
        let out = loadgen(&args);
        assert!(!out.status.success(), "{extra:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("--rounds 3"), "{extra:?}: {stderr}");
        assert!(out.stdout.is_empty(), "{extra:?}: nothing ran");
    }
}
