//! Socket system calls: receive, send (single and vectored), receive from
//! and send to an address (datagrams), shut down, socket pairs. See the
//! module contract in [`crate::sys`].

use std::io::{self, IoSlice};
use std::os::fd::RawFd;

use super::sockaddr::SockAddr;
use super::{cvt, cvt_size, iovecs};

/// `recv(fd, buf, 0)`: the number of bytes received (0 at end of stream).
pub fn recv(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: `buf` is valid for writes of `buf.len()` bytes.
    unsafe { recv_raw(fd, buf.as_mut_ptr(), buf.len()) }
}

/// `recv` into memory described by a raw pointer, for buffers Rust does not
/// own (a Python buffer, a `bytes` object being filled).
///
/// # Safety
/// `ptr` must be valid for writes of `len` bytes for the duration of the call.
pub unsafe fn recv_raw(fd: RawFd, ptr: *mut u8, len: usize) -> io::Result<usize> {
    // SAFETY: guaranteed by the caller.
    cvt_size(unsafe { libc::recv(fd, ptr.cast(), len, 0) })
}

/// `send(fd, data, MSG_NOSIGNAL)`: the number of bytes the kernel took.
pub fn send(fd: RawFd, data: &[u8]) -> io::Result<usize> {
    // SAFETY: `data` is valid for reads for the duration of the call.
    cvt_size(unsafe { libc::send(fd, data.as_ptr().cast(), data.len(), libc::MSG_NOSIGNAL) })
}

/// `sendmsg` of several buffers at once, with `MSG_NOSIGNAL`.
pub fn send_vectored(fd: RawFd, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
    let (iov, count) = iovecs(bufs);
    // SAFETY: a zeroed msghdr is a valid empty header.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = iov.cast_mut();
    msg.msg_iovlen = count as _;
    // SAFETY: the iovecs point into `bufs`, valid for the call; the kernel
    // only reads through them.
    cvt_size(unsafe { libc::sendmsg(fd, &msg, libc::MSG_NOSIGNAL) })
}

/// `recvfrom(fd, buf, 0)`: one datagram (cut to `buf.len()` bytes, as
/// `recvfrom` does) and its sender, written into `from`. The count is the
/// bytes received; a datagram from an unnamed socket leaves `from` empty.
pub fn recv_from(fd: RawFd, buf: &mut [u8], from: &mut SockAddr) -> io::Result<usize> {
    let (addr, len) = from.as_out();
    // SAFETY: `buf` is valid for writes of `buf.len()` bytes; `addr` and
    // `len` point into `from`, whose storage is as large as `*len` says.
    cvt_size(unsafe { libc::recvfrom(fd, buf.as_mut_ptr().cast(), buf.len(), 0, addr, len) })
}

/// `sendto(fd, data, MSG_NOSIGNAL, to)`: one datagram to `to`.
pub fn send_to(fd: RawFd, data: &[u8], to: &SockAddr) -> io::Result<usize> {
    // SAFETY: `data` is valid for reads of its length; `to` holds an
    // address of `to.len()` bytes.
    cvt_size(unsafe {
        libc::sendto(
            fd,
            data.as_ptr().cast(),
            data.len(),
            libc::MSG_NOSIGNAL,
            to.as_ptr(),
            to.len(),
        )
    })
}

/// Shuts the sending side of a socket down (`shutdown(fd, SHUT_WR)`).
pub fn shutdown_write(fd: RawFd) -> io::Result<()> {
    // SAFETY: no pointers; the kernel validates the descriptor.
    cvt(unsafe { libc::shutdown(fd, libc::SHUT_WR) }).map(drop)
}

/// A connected pair of non-blocking, close-on-exec Unix stream sockets.
pub fn socketpair_nonblocking() -> io::Result<(RawFd, RawFd)> {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: `fds` has room for the two descriptors socketpair writes.
    cvt(unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    })?;
    Ok((fds[0], fds[1]))
}
