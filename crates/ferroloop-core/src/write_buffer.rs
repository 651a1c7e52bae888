//! The queue of bytes a transport could not send at once.
//!
//! A transport first tries to send new data directly; whatever the kernel
//! does not take is queued here as whole chunks (the bindings keep Python
//! `bytes` objects by reference, so queuing copies nothing) and flushed with
//! one `sendmsg`/`writev` over up to [`MAX_IOVECS`] chunks when the
//! descriptor becomes writable.
//!
//! The queue never drops a chunk by itself: chunks that have been fully sent
//! are handed back to the caller, which decides when it is safe to drop them.

use std::collections::VecDeque;
use std::io;
use std::os::fd::RawFd;

/// Most chunks passed to one vectored write (Linux's `IOV_MAX` is 1024).
pub const MAX_IOVECS: usize = 64;

/// Something that can be queued: a contiguous run of bytes that stays valid
/// and unchanged while queued.
pub trait Chunk {
    /// The bytes of the chunk.
    fn bytes(&self) -> &[u8];
}

impl Chunk for Vec<u8> {
    fn bytes(&self) -> &[u8] {
        self
    }
}

/// Pending outgoing bytes.
pub struct WriteBuffer<C> {
    chunks: VecDeque<C>,
    /// Bytes of the first chunk already sent.
    head_offset: usize,
    /// Bytes queued and not yet sent.
    len: usize,
}

impl<C> Default for WriteBuffer<C> {
    fn default() -> Self {
        Self {
            chunks: VecDeque::new(),
            head_offset: 0,
            len: 0,
        }
    }
}

/// Whether the error means "try again when writable".
pub fn would_block(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
    )
}

/// Sends `data` on a socket without raising `SIGPIPE`; returns the number of
/// bytes sent.
pub fn send(fd: RawFd, data: &[u8]) -> io::Result<usize> {
    // SAFETY: `data` is a valid slice for the duration of the call.
    let n = unsafe { libc::send(fd, data.as_ptr().cast(), data.len(), libc::MSG_NOSIGNAL) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

impl<C: Chunk> WriteBuffer<C> {
    /// An empty buffer.
    pub fn new() -> Self {
        Self::default()
    }

    /// Bytes waiting to be sent.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing is waiting.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Queues a chunk (empty chunks are dropped by the caller, not queued).
    pub fn push(&mut self, chunk: C) {
        self.len += chunk.bytes().len();
        self.chunks.push_back(chunk);
    }

    /// Removes everything; returns the chunks.
    pub fn clear(&mut self) -> Vec<C> {
        self.len = 0;
        self.head_offset = 0;
        self.chunks.drain(..).collect()
    }

    /// Sends as much as the socket takes in one system call. Returns the
    /// number of bytes sent (0 with `WouldBlock` mapped to `Ok(0)`); chunks
    /// that were fully sent go to `done`.
    pub fn send_to(&mut self, fd: RawFd, done: &mut Vec<C>) -> io::Result<usize> {
        if self.is_empty() {
            return Ok(0);
        }
        let mut iov = [libc::iovec {
            iov_base: std::ptr::null_mut(),
            iov_len: 0,
        }; MAX_IOVECS];
        let mut count = 0;
        for (i, chunk) in self.chunks.iter().take(MAX_IOVECS).enumerate() {
            let bytes = chunk.bytes();
            let bytes = if i == 0 {
                &bytes[self.head_offset..]
            } else {
                bytes
            };
            iov[count] = libc::iovec {
                iov_base: bytes.as_ptr() as *mut libc::c_void,
                iov_len: bytes.len(),
            };
            count += 1;
        }
        // SAFETY: a zeroed msghdr is a valid empty header.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = iov.as_mut_ptr();
        msg.msg_iovlen = count as _;
        // SAFETY: the iovecs point into chunks owned by this buffer, which are
        // neither moved nor dropped during the call.
        let n = unsafe { libc::sendmsg(fd, &msg, libc::MSG_NOSIGNAL) };
        if n < 0 {
            let err = io::Error::last_os_error();
            return if would_block(&err) { Ok(0) } else { Err(err) };
        }
        let n = n as usize;
        self.consume(n, done);
        Ok(n)
    }

    /// Marks `n` bytes as sent.
    pub fn consume(&mut self, mut n: usize, done: &mut Vec<C>) {
        self.len -= n;
        while n > 0 {
            let head_len = self.chunks[0].bytes().len() - self.head_offset;
            if n < head_len {
                self.head_offset += n;
                return;
            }
            n -= head_len;
            self.head_offset = 0;
            done.extend(self.chunks.pop_front());
        }
    }

    /// Iterates over the queued chunks.
    pub fn iter(&self) -> impl Iterator<Item = &C> {
        self.chunks.iter()
    }
}
