//! The transport write queue, flushed through both sinks: a socket pair
//! (`sendmsg`) and a pipe (`writev`).

use std::os::fd::RawFd;

use ferroloop_core::io::write_buffer::MAX_IOVECS;
use ferroloop_core::sys::{pipe, socket};
use ferroloop_core::{Sink, WriteBuffer};

struct Pair {
    a: RawFd,
    b: RawFd,
}

impl Pair {
    fn new() -> Self {
        let (a, b) = socket::socketpair_nonblocking().unwrap();
        Pair { a, b }
    }

    fn read_all(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let mut buf = [0u8; 65536];
        while let Ok(n @ 1..) = socket::recv(self.b, &mut buf) {
            out.extend_from_slice(&buf[..n]);
        }
        out
    }
}

impl Drop for Pair {
    fn drop(&mut self) {
        // SAFETY: the test owns both descriptors.
        unsafe {
            libc::close(self.a);
            if self.b >= 0 {
                libc::close(self.b);
            }
        }
    }
}

fn chunks(n: usize, size: usize) -> Vec<Vec<u8>> {
    (0..n).map(|i| vec![(i % 251) as u8; size]).collect()
}

#[test]
fn everything_arrives_in_order_across_partial_writes() {
    let pair = Pair::new();
    let mut buf = WriteBuffer::new();
    let data = chunks(3 * MAX_IOVECS, 1000);
    let expected: Vec<u8> = data.iter().flatten().copied().collect();
    for c in data {
        buf.push(c);
    }
    assert_eq!(buf.len(), expected.len());
    let mut received = Vec::new();
    let mut done = Vec::new();
    while !buf.is_empty() {
        let before = buf.len();
        let n = buf.flush(Sink::Socket, pair.a, &mut done).unwrap();
        assert_eq!(buf.len(), before - n);
        received.extend(pair.read_all());
    }
    received.extend(pair.read_all());
    assert_eq!(received, expected);
    assert_eq!(done.len(), 3 * MAX_IOVECS);
}

#[test]
fn full_socket_reports_zero_and_keeps_data() {
    let pair = Pair::new();
    // Fill the socket.
    let big = vec![7u8; 1 << 20];
    let mut sent = 0;
    while let Ok(n) = socket::send(pair.a, &big) {
        sent += n;
        if n == 0 {
            break;
        }
    }
    assert!(sent > 0);
    let mut buf = WriteBuffer::new();
    buf.push(vec![1u8; 10]);
    let mut done = Vec::new();
    assert_eq!(buf.flush(Sink::Socket, pair.a, &mut done).unwrap(), 0);
    assert_eq!(buf.len(), 10);
    assert!(done.is_empty());
}

#[test]
fn consume_across_chunk_boundaries() {
    let mut buf = WriteBuffer::new();
    buf.push(vec![1u8; 5]);
    buf.push(vec![2u8; 5]);
    buf.push(vec![3u8; 5]);
    let mut done = Vec::new();
    buf.consume(7, &mut done);
    assert_eq!(done.len(), 1);
    assert_eq!(buf.len(), 8);
    buf.consume(8, &mut done);
    assert_eq!(done.len(), 3);
    assert!(buf.is_empty());
}

#[test]
fn errors_carry_errno_and_clear_returns_chunks() {
    let mut pair = Pair::new();
    // SAFETY: shuts down the reading side of our own socket pair.
    unsafe { libc::shutdown(pair.b, libc::SHUT_RD) };
    let mut buf = WriteBuffer::new();
    buf.push(vec![0u8; 4]);
    let mut done = Vec::new();
    // Writing to a peer that shut down reading succeeds on Linux AF_UNIX until
    // the peer closes; closing it gives EPIPE without a SIGPIPE.
    // SAFETY: closes our own descriptor, marked closed for Drop.
    unsafe { libc::close(pair.b) };
    pair.b = -1;
    let err = buf.flush(Sink::Socket, pair.a, &mut done).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EPIPE));
    assert_eq!(buf.clear().len(), 1);
    assert!(buf.is_empty());
}

/// A pipe, closed on drop (ends set to -1 are already closed).
struct Pipe {
    read: RawFd,
    write: RawFd,
}

impl Pipe {
    fn new() -> Self {
        let (read, write) = pipe::pipe_nonblocking().unwrap();
        Pipe { read, write }
    }

    fn read_all(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let mut buf = [0u8; 65536];
        while let Ok(n @ 1..) = pipe::read(self.read, &mut buf) {
            out.extend_from_slice(&buf[..n]);
        }
        out
    }
}

impl Drop for Pipe {
    fn drop(&mut self) {
        for fd in [self.read, self.write] {
            if fd >= 0 {
                let _ = pipe::close(fd);
            }
        }
    }
}

#[test]
fn pipe_sink_flushes_with_writev_in_order() {
    let p = Pipe::new();
    let mut buf = WriteBuffer::new();
    let data = chunks(2 * MAX_IOVECS + 3, 3000);
    let expected: Vec<u8> = data.iter().flatten().copied().collect();
    for c in data {
        buf.push(c);
    }
    let mut received = Vec::new();
    let mut done = Vec::new();
    while !buf.is_empty() {
        buf.flush(Sink::Pipe, p.write, &mut done).unwrap();
        received.extend(p.read_all());
    }
    assert_eq!(received, expected);
    assert_eq!(done.len(), 2 * MAX_IOVECS + 3);
}

#[test]
fn socket_sink_refuses_a_pipe_and_pipe_sink_takes_it() {
    let p = Pipe::new();
    let err = Sink::Socket.write(p.write, b"x").unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::ENOTSOCK));
    assert_eq!(Sink::Pipe.write(p.write, b"xy").unwrap(), 2);
    assert_eq!(p.read_all(), b"xy");
}

#[test]
fn pipe_without_reader_reports_epipe() {
    // The Rust runtime ignores SIGPIPE, as the Python interpreter does, so
    // the write fails with EPIPE instead of killing the process.
    let mut p = Pipe::new();
    pipe::close(p.read).unwrap();
    p.read = -1;
    let mut buf = WriteBuffer::new();
    buf.push(vec![1u8; 10]);
    let err = buf.flush(Sink::Pipe, p.write, &mut Vec::new()).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EPIPE));
    assert_eq!(buf.len(), 10);
}

#[test]
fn full_pipe_reports_zero_and_keeps_data() {
    let p = Pipe::new();
    let big = vec![3u8; 1 << 20];
    while Sink::Pipe.write(p.write, &big).is_ok() {}
    let mut buf = WriteBuffer::new();
    buf.push(vec![1u8; 10]);
    let mut done = Vec::new();
    assert_eq!(buf.flush(Sink::Pipe, p.write, &mut done).unwrap(), 0);
    assert_eq!(buf.len(), 10);
    assert!(done.is_empty());
}
