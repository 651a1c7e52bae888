//! How a child process ended, decoded from what `waitid` reports.

use crate::sys::process::WaitInfo;

/// The end of a child process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitStatus {
    /// It called `exit(code)` (or returned `code` from `main`).
    Exited(i32),
    /// A signal killed it (with or without a core dump).
    Signaled(i32),
}

impl ExitStatus {
    /// Decodes a `waitid` report (`si_code`, `si_status`).
    pub fn from_wait_info(info: WaitInfo) -> Self {
        match info.code {
            libc::CLD_KILLED | libc::CLD_DUMPED => ExitStatus::Signaled(info.status),
            // CLD_EXITED; waitid(WEXITED) reports nothing else.
            _ => ExitStatus::Exited(info.status),
        }
    }

    /// Decodes a `waitpid` status word (`os.waitstatus_to_exitcode`'s
    /// input); `None` for a stopped or continued child.
    pub fn from_wait_status(status: i32) -> Option<Self> {
        if libc::WIFEXITED(status) {
            Some(ExitStatus::Exited(libc::WEXITSTATUS(status)))
        } else if libc::WIFSIGNALED(status) {
            Some(ExitStatus::Signaled(libc::WTERMSIG(status)))
        } else {
            None
        }
    }

    /// `subprocess.Popen.returncode`'s convention: the exit code, or minus
    /// the signal number.
    pub fn returncode(self) -> i32 {
        match self {
            ExitStatus::Exited(code) => code,
            ExitStatus::Signaled(sig) => -sig,
        }
    }
}
