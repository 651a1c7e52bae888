//! One watched child process: reaping it, peeking at whether it exited,
//! signalling it.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use super::status::ExitStatus;
use super::{orphans, WatchMode};
use crate::sys::process::{self, WaitFor};

/// A child process of this process, until it is reaped.
///
/// Dropping a `Child` that has not been reaped hands it to the process's
/// orphan reaper ([`orphans`]): it is reaped when it exits, whoever still
/// holds a reference to it.
#[derive(Debug)]
pub struct Child {
    pid: libc::pid_t,
    /// The pidfd, in [`WatchMode::Pidfd`].
    pidfd: Option<OwnedFd>,
    /// The child was reaped, here or (as `ECHILD` told) by other code:
    /// nothing is left to wait for or to signal.
    gone: bool,
}

impl Child {
    /// Starts watching `pid`, a child of this process, in `mode`. In pidfd
    /// mode, `ESRCH` means the child was already reaped by other code.
    pub fn new(pid: libc::pid_t, mode: WatchMode) -> io::Result<Self> {
        let pidfd = match mode {
            WatchMode::Pidfd => {
                let fd = process::pidfd_open(pid)?;
                // SAFETY: pidfd_open returned a new descriptor that nothing
                // else owns.
                Some(unsafe { OwnedFd::from_raw_fd(fd) })
            }
            WatchMode::Sigchld => None,
        };
        Ok(Child {
            pid,
            pidfd,
            gone: false,
        })
    }

    /// The process id.
    pub fn pid(&self) -> libc::pid_t {
        self.pid
    }

    /// The pidfd to poll for the exit (readable once the child exited), in
    /// pidfd mode.
    pub fn pidfd(&self) -> Option<RawFd> {
        self.pidfd.as_ref().map(AsRawFd::as_raw_fd)
    }

    /// Whether the child has been reaped (or found reaped by other code).
    pub fn is_gone(&self) -> bool {
        self.gone
    }

    fn wait_for(&self) -> WaitFor {
        match self.pidfd() {
            Some(fd) => WaitFor::Pidfd(fd),
            None => WaitFor::Pid(self.pid),
        }
    }

    /// `waitid` on this child, falling back from `P_PIDFD` to the pid on
    /// kernels that have pidfds but not `P_PIDFD` (5.3). The pid is still
    /// ours then: an unreaped child's pid cannot be reused.
    fn waitid(&self, extra_flags: libc::c_int) -> io::Result<Option<process::WaitInfo>> {
        match process::waitid(self.wait_for(), extra_flags) {
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) && self.pidfd.is_some() => {
                process::waitid(WaitFor::Pid(self.pid), extra_flags)
            }
            other => other,
        }
    }

    /// Reaps the child if it has exited: its status, or `None` while it
    /// runs. `ECHILD` (the error) means other code reaped it first; the
    /// status is then lost to us.
    pub fn try_wait(&mut self) -> io::Result<Option<ExitStatus>> {
        if self.gone {
            return Err(io::Error::from_raw_os_error(libc::ECHILD));
        }
        match self.waitid(0) {
            Ok(Some(info)) => {
                self.gone = true;
                Ok(Some(ExitStatus::from_wait_info(info)))
            }
            Ok(None) => Ok(None),
            Err(e) => {
                if e.raw_os_error() == Some(libc::ECHILD) {
                    self.gone = true;
                }
                Err(e)
            }
        }
    }

    /// Whether the child has exited, without reaping it (`WNOWAIT`): a
    /// child that is gone counts as exited.
    pub fn has_exited(&self) -> bool {
        if self.gone {
            return true;
        }
        !matches!(self.waitid(libc::WNOWAIT), Ok(None))
    }

    /// Sends `sig` to the child: through the pidfd in pidfd mode (exactly
    /// this process, even if its pid were reused), by pid otherwise.
    /// `ESRCH` once it has been reaped.
    pub fn send_signal(&self, sig: libc::c_int) -> io::Result<()> {
        if self.gone {
            return Err(io::Error::from_raw_os_error(libc::ESRCH));
        }
        match self.pidfd() {
            Some(fd) => process::pidfd_send_signal(fd, sig),
            None => process::kill(self.pid, sig),
        }
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if !self.gone {
            orphans::adopt(self.pid, self.pidfd.take());
        }
    }
}
