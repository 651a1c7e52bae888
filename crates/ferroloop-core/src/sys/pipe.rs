//! Pipe (and other non-socket descriptor) system calls: `read`, `write`,
//! `writev`, `close`, the file type and the non-blocking flag. See the
//! module contract in [`crate::sys`]. Pipes cannot be written with
//! `send`/`sendmsg` (`ENOTSOCK`); these work on any descriptor.

use std::io::{self, IoSlice};
use std::os::fd::RawFd;

use super::{cvt, cvt_size, iovecs};

/// `read(fd, buf)`: the number of bytes read (0 at end of file).
pub fn read(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: `buf` is valid for writes of `buf.len()` bytes.
    cvt_size(unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) })
}

/// `read` into memory described by a raw pointer, for buffers Rust does not
/// own (a Python buffer, a `bytes` object being filled).
///
/// # Safety
/// `ptr` must be valid for writes of `len` bytes for the duration of the call.
pub unsafe fn read_raw(fd: RawFd, ptr: *mut u8, len: usize) -> io::Result<usize> {
    // SAFETY: guaranteed by the caller.
    cvt_size(unsafe { libc::read(fd, ptr.cast(), len) })
}

/// What kind of file a descriptor refers to (as far as pipe transports
/// care).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileKind {
    /// A pipe or FIFO.
    Fifo,
    /// A socket.
    Socket,
    /// A character device (a terminal, a pty, `/dev/null`).
    CharDevice,
    /// Anything else (a regular file, a directory, a block device).
    Other,
}

/// `fstat(fd)`'s file type.
pub fn file_kind(fd: RawFd) -> io::Result<FileKind> {
    // SAFETY: a zeroed `stat` is a valid out-parameter.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `st` is writable for the call.
    cvt(unsafe { libc::fstat(fd, &mut st) })?;
    Ok(match st.st_mode & libc::S_IFMT {
        libc::S_IFIFO => FileKind::Fifo,
        libc::S_IFSOCK => FileKind::Socket,
        libc::S_IFCHR => FileKind::CharDevice,
        _ => FileKind::Other,
    })
}

/// Sets `O_NONBLOCK` on the descriptor (`os.set_blocking(fd, False)`).
pub fn set_nonblocking(fd: RawFd) -> io::Result<()> {
    // SAFETY: no pointers.
    let flags = cvt(unsafe { libc::fcntl(fd, libc::F_GETFL) })?;
    if flags & libc::O_NONBLOCK == 0 {
        // SAFETY: no pointers.
        cvt(unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) })?;
    }
    Ok(())
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
