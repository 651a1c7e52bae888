//! A file descriptor that can be shared between threads and closed once.
//!
//! The loop's epoll instance and self-pipe are used from the loop thread
//! (polling) and from any thread (`call_soon_threadsafe` writes to the pipe),
//! but they are closed by `loop.close()`. `SharedFd` keeps the number in an
//! atomic so that every user sees either the open descriptor or `-1`, and the
//! close happens exactly once.

use std::io;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicI32, Ordering};

/// An owned file descriptor with an idempotent, thread-safe `close`.
#[derive(Debug)]
pub struct SharedFd {
    /// The descriptor, or `-1` once closed.
    fd: AtomicI32,
}

impl SharedFd {
    /// Takes ownership of `fd`.
    pub fn new(fd: RawFd) -> Self {
        Self {
            fd: AtomicI32::new(fd),
        }
    }

    /// The descriptor, or `None` when closed.
    pub fn get(&self) -> Option<RawFd> {
        let fd = self.fd.load(Ordering::Acquire);
        (fd >= 0).then_some(fd)
    }

    /// The descriptor, or `EBADF` when closed.
    pub fn require(&self) -> io::Result<RawFd> {
        self.get()
            .ok_or_else(|| io::Error::from_raw_os_error(libc::EBADF))
    }

    /// Closes the descriptor; later calls do nothing.
    pub fn close(&self) {
        let fd = self.fd.swap(-1, Ordering::AcqRel);
        if fd >= 0 {
            // SAFETY: we owned `fd` and the swap above guarantees that no
            // other caller closes it again.
            unsafe {
                libc::close(fd);
            }
        }
    }
}

impl Drop for SharedFd {
    fn drop(&mut self) {
        self.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::cvt;

    #[test]
    fn close_is_idempotent() {
        let mut fds = [0; 2];
        // SAFETY: `fds` has room for the two descriptors pipe() writes.
        cvt(unsafe { libc::pipe(fds.as_mut_ptr()) }).unwrap();
        let a = SharedFd::new(fds[0]);
        let b = SharedFd::new(fds[1]);
        assert_eq!(a.get(), Some(fds[0]));
        a.close();
        a.close();
        assert_eq!(a.get(), None);
        assert_eq!(a.require().unwrap_err().raw_os_error(), Some(libc::EBADF));
        drop(b);
    }
}
