//! The system-call wrappers: one call each, errno kept, no SIGPIPE.

use std::io::IoSlice;

use ferroloop_core::sys::{self, pipe, socket};

#[test]
fn socket_round_trip_and_vectored_send() {
    let (a, b) = socket::socketpair_nonblocking().unwrap();
    assert_eq!(socket::send(a, b"hello").unwrap(), 5);
    let parts = [IoSlice::new(b" "), IoSlice::new(b"world")];
    assert_eq!(socket::send_vectored(a, &parts).unwrap(), 6);
    let mut buf = [0u8; 64];
    let n = socket::recv(b, &mut buf).unwrap();
    assert_eq!(&buf[..n], b"hello world");
    let err = socket::recv(b, &mut buf).unwrap_err();
    assert!(sys::would_block(&err));
    assert_eq!(err.raw_os_error(), Some(libc::EAGAIN));
    socket::shutdown_write(a).unwrap();
    assert_eq!(socket::recv(b, &mut buf).unwrap(), 0, "end of stream");
    pipe::close(a).unwrap();
    assert_eq!(
        socket::send(b, b"x").unwrap_err().raw_os_error(),
        Some(libc::EPIPE),
        "no SIGPIPE: the error is returned"
    );
    pipe::close(b).unwrap();
}

#[test]
fn pipe_round_trip() {
    let (r, w) = pipe::pipe_nonblocking().unwrap();
    let parts = [IoSlice::new(b"ab"), IoSlice::new(b"cd")];
    assert_eq!(pipe::write_vectored(w, &parts).unwrap(), 4);
    assert_eq!(pipe::write(w, b"e").unwrap(), 1);
    let mut buf = [0u8; 8];
    assert_eq!(pipe::read(r, &mut buf).unwrap(), 5);
    assert_eq!(&buf[..5], b"abcde");
    assert!(sys::would_block(&pipe::read(r, &mut buf).unwrap_err()));
    pipe::close(w).unwrap();
    assert_eq!(pipe::read(r, &mut buf).unwrap(), 0, "end of file");
    pipe::close(r).unwrap();
}

#[test]
fn errors_keep_errno() {
    let mut buf = [0u8; 1];
    let err = socket::recv(-1, &mut buf).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EBADF));
    let (r, w) = pipe::pipe_nonblocking().unwrap();
    let err = socket::recv(r, &mut buf).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::ENOTSOCK));
    assert!(sys::cvt(-1).is_err());
    assert_eq!(sys::cvt_size(3).unwrap(), 3);
    pipe::close(r).unwrap();
    pipe::close(w).unwrap();
}

#[test]
fn strerror_gives_the_c_library_text() {
    assert_eq!(sys::strerror(libc::EPIPE), "Broken pipe");
    assert_eq!(sys::strerror(libc::ENOENT), "No such file or directory");
}
