//! The SIGCHLD fallback: a process-wide handler that wakes every loop
//! watching children, where pidfds are not available.
//!
//! Each interested party (a loop's child reaper, the orphan reaper) holds a
//! [`SigchldWake`]: an eventfd registered in a fixed table of slots. The
//! handler, installed with `sigaction` the first time a wake is made,
//! writes to every registered eventfd (one `write` each, async-signal-safe)
//! and then calls the handler it replaced, if that was a function, so
//! Python's own SIGCHLD handler (or anyone else's) still runs. The loops
//! poll their eventfd like any other descriptor and, when it is readable,
//! wait for each of their own children by pid; since SIGCHLD signals
//! coalesce, a wake means "some child changed state", never which one.
//!
//! Signals are delivered to whichever thread does not block them, so the
//! fallback works whether the loops run in the main thread or not, and it
//! does not use Python's `signal` module (which only the main thread may
//! use). If other code replaces the SIGCHLD handler later (Python's
//! `signal.signal(SIGCHLD, ...)`), the next [`SigchldWake::new`] or
//! [`ensure_installed`] call installs this one again, chaining to the new
//! one; a child that exits while the handler is replaced is noticed at the
//! next SIGCHLD or nudge.
//!
//! Unregistering a wake must not race a handler about to write to its
//! descriptor (which could meanwhile be closed and reused): the handler
//! counts itself in [`IN_HANDLER`] before it reads a slot, and the
//! unregistering thread clears the slot, then waits until no handler is
//! running before it closes the eventfd.

use std::io;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicI32, AtomicUsize, Ordering::SeqCst};
use std::sync::Mutex;

use crate::sys::process;

/// Most wakes registered at once (loops with children, plus the orphan
/// reaper).
pub const SLOTS: usize = 128;

/// The registered eventfds; `-1` marks a free slot.
static WAKE_FDS: [AtomicI32; SLOTS] = [const { AtomicI32::new(-1) }; SLOTS];
/// Handlers currently running (see the module documentation).
static IN_HANDLER: AtomicUsize = AtomicUsize::new(0);
/// The replaced handler (`sa_sigaction`) and its flags, to chain to.
static PREVIOUS_HANDLER: AtomicUsize = AtomicUsize::new(libc::SIG_DFL);
static PREVIOUS_FLAGS: AtomicI32 = AtomicI32::new(0);
/// Serialises installation checks.
static INSTALL: Mutex<()> = Mutex::new(());

/// The handler. It runs as a signal handler, outside any of PyO3's panic
/// trampolines, and must not unwind: it only loads and stores atomics,
/// writes to eventfds and calls the handler it replaced (no allocation,
/// formatting, indexing or locking).
extern "C" fn on_sigchld(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    // SAFETY: reading errno through libc's thread-local accessor.
    let saved_errno = unsafe { *libc::__errno_location() };
    IN_HANDLER.fetch_add(1, SeqCst);
    for slot in &WAKE_FDS {
        let fd = slot.load(SeqCst);
        if fd >= 0 {
            // Nothing to do about a failure inside a signal handler (the
            // counter cannot overflow in practice).
            let _ = process::eventfd_signal(fd);
        }
    }
    IN_HANDLER.fetch_sub(1, SeqCst);
    let previous = PREVIOUS_HANDLER.load(SeqCst);
    if previous != libc::SIG_DFL && previous != libc::SIG_IGN {
        if PREVIOUS_FLAGS.load(SeqCst) & libc::SA_SIGINFO != 0 {
            type Action = extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void);
            // SAFETY: the value came from `sa_sigaction` of a handler
            // installed with SA_SIGINFO, so it is a function of this type.
            let action: Action = unsafe { std::mem::transmute::<usize, Action>(previous) };
            action(sig, info, ctx);
        } else {
            type Handler = extern "C" fn(libc::c_int);
            // SAFETY: the value came from `sa_handler` (the same field) of
            // a plain handler, so it is a function of this type.
            let handler: Handler = unsafe { std::mem::transmute::<usize, Handler>(previous) };
            handler(sig);
        }
    }
    // SAFETY: as above.
    unsafe { *libc::__errno_location() = saved_errno };
}

/// Installs the SIGCHLD handler unless it is the current one; the handler
/// it replaces is chained to.
pub fn ensure_installed() -> io::Result<()> {
    let _guard = INSTALL.lock().unwrap_or_else(|e| e.into_inner());
    // SAFETY: a zeroed sigaction is a valid out-parameter.
    let mut current: libc::sigaction = unsafe { std::mem::zeroed() };
    // SAFETY: reads the current action into `current`.
    crate::sys::cvt(unsafe { libc::sigaction(libc::SIGCHLD, std::ptr::null(), &mut current) })?;
    let ours = on_sigchld as *const () as usize;
    if current.sa_sigaction == ours {
        return Ok(());
    }
    PREVIOUS_FLAGS.store(current.sa_flags, SeqCst);
    PREVIOUS_HANDLER.store(current.sa_sigaction, SeqCst);
    // SAFETY: a zeroed sigaction is a valid starting point.
    let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
    action.sa_sigaction = ours;
    action.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART | libc::SA_NOCLDSTOP | libc::SA_ONSTACK;
    // SAFETY: `action.sa_mask` is a valid sigset to empty.
    unsafe { libc::sigemptyset(&mut action.sa_mask) };
    // SAFETY: installs a handler that only makes async-signal-safe calls.
    crate::sys::cvt(unsafe { libc::sigaction(libc::SIGCHLD, &action, std::ptr::null_mut()) })?;
    Ok(())
}

/// An eventfd that becomes readable at every SIGCHLD.
#[derive(Debug)]
pub struct SigchldWake {
    fd: RawFd,
    slot: usize,
}

impl SigchldWake {
    /// Registers a new wake (and installs the handler if needed). Fails
    /// with `ENOSPC` when all [`SLOTS`] are taken.
    pub fn new() -> io::Result<Self> {
        let fd = process::eventfd()?;
        let Some(slot) =
            (0..SLOTS).find(|&i| WAKE_FDS[i].compare_exchange(-1, fd, SeqCst, SeqCst).is_ok())
        else {
            let _ = crate::sys::pipe::close(fd);
            return Err(io::Error::from_raw_os_error(libc::ENOSPC));
        };
        let wake = SigchldWake { fd, slot };
        ensure_installed()?;
        Ok(wake)
    }

    /// The eventfd to poll.
    pub fn fd(&self) -> RawFd {
        self.fd
    }

    /// Resets the eventfd: whether a SIGCHLD (or a nudge) came since the
    /// last call.
    pub fn take(&self) -> bool {
        process::eventfd_take(self.fd).is_ok()
    }

    /// Makes the eventfd readable without a signal: a child was just added,
    /// and may have exited before its watcher knew of it.
    pub fn nudge(&self) {
        let _ = process::eventfd_signal(self.fd);
    }
}

impl Drop for SigchldWake {
    fn drop(&mut self) {
        WAKE_FDS[self.slot].store(-1, SeqCst);
        while IN_HANDLER.load(SeqCst) != 0 {
            std::hint::spin_loop();
        }
        let _ = crate::sys::pipe::close(self.fd);
    }
}
