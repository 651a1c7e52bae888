//! The queue of bytes a transport could not send at once.
//!
//! A transport first tries to send new data directly; whatever the kernel
//! does not take is queued here as whole chunks (the bindings keep Python
//! `bytes` objects by reference, so queuing copies nothing) and flushed with
//! one vectored write over up to [`MAX_IOVECS`] chunks when the descriptor
//! becomes writable. The [`Sink`] says which system call writes: `sendmsg`
//! with `MSG_NOSIGNAL` for sockets, `writev` for pipes (which refuse
//! `sendmsg`).
//!
//! The queue never drops a chunk by itself: chunks that have been fully sent
//! are handed back to the caller, which decides when it is safe to drop them.

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::os::fd::RawFd;

use crate::sys::{pipe, socket, would_block};

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

/// How queued bytes reach the descriptor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sink {
    /// A socket: `send`/`sendmsg` with `MSG_NOSIGNAL` (no `SIGPIPE`).
    Socket,
    /// A pipe or other non-socket descriptor: `write`/`writev`.
    Pipe,
}

impl Sink {
    /// One write of `data`; the number of bytes taken.
    pub fn write(self, fd: RawFd, data: &[u8]) -> io::Result<usize> {
        match self {
            Sink::Socket => socket::send(fd, data),
            Sink::Pipe => pipe::write(fd, data),
        }
    }

    /// One vectored write of `bufs`; the number of bytes taken.
    pub fn write_vectored(self, fd: RawFd, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        match self {
            Sink::Socket => socket::send_vectored(fd, bufs),
            Sink::Pipe => pipe::write_vectored(fd, bufs),
        }
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

    /// Writes as much as the descriptor takes in one vectored system call
    /// through `sink`. Returns the number of bytes written (`WouldBlock` and
    /// `EINTR` read as 0); chunks that were fully written go to `done`.
    pub fn flush(&mut self, sink: Sink, fd: RawFd, done: &mut Vec<C>) -> io::Result<usize> {
        if self.is_empty() {
            return Ok(0);
        }
        let mut iov = [IoSlice::new(&[]); MAX_IOVECS];
        let mut count = 0;
        for (i, chunk) in self.chunks.iter().take(MAX_IOVECS).enumerate() {
            let bytes = chunk.bytes();
            iov[i] = IoSlice::new(if i == 0 {
                &bytes[self.head_offset..]
            } else {
                bytes
            });
            count += 1;
        }
        let n = match sink.write_vectored(fd, &iov[..count]) {
            Ok(n) => n,
            Err(err) if would_block(&err) => return Ok(0),
            Err(err) => return Err(err),
        };
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
