//! Watching child processes from the event loop, without a thread per
//! child (the shape of tokio's `process/unix/pidfd_reaper.rs`).
//!
//! A [`Child`] is one process this process started (by `subprocess.Popen`
//! or otherwise), watched in one of two [`WatchMode`]s:
//! - **pidfd** (Linux 5.3+): `pidfd_open` gives a descriptor that becomes
//!   readable when the child exits; the loop polls it like any other
//!   descriptor and then reaps exactly that process with
//!   `waitid(P_PIDFD)`.
//! - **SIGCHLD** (older kernels, or `FERROLOOP_PIDFD=0` in the environment,
//!   which is how the fallback is tested): a process-wide SIGCHLD handler
//!   ([`sigchld`]) wakes every interested loop through its own eventfd, and
//!   each loop reaps its own children by pid (`waitid(P_PID)`).
//!
//! Either way only the process's own, named children are reaped: never
//! `waitpid(-1)`, which would steal the exit status of children other code
//! waits for. A child whose loop goes away while it still runs (the loop is
//! closed, or its watch dropped) is handed to [`orphans`], the process's
//! single reaper thread, so that no zombie is left behind.

pub mod child;
pub mod orphans;
pub mod sigchld;
pub mod status;

use std::sync::OnceLock;

pub use child::Child;
pub use status::ExitStatus;

/// How this process watches its children.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WatchMode {
    /// A pidfd per child, polled by the loop.
    Pidfd,
    /// The SIGCHLD handler and a wait by pid.
    Sigchld,
}

/// The environment variable that, set to `0`, forces the SIGCHLD fallback.
pub const PIDFD_ENV: &str = "FERROLOOP_PIDFD";

/// The mode of this process, decided once: pidfds if the kernel has them
/// and the environment does not turn them off.
pub fn mode() -> WatchMode {
    static MODE: OnceLock<WatchMode> = OnceLock::new();
    *MODE.get_or_init(|| {
        let disabled = std::env::var_os(PIDFD_ENV).is_some_and(|v| v == "0");
        if !disabled && pidfd_supported() {
            WatchMode::Pidfd
        } else {
            WatchMode::Sigchld
        }
    })
}

/// Whether `pidfd_open` works here (Linux 5.3+, not blocked by a seccomp
/// filter).
fn pidfd_supported() -> bool {
    // SAFETY: no pointers.
    let me = unsafe { libc::getpid() };
    match crate::sys::process::pidfd_open(me) {
        Ok(fd) => {
            let _ = crate::sys::pipe::close(fd);
            true
        }
        Err(_) => false,
    }
}
