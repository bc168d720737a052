//! Shards are pinned inside the set of cores the registrar was given (`taskset`,
//! systemd's `CPUAffinity=`), not to absolute core numbers.

use std::io::{BufRead as _, BufReader};
use std::os::unix::process::CommandExt as _;
use std::process::{Command, Stdio};

/// The cores thread `tid` of process `pid` may run on, as the kernel lists them.
fn allowed(pid: u32, tid: &str) -> Option<String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .map(|v| v.trim().to_owned())
}

/// The id of the thread named `name` in process `pid`.
fn thread(pid: u32, name: &str) -> Option<String> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .ok()?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .find(|tid| {
            std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/comm"))
                .is_ok_and(|c| c.trim_end() == name)
        })
}

#[test]
fn a_shard_is_pinned_to_the_first_core_of_the_given_set() {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    if cores < 2 {
        eprintln!("skipped: needs two cores");
        return;
    }
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rserpool-registrar"));
    cmd.args([
        "--asap",
        "tcp://127.0.0.1:0",
        "--shards",
        "1",
        "--log-level",
        "info",
    ])
    .stdout(Stdio::null())
    .stderr(Stdio::piped());
    // SAFETY: between fork and exec only the async-signal-safe sched_setaffinity runs,
    // on a set built before the fork.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    unsafe { libc::CPU_SET(1, &mut set) };
    unsafe {
        cmd.pre_exec(move || {
            if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().unwrap();
    let pid = child.id();
    // "registrar started" comes after every shard started, and so after its pinning.
    let started = BufReader::new(child.stderr.take().unwrap())
        .lines()
        .map_while(Result::ok)
        .any(|l| l.contains("registrar started"));
    let pinned = thread(pid, "shard-0").and_then(|tid| allowed(pid, &tid));
    let _ = child.kill();
    let _ = child.wait();
    assert!(started, "the registrar did not start");
    // Given core 1 alone, shard 0 runs on core 1, not on core 0.
    assert_eq!(pinned.as_deref(), Some("1"));
}
