//! `--version` names the build's commit (shards/build.rs), as packages and the
//! `rserpool_build_info` metric report it.

use std::process::Command;

#[test]
fn version_names_the_crate_version_and_the_commit() {
    let out = Command::new(env!("CARGO_BIN_EXE_rserpool-registrar"))
        .arg("--version")
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let commit = env!("RSERPOOL_COMMIT");
    assert_eq!(
        text.trim_end(),
        format!(
            "rserpool-registrar {} (commit {commit})",
            env!("CARGO_PKG_VERSION")
        )
    );
    // A short hash, optionally "+dirty", or "unknown" outside a git checkout; unless a
    // packager named the commit (RSERPOOL_COMMIT in the build's environment).
    if std::env::var_os("RSERPOOL_COMMIT").is_some() {
        return;
    }
    let hash = commit.strip_suffix("+dirty").unwrap_or(commit);
    assert!(
        hash == "unknown" || (!hash.is_empty() && hash.bytes().all(|b| b.is_ascii_hexdigit())),
        "{commit}"
    );
}
