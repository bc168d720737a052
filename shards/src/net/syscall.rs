//! System calls made on every loop turn (`io_uring_enter`, `sendto`), issued directly.
//!
//! libc's `syscall` is a variadic function: every call shuffles its seven arguments
//! into the kernel's registers and stores a failure in `errno`, which is then read
//! back through a thread-local. On x86-64 the instruction is issued inline instead, and
//! the kernel's own result (`-errno` on failure) is returned as it is.

/// System call `nr` with six arguments; the kernel's result: non-negative on success,
/// `-errno` on failure.
///
/// # Safety
/// As for the system call itself: the arguments must be what `nr` expects, and every
/// pointer among them valid for what the kernel does with it during the call.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub unsafe fn syscall6(nr: libc::c_long, args: [usize; 6]) -> isize {
    let r: isize;
    // SAFETY: the Linux x86-64 system call convention: number and result in rax,
    // arguments in rdi, rsi, rdx, r10, r8, r9; the instruction overwrites rcx and r11
    // and touches no stack. What the call does with memory is the caller's contract.
    unsafe {
        core::arch::asm!(
            "syscall",
            inlateout("rax") nr as isize => r,
            in("rdi") args[0],
            in("rsi") args[1],
            in("rdx") args[2],
            in("r10") args[3],
            in("r8") args[4],
            in("r9") args[5],
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        );
    }
    r
}

/// [`syscall6`] through libc where the instruction is not written out.
///
/// # Safety
/// As for the system call itself (see the x86-64 version).
#[cfg(not(target_arch = "x86_64"))]
#[inline]
pub unsafe fn syscall6(nr: libc::c_long, args: [usize; 6]) -> isize {
    let [a, b, c, d, e, f] = args;
    // SAFETY: the caller's contract.
    let r = unsafe { libc::syscall(nr, a, b, c, d, e, f) };
    if r < 0 {
        -(std::io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EIO) as isize)
    } else {
        r as isize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_returns_the_kernels_result_or_its_negated_errno() {
        // SAFETY: getpid takes no arguments and touches no memory.
        let pid = unsafe { syscall6(libc::SYS_getpid, [0; 6]) };
        assert_eq!(pid, std::process::id() as isize);
        // SAFETY: close of a descriptor that cannot be open touches no memory.
        let bad = unsafe { syscall6(libc::SYS_close, [usize::MAX >> 2, 0, 0, 0, 0, 0]) };
        assert_eq!(bad, -(libc::EBADF as isize));
    }
}
