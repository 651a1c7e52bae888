//! Pipe (and other non-socket descriptor) system calls: `read`, `write`,
//! `writev`, `close`. See the module contract in [`crate::sys`]. Pipes cannot
//! be written with `send`/`sendmsg` (`ENOTSOCK`); these work on any
//! descriptor.

use std::io::{self, IoSlice};
use std::os::fd::RawFd;

use super::{cvt, cvt_size, iovecs};

/// `read(fd, buf)`: the number of bytes read (0 at end of file).
pub fn read(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: `buf` is valid for writes of `buf.len()` bytes.
    cvt_size(unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) })
}

/// `write(fd, data)`: the number of bytes written.
pub fn write(fd: RawFd, data: &[u8]) -> io::Result<usize> {
    // SAFETY: `data` is valid for reads for the duration of the call.
    cvt_size(unsafe { libc::write(fd, data.as_ptr().cast(), data.len()) })
}

/// `writev(fd, bufs)`: the number of bytes written.
pub fn write_vectored(fd: RawFd, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
    let (iov, count) = iovecs(bufs);
    // SAFETY: the iovecs point into `bufs`, valid for the call; the kernel
    // only reads through them.
    cvt_size(unsafe { libc::writev(fd, iov, count) })
}

/// A new pipe, both ends non-blocking and close-on-exec: `(read, write)`.
pub fn pipe_nonblocking() -> io::Result<(RawFd, RawFd)> {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: `fds` has room for the two descriptors pipe2 writes.
    cvt(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) })?;
    Ok((fds[0], fds[1]))
}

/// `close(fd)`. The descriptor is gone whatever the result (Linux closes it
/// even when reporting `EINTR`), so the caller must not close it again.
pub fn close(fd: RawFd) -> io::Result<()> {
    // SAFETY: no pointers; the caller owns `fd` and gives it up.
    cvt(unsafe { libc::close(fd) }).map(drop)
}
