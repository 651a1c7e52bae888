//! The transport write queue, on a socket pair with a small send buffer.

use std::os::fd::RawFd;

use ferroloop_core::write_buffer::{send, MAX_IOVECS};
use ferroloop_core::WriteBuffer;

struct Pair {
    a: RawFd,
    b: RawFd,
}

impl Pair {
    fn new() -> Self {
        let mut fds = [0; 2];
        // SAFETY: `fds` has room for the two descriptors socketpair writes.
        let rc = unsafe {
            libc::socketpair(
                libc::AF_UNIX,
                libc::SOCK_STREAM | libc::SOCK_NONBLOCK,
                0,
                fds.as_mut_ptr(),
            )
        };
        assert_eq!(rc, 0);
        Pair {
            a: fds[0],
            b: fds[1],
        }
    }

    fn read_all(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let mut buf = [0u8; 65536];
        loop {
            // SAFETY: reads into a valid local buffer.
            let n = unsafe { libc::recv(self.b, buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n <= 0 {
                return out;
            }
            out.extend_from_slice(&buf[..n as usize]);
        }
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
        let n = buf.send_to(pair.a, &mut done).unwrap();
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
    while let Ok(n) = send(pair.a, &big) {
        sent += n;
        if n == 0 {
            break;
        }
    }
    assert!(sent > 0);
    let mut buf = WriteBuffer::new();
    buf.push(vec![1u8; 10]);
    let mut done = Vec::new();
    assert_eq!(buf.send_to(pair.a, &mut done).unwrap(), 0);
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
    let err = buf.send_to(pair.a, &mut done).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EPIPE));
    assert_eq!(buf.clear().len(), 1);
    assert!(buf.is_empty());
}
