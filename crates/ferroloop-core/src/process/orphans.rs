//! The orphan reaper: one thread per process that reaps children whose
//! watcher went away before they exited (their loop was closed, or the
//! watch dropped), so that no zombie is left behind.
//!
//! The thread starts with the first orphan that is still running and then
//! stays, blocked in its own epoll instance (all signals blocked, so it
//! never takes a signal meant for the interpreter's threads). In pidfd mode
//! it polls each orphan's pidfd; in SIGCHLD mode it polls a
//! [`SigchldWake`] and tries every orphan's pid at each wake. An orphan
//! that is already reaped (by us or, as `ECHILD` tells, by other code) is
//! simply forgotten.

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::{Mutex, Once, OnceLock};

use super::sigchld::SigchldWake;
use crate::poller::{Events, Interest, Poller};
use crate::sys::process::{self, WaitFor};

/// A child nobody else waits for.
struct Orphan {
    pid: libc::pid_t,
    pidfd: Option<OwnedFd>,
}

impl Orphan {
    /// Reaps it if it exited: whether it is gone (reaped, or not ours to
    /// wait for any more).
    fn reap(&self) -> bool {
        let who = match &self.pidfd {
            Some(fd) => WaitFor::Pidfd(fd.as_raw_fd()),
            None => WaitFor::Pid(self.pid),
        };
        let result = match process::waitid(who, 0) {
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) && self.pidfd.is_some() => {
                process::waitid(WaitFor::Pid(self.pid), 0)
            }
            other => other,
        };
        !matches!(result, Ok(None))
    }
}

/// Token of the SIGCHLD wake in the reaper's poller.
const WAKE_TOKEN: u64 = u64::MAX;

struct Reaper {
    poller: Poller,
    /// The SIGCHLD wake, made with the first orphan watched by pid.
    wake: OnceLock<Option<SigchldWake>>,
    orphans: Mutex<Orphans>,
}

#[derive(Default)]
struct Orphans {
    by_token: HashMap<u64, Orphan>,
    next_token: u64,
}

static REAPER: OnceLock<Option<Reaper>> = OnceLock::new();

/// The reaper, and its thread, started on first use; `None` if they could
/// not be set up.
fn reaper() -> Option<&'static Reaper> {
    static THREAD: Once = Once::new();
    let reaper: &'static Reaper = REAPER.get_or_init(|| Reaper::new().ok()).as_ref()?;
    THREAD.call_once(|| {
        let _ = std::thread::Builder::new()
            .name("ferroloop-orphan-reaper".into())
            .spawn(move || {
                block_signals();
                reaper.run();
            });
    });
    Some(reaper)
}

/// Blocks every signal in the calling thread.
fn block_signals() {
    // SAFETY: `set` is a valid sigset filled before use; the call only
    // changes this thread's mask.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut set);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
}

impl Reaper {
    fn new() -> io::Result<Self> {
        Ok(Reaper {
            poller: Poller::new()?,
            wake: OnceLock::new(),
            orphans: Mutex::new(Orphans::default()),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Orphans> {
        self.orphans.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The SIGCHLD wake, registered with the poller on first use.
    fn wake(&self) -> Option<&SigchldWake> {
        self.wake
            .get_or_init(|| {
                let wake = SigchldWake::new().ok()?;
                self.poller
                    .add(wake.fd(), WAKE_TOKEN, Interest::READABLE)
                    .ok()?;
                Some(wake)
            })
            .as_ref()
    }

    fn run(&self) {
        let mut events = Events::with_capacity(64);
        loop {
            if self.poller.wait(&mut events, None).is_err() {
                continue;
            }
            let mut orphans = self.lock();
            for event in events.iter() {
                if event.token == WAKE_TOKEN {
                    if let Some(wake) = self.wake() {
                        wake.take();
                    }
                    orphans
                        .by_token
                        .retain(|_, o| o.pidfd.is_some() || !o.reap());
                } else if let Some(orphan) = orphans.by_token.get(&event.token) {
                    if orphan.reap() {
                        if let Some(fd) = &orphan.pidfd {
                            let _ = self.poller.delete(fd.as_raw_fd());
                        }
                        orphans.by_token.remove(&event.token);
                    }
                }
            }
            events.clear();
        }
    }

    fn adopt(&self, orphan: Orphan) {
        let mut orphans = self.lock();
        let token = orphans.next_token;
        orphans.next_token += 1;
        match &orphan.pidfd {
            Some(fd) => {
                if self
                    .poller
                    .add(fd.as_raw_fd(), token, Interest::READABLE)
                    .is_err()
                {
                    return;
                }
            }
            // It may have exited before it was listed here: look once more.
            None => match self.wake() {
                Some(wake) => wake.nudge(),
                None => return,
            },
        }
        orphans.by_token.insert(token, orphan);
    }
}

/// Takes over child `pid` (with its pidfd, if watched by one): reaped now
/// if it has exited, otherwise by the reaper thread when it does.
pub fn adopt(pid: libc::pid_t, pidfd: Option<OwnedFd>) {
    let orphan = Orphan { pid, pidfd };
    if orphan.reap() {
        return;
    }
    if let Some(reaper) = reaper() {
        reaper.adopt(orphan);
    }
}

/// How many orphans are waiting to be reaped (for tests).
pub fn pending() -> usize {
    REAPER
        .get()
        .and_then(Option::as_ref)
        .map_or(0, |r| r.lock().by_token.len())
}
