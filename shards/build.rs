// Sets `RSERPOOL_COMMIT` for `--version` and the build-info metric: the git commit's
// short hash, with "+dirty" if tracked files differed from it, or "unknown" when the
// sources are not a git checkout of this workspace (a package source, a tarball).
// A `RSERPOOL_COMMIT` in the build's environment wins (packagers building from a
// tarball can name the commit it came from).
//
// The script reruns only when HEAD or the branch it points to moves (a commit, a
// checkout), not on every build: the commit is compiled into the library, so each
// rerun rebuilds it. "+dirty" therefore says whether the tree was dirty when HEAD last
// moved; edits made since do not show until the next commit.
//
// `loadgen/build.rs` includes this file, so both binaries say the same.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=RSERPOOL_COMMIT");
    let commit = match std::env::var("RSERPOOL_COMMIT") {
        Ok(c) if !c.is_empty() => c,
        _ => from_git().unwrap_or_else(|| "unknown".to_owned()),
    };
    println!("cargo:rustc-env=RSERPOOL_COMMIT={commit}");
}

/// The commit of the checkout holding this workspace, or `None` outside one.
fn from_git() -> Option<String> {
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR")?);
    // Every binary crate sits one level below the workspace root.
    let root = manifest.parent()?;
    // A package source unpacked inside some other repository is not our checkout.
    let top = git(root, &["rev-parse", "--show-toplevel"])?;
    if Path::new(&top).canonicalize().ok()? != root.canonicalize().ok()? {
        return None;
    }
    watch(root);
    let hash = git(root, &["rev-parse", "--short=12", "HEAD"])?;
    // Optional locks off: a build must not rewrite the index (that would rerun this).
    let status = Command::new("git")
        .args(["status", "--porcelain", "--untracked-files=no"])
        .env("GIT_OPTIONAL_LOCKS", "0")
        .current_dir(root)
        .output()
        .ok()?;
    let dirty = !status.status.success() || !status.stdout.is_empty();
    Some(if dirty { format!("{hash}+dirty") } else { hash })
}

/// Reruns the script when HEAD moves: the HEAD file (a worktree has its own) and the
/// branch's ref (loose, or in packed-refs). Only files that exist are named: cargo
/// reruns every time for a missing one.
fn watch(root: &Path) {
    let path = |arg: &str| git(root, &["rev-parse", "--path-format=absolute", arg]);
    let mut files = Vec::new();
    if let Some(dir) = path("--git-dir") {
        files.push(Path::new(&dir).join("HEAD"));
    }
    if let Some(common) = path("--git-common-dir") {
        files.push(Path::new(&common).join("packed-refs"));
        if let Some(branch) = git(root, &["symbolic-ref", "-q", "HEAD"]) {
            files.push(Path::new(&common).join(branch));
        }
    }
    for f in files.iter().filter(|f| f.exists()) {
        println!("cargo:rerun-if-changed={}", f.display());
    }
}

/// One line of a git command's output, or `None` if git is missing or fails.
fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let s = String::from_utf8(out.stdout).ok()?;
    Some(s.trim().to_owned()).filter(|s| !s.is_empty())
}
