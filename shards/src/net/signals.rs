//! Waiting for SIGTERM, SIGINT or SIGHUP on the main thread.

use std::io;

/// Blocks SIGTERM, SIGINT and SIGHUP in the calling thread; threads spawned afterwards inherit
/// the mask, so the signals stay pending for [`wait`]. Call before starting the shards.
pub fn block_termination() -> io::Result<()> {
    // SAFETY: sigset_t is plain data initialised by sigemptyset before use; the
    // pointers are to locals that outlive the calls.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGHUP);
        let rc = libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        if rc != 0 {
            return Err(io::Error::from_raw_os_error(rc));
        }
    }
    Ok(())
}

/// Waits until SIGTERM, SIGINT or SIGHUP arrives; returns its number.
pub fn wait() -> io::Result<i32> {
    // SAFETY: as above; sigwait writes the signal number into a local.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGHUP);
        let mut sig = 0;
        let rc = libc::sigwait(&set, &mut sig);
        if rc != 0 {
            return Err(io::Error::from_raw_os_error(rc));
        }
        Ok(sig)
    }
}
