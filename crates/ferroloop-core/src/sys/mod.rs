//! Thin wrappers over the system calls the loop makes on sockets, pipes and
//! child processes, and the socket addresses datagram calls take
//! (`sockaddr`).
//!
//! Every wrapper follows one contract (as mio's `sys` layer does):
//! - it takes raw descriptors and Rust slices, never Python objects;
//! - it makes exactly one system call: no retry on `EINTR` (the caller
//!   decides, since retrying may first require running Python's signal
//!   handlers) and no retry on `EAGAIN`;
//! - a failure is returned as `io::Error::last_os_error()`, so `errno` is
//!   kept and the bindings can raise the matching `OSError` subclass;
//! - nothing raises `SIGPIPE`: sockets are written with `MSG_NOSIGNAL`;
//!   pipes rely on the interpreter ignoring `SIGPIPE` (CPython does at start).
//!
//! The `unsafe` is confined here: callers pass slices whose validity the
//! borrow checker already guarantees, except for [`socket::recv_raw`] and
//! [`pipe::read_raw`], which are for writing into memory Rust does not own
//! (a Python buffer).

use std::ffi::CStr;
use std::io;

pub mod pipe;
pub mod process;
pub mod sockaddr;
pub mod socket;

/// Turns a libc `int` return value into an `io::Result`, reading `errno` on
/// `-1`.
pub fn cvt(rc: libc::c_int) -> io::Result<libc::c_int> {
    if rc == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

/// Turns a libc `ssize_t` return value (a byte count) into an
/// `io::Result<usize>`, reading `errno` on a negative value.
pub fn cvt_size(n: libc::ssize_t) -> io::Result<usize> {
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// `EIO`: what reading a pty whose other side closed fails with.
pub const EIO: i32 = libc::EIO;
/// `ECHILD`: waiting for a child that was already reaped (or is not ours).
pub const ECHILD: i32 = libc::ECHILD;
/// `ESRCH`: no such process.
pub const ESRCH: i32 = libc::ESRCH;

/// Whether the error means "not now: try again when the descriptor is
/// ready" (`EAGAIN`/`EWOULDBLOCK`, or an interrupted call).
pub fn would_block(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
    )
}

/// The text `os.strerror(code)` gives for an `errno` value.
pub fn strerror(code: i32) -> String {
    let mut buf = [0 as libc::c_char; 256];
    // SAFETY: `buf` is writable for its whole length; the XSI strerror_r
    // NUL-terminates what it writes on success.
    let rc = unsafe { libc::strerror_r(code, buf.as_mut_ptr(), buf.len()) };
    if rc != 0 {
        return format!("Unknown error {code}");
    }
    // SAFETY: strerror_r succeeded, so `buf` holds a NUL-terminated string.
    unsafe { CStr::from_ptr(buf.as_ptr()) }
        .to_string_lossy()
        .into_owned()
}

/// Converts slices to the `iovec`s of a vectored system call.
fn iovecs<'a>(bufs: &'a [io::IoSlice<'a>]) -> (*const libc::iovec, libc::c_int) {
    // `IoSlice` is guaranteed to be ABI-compatible with `iovec` on Unix.
    let count = bufs.len().min(libc::c_int::MAX as usize) as libc::c_int;
    (bufs.as_ptr().cast::<libc::iovec>(), count)
}
