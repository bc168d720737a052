//! Child processes and this thread's scheduling, for the tools that start registrars
//! (the load generator's scope of registrar processes) and pace requests.

use std::io;
use std::os::unix::process::CommandExt as _;
use std::process::Command;

/// Makes the child that `cmd` starts die with this process (SIGKILL when the parent
/// ends, however it ends) and start with SIGINT and SIGTERM unblocked, even when this
/// process blocks them ([`super::signals::block_termination`]).
pub fn die_with_parent(cmd: &mut Command) {
    // SAFETY: the closure runs in the child between fork and exec and calls only
    // async-signal-safe functions (prctl, sigemptyset, sigaddset, sigprocmask).
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(io::Error::last_os_error());
            }
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, libc::SIGINT);
            libc::sigaddset(&mut set, libc::SIGTERM);
            libc::sigprocmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
            Ok(())
        });
    }
}

/// Sends SIGKILL to a child this process started and has not reaped (so its PID cannot
/// have been reused).
pub fn kill_child(pid: u32) -> io::Result<()> {
    let pid = libc::pid_t::try_from(pid).map_err(|_| io::Error::other("PID out of range"))?;
    // SAFETY: kill(2) takes no pointers.
    if unsafe { libc::kill(pid, libc::SIGKILL) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Lowers this thread's timer slack to 1 µs so that short sleeps end on time (the
/// default slack is 50 µs).
pub fn tighten_timer_slack() {
    // SAFETY: PR_SET_TIMERSLACK takes an integer argument and no pointers.
    unsafe {
        libc::prctl(libc::PR_SET_TIMERSLACK, 1_000 as libc::c_ulong);
    }
}
