//! A thin, level-triggered epoll layer.
//!
//! Level-triggered readiness is what asyncio's `add_reader`/`add_writer`
//! promise: a callback keeps being scheduled for as long as the descriptor is
//! ready, whether or not the previous callback drained it. It also spares the
//! drain-until-`EAGAIN` read that edge-triggered designs need.
//!
//! Each registration carries a 64-bit token chosen by the caller; the bindings
//! put a generation number in it so that an event for a descriptor that was
//! closed and reused can be told apart from an event for the new owner.
//!
//! `EINTR` from `epoll_wait` is returned to the caller (as
//! `ErrorKind::Interrupted`) rather than retried, so that the Python bindings
//! can run signal handlers — that is how Ctrl-C reaches a sleeping loop.

use std::io;
use std::os::fd::RawFd;
use std::time::Duration;

use crate::fd::SharedFd;
use crate::sys::cvt;

/// Which readiness a registration asks for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Interest {
    /// Report when the descriptor is readable (or hung up / in error).
    pub readable: bool,
    /// Report when the descriptor is writable (or hung up / in error).
    pub writable: bool,
}

impl Interest {
    /// Readable only.
    pub const READABLE: Interest = Interest {
        readable: true,
        writable: false,
    };
    /// Writable only.
    pub const WRITABLE: Interest = Interest {
        readable: false,
        writable: true,
    };
    /// Both directions.
    pub const BOTH: Interest = Interest {
        readable: true,
        writable: true,
    };

    /// Whether neither direction is wanted.
    pub fn is_empty(self) -> bool {
        !self.readable && !self.writable
    }

    fn to_epoll(self) -> u32 {
        let mut bits = 0;
        if self.readable {
            bits |= libc::EPOLLIN as u32;
        }
        if self.writable {
            bits |= libc::EPOLLOUT as u32;
        }
        bits
    }
}

/// One readiness report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Event {
    /// The token given at registration.
    pub token: u64,
    /// Readable, or hung up / in error (as Python's `selectors` reports it).
    pub readable: bool,
    /// Writable, or hung up / in error (as Python's `selectors` reports it).
    pub writable: bool,
}

/// A reusable buffer of readiness reports filled by [`Poller::wait`].
pub struct Events {
    buf: Vec<libc::epoll_event>,
    len: usize,
}

impl Events {
    /// A buffer that receives at most `capacity` events per wait.
    pub fn with_capacity(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        Self {
            buf: vec![libc::epoll_event { events: 0, u64: 0 }; capacity],
            len: 0,
        }
    }

    /// Number of events from the last wait.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the last wait reported nothing.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Forgets the events of the last wait.
    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// The events of the last wait, in the order the kernel reported them.
    pub fn iter(&self) -> impl Iterator<Item = Event> + '_ {
        self.buf[..self.len].iter().map(|ev| {
            let bits = ev.events;
            let token = ev.u64;
            Event {
                token,
                readable: bits & !(libc::EPOLLOUT as u32) != 0,
                writable: bits & !(libc::EPOLLIN as u32) != 0,
            }
        })
    }
}

/// An epoll instance. All methods take `&self` and may be called from any
/// thread; `close` makes every later call fail with `EBADF`.
#[derive(Debug)]
pub struct Poller {
    epfd: SharedFd,
}

/// Converts a timeout to epoll's milliseconds, rounding up so that a wait
/// never ends before a timer is due (as CPython's `select.epoll.poll` does).
pub fn timeout_ms(timeout: Option<Duration>) -> libc::c_int {
    match timeout {
        None => -1,
        Some(d) => {
            let ms = d.as_nanos().div_ceil(1_000_000);
            ms.min(libc::c_int::MAX as u128) as libc::c_int
        }
    }
}

impl Poller {
    /// A new epoll instance (close-on-exec).
    pub fn new() -> io::Result<Self> {
        // SAFETY: epoll_create1 takes no pointers.
        let fd = cvt(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) })?;
        Ok(Self {
            epfd: SharedFd::new(fd),
        })
    }

    /// The epoll descriptor, or `None` when closed.
    pub fn as_raw_fd(&self) -> Option<RawFd> {
        self.epfd.get()
    }

    fn ctl(&self, op: libc::c_int, fd: RawFd, token: u64, interest: Interest) -> io::Result<()> {
        let epfd = self.epfd.require()?;
        let mut ev = libc::epoll_event {
            events: interest.to_epoll(),
            u64: token,
        };
        // SAFETY: `ev` is a valid epoll_event for the duration of the call;
        // the kernel validates both descriptors.
        cvt(unsafe { libc::epoll_ctl(epfd, op, fd, &mut ev) })?;
        Ok(())
    }

    /// Starts watching `fd`.
    pub fn add(&self, fd: RawFd, token: u64, interest: Interest) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_ADD, fd, token, interest)
    }

    /// Changes what `fd` is watched for.
    pub fn modify(&self, fd: RawFd, token: u64, interest: Interest) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_MOD, fd, token, interest)
    }

    /// Stops watching `fd`.
    pub fn delete(&self, fd: RawFd) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_DEL, fd, 0, Interest::default())
    }

    /// Waits for readiness, at most `timeout` (`None`: without limit).
    /// Returns the number of events stored in `events`.
    pub fn wait(&self, events: &mut Events, timeout: Option<Duration>) -> io::Result<usize> {
        events.len = 0;
        let epfd = self.epfd.require()?;
        let cap = events.buf.len().min(libc::c_int::MAX as usize) as libc::c_int;
        // SAFETY: `events.buf` holds `cap` writable epoll_event slots.
        let n = cvt(unsafe {
            libc::epoll_wait(epfd, events.buf.as_mut_ptr(), cap, timeout_ms(timeout))
        })?;
        events.len = n as usize;
        Ok(events.len)
    }

    /// Closes the epoll descriptor.
    pub fn close(&self) {
        self.epfd.close();
    }

    /// Whether `close` was called.
    pub fn is_closed(&self) -> bool {
        self.epfd.get().is_none()
    }
}
