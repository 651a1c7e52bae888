//! The self-pipe: how another thread, or a signal, wakes a sleeping loop.
//!
//! A non-blocking `AF_UNIX` socket pair. Its write end doubles as Python's
//! signal wake-up descriptor (`signal.set_wakeup_fd`), so the C-level signal
//! handler writes the signal number into it; cross-thread wake-ups write a
//! zero byte, which no signal uses.
//!
//! Wake-ups are only written while the loop thread is actually sleeping in the
//! poller: the loop sets `sleeping` (holding the GIL) before it releases the
//! GIL to wait, and clears it as soon as the wait returns, before it has the
//! GIL back. Wakers test it while holding the GIL, so a waker either sees the
//! flag set (and writes, which ends the wait), or runs before the loop
//! computed its timeout or after the wait ended (and the loop reads the ready
//! queue after the poll). A busy loop, or one waiting to get the GIL back,
//! therefore pays no system call per `call_soon_threadsafe`.

use std::io;
use std::mem::MaybeUninit;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::fd::SharedFd;
use crate::sys::socket;

/// A non-blocking socket pair used to interrupt the poller.
#[derive(Debug)]
pub struct SelfPipe {
    read: SharedFd,
    write: SharedFd,
    /// Set while the loop thread waits in the poller without the GIL.
    sleeping: AtomicBool,
}

impl SelfPipe {
    /// Creates the pair (non-blocking, close-on-exec).
    pub fn new() -> io::Result<Self> {
        let (read, write) = socket::socketpair_nonblocking()?;
        Ok(Self {
            read: SharedFd::new(read),
            write: SharedFd::new(write),
            sleeping: AtomicBool::new(false),
        })
    }

    /// The end the loop polls and drains.
    pub fn read_fd(&self) -> Option<RawFd> {
        self.read.get()
    }

    /// The end wakers (and the signal machinery) write to.
    pub fn write_fd(&self) -> Option<RawFd> {
        self.write.get()
    }

    /// Marks the loop as about to sleep (`true`) or awake (`false`).
    pub fn set_sleeping(&self, sleeping: bool) {
        self.sleeping.store(sleeping, Ordering::SeqCst);
    }

    /// Whether the loop is currently sleeping in the poller.
    pub fn is_sleeping(&self) -> bool {
        self.sleeping.load(Ordering::SeqCst)
    }

    /// Writes a zero byte. A full pipe already guarantees a wake-up and a
    /// closed pipe means the loop is gone, so both are ignored.
    pub fn wake(&self) {
        if let Some(fd) = self.write.get() {
            let _ = socket::send(fd, &[0]);
        }
    }

    /// Wakes the loop only if it is sleeping; whether it wrote a wake-up.
    pub fn wake_if_sleeping(&self) -> bool {
        let sleeping = self.is_sleeping();
        if sleeping {
            self.wake();
        }
        sleeping
    }

    /// Reads what is pending and calls `on_signal` for every non-zero byte
    /// (a signal number written by Python's C-level signal handler).
    ///
    /// A read that does not fill the buffer took everything the socket held,
    /// so the drain stops there instead of asking again only to be told
    /// `EAGAIN`: one system call per wake-up rather than two. A byte written
    /// after that read is a later wake-up, which the (level-triggered)
    /// poller reports on its next wait.
    ///
    /// The buffer is not zeroed first (zeroing 4 KiB cost more instructions
    /// than the rest of a wake-up): only the bytes `recv` wrote are read.
    pub fn drain(&self, mut on_signal: impl FnMut(u8)) -> io::Result<()> {
        const SIZE: usize = 4096;
        let fd = self.read.require()?;
        let mut buf = [MaybeUninit::<u8>::uninit(); SIZE];
        loop {
            // SAFETY: `buf` is valid for writes of `SIZE` bytes.
            let err = match unsafe { socket::recv_raw(fd, buf.as_mut_ptr().cast(), SIZE) } {
                Ok(0) => return Ok(()),
                Ok(n) => {
                    // SAFETY: `recv` initialized the first `n` bytes (n <= SIZE).
                    let read = unsafe { std::slice::from_raw_parts(buf.as_ptr().cast::<u8>(), n) };
                    read.iter().filter(|&&b| b != 0).for_each(|&b| on_signal(b));
                    if n < SIZE {
                        return Ok(());
                    }
                    continue;
                }
                Err(err) => err,
            };
            match err.kind() {
                io::ErrorKind::Interrupted => continue,
                io::ErrorKind::WouldBlock => return Ok(()),
                _ => return Err(err),
            }
        }
    }

    /// Closes both ends.
    pub fn close(&self) {
        self.read.close();
        self.write.close();
    }
}
