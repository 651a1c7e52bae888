//! Child-process system calls: `pidfd_open`, `pidfd_send_signal`, `kill`,
//! `waitid` (on a pidfd or on one pid), and the `eventfd` the SIGCHLD
//! fallback wakes loops with. See the module contract in [`crate::sys`].
//!
//! Nothing here waits on "any child": every wait names one process, by
//! pidfd or by pid, so a process never reaps children that other code
//! (`subprocess.Popen`, another library) is responsible for.

use std::io;
use std::os::fd::RawFd;

use super::{cvt, cvt_size};

/// What `waitid` reported about a child: its `si_code` (`CLD_EXITED`,
/// `CLD_KILLED`, `CLD_DUMPED`, ...) and `si_status` (the exit code or the
/// signal number).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WaitInfo {
    /// `siginfo_t.si_code`.
    pub code: libc::c_int,
    /// `siginfo_t.si_status`.
    pub status: libc::c_int,
}

/// Whom a `waitid` call is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WaitFor {
    /// The process a pidfd refers to (`P_PIDFD`, Linux 5.4+).
    Pidfd(RawFd),
    /// One child, by process id (`P_PID`).
    Pid(libc::pid_t),
}

/// `pidfd_open(pid, 0)`: a close-on-exec descriptor that refers to process
/// `pid` for as long as it is open, and becomes readable when the process
/// exits (Linux 5.3+; `ENOSYS` before).
pub fn pidfd_open(pid: libc::pid_t) -> io::Result<RawFd> {
    // SAFETY: no pointers; the kernel validates the arguments.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    cvt(fd as libc::c_int)
}

/// `pidfd_send_signal(pidfd, sig, NULL, 0)`: signals exactly the process
/// the pidfd refers to (no pid-reuse race); `ESRCH` once it has been
/// reaped.
pub fn pidfd_send_signal(pidfd: RawFd, sig: libc::c_int) -> io::Result<()> {
    // SAFETY: a null siginfo is allowed (the kernel fills in SI_USER).
    let rc = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd,
            sig,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    cvt(rc as libc::c_int).map(drop)
}

/// `kill(pid, sig)`.
pub fn kill(pid: libc::pid_t, sig: libc::c_int) -> io::Result<()> {
    // SAFETY: no pointers.
    cvt(unsafe { libc::kill(pid, sig) }).map(drop)
}

/// `waitid(who, WEXITED | WNOHANG | extra_flags)`: the exit of the child,
/// or `None` if it is still running. With `WNOWAIT` in `extra_flags` the
/// child is left waitable (a peek). `ECHILD` means the child was already
/// reaped (by other code) or is not ours.
pub fn waitid(who: WaitFor, extra_flags: libc::c_int) -> io::Result<Option<WaitInfo>> {
    let (idtype, id) = match who {
        WaitFor::Pidfd(fd) => (libc::P_PIDFD, fd as libc::id_t),
        WaitFor::Pid(pid) => (libc::P_PID, pid as libc::id_t),
    };
    // SAFETY: a zeroed siginfo_t is a valid out-parameter.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    let flags = libc::WEXITED | libc::WNOHANG | extra_flags;
    // SAFETY: `info` is writable for the call.
    cvt(unsafe { libc::waitid(idtype, id, &mut info, flags) })?;
    // SAFETY: waitid succeeded: `si_pid` is 0 if no child changed state
    // (WNOHANG), otherwise the SIGCHLD fields are filled in.
    let (pid, status) = unsafe { (info.si_pid(), info.si_status()) };
    if pid == 0 {
        return Ok(None);
    }
    Ok(Some(WaitInfo {
        code: info.si_code,
        status,
    }))
}

/// A new non-blocking, close-on-exec `eventfd` with a zero counter.
pub fn eventfd() -> io::Result<RawFd> {
    // SAFETY: no pointers.
    cvt(unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) })
}

/// Adds one to an eventfd's counter (making it readable). One `write`
/// system call: async-signal-safe, so a signal handler may call it.
pub fn eventfd_signal(fd: RawFd) -> io::Result<()> {
    let one: u64 = 1;
    // SAFETY: `one` is valid for reads of 8 bytes for the call.
    cvt_size(unsafe { libc::write(fd, (&one as *const u64).cast(), 8) }).map(drop)
}

/// Reads (and so resets) an eventfd's counter: the count, or `WouldBlock`
/// if it was zero.
pub fn eventfd_take(fd: RawFd) -> io::Result<u64> {
    let mut count: u64 = 0;
    // SAFETY: `count` is valid for writes of 8 bytes for the call.
    cvt_size(unsafe { libc::read(fd, (&mut count as *mut u64).cast(), 8) })?;
    Ok(count)
}
