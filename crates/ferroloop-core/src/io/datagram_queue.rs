//! The queue of datagrams a datagram transport could not send at once.
//!
//! Unlike a byte stream, a datagram is sent whole or not at all, to its own
//! address, so the queue holds `(payload, address)` pairs and never splits
//! a payload. Write flow control counts queued bytes: each datagram counts
//! its payload plus a fixed per-datagram overhead chosen by the caller
//! (asyncio counts an 8-byte header per datagram on the Python versions
//! that count one, so that empty datagrams still count; 0 otherwise).
//!
//! As with [`WriteBuffer`](super::write_buffer::WriteBuffer), the queue never
//! drops an entry by itself: removed entries are returned to the caller.

use std::collections::VecDeque;

use super::write_buffer::Chunk;

/// Pending outgoing datagrams.
pub struct DatagramQueue<P, A> {
    entries: VecDeque<(P, A)>,
    /// Bytes counted for flow control (payloads plus overheads).
    size: usize,
    /// What each queued datagram counts on top of its payload.
    overhead: usize,
}

impl<P: Chunk, A> DatagramQueue<P, A> {
    /// An empty queue counting `overhead` extra bytes per datagram.
    pub fn new(overhead: usize) -> Self {
        Self {
            entries: VecDeque::new(),
            size: 0,
            overhead,
        }
    }

    fn cost(&self, payload: &P) -> usize {
        payload.bytes().len() + self.overhead
    }

    /// Bytes counted for flow control.
    pub fn size(&self) -> usize {
        self.size
    }

    /// Number of queued datagrams.
    pub fn count(&self) -> usize {
        self.entries.len()
    }

    /// Whether no datagram is queued.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Queues a datagram (an empty payload is a datagram too).
    pub fn push(&mut self, payload: P, address: A) {
        self.size += self.cost(&payload);
        self.entries.push_back((payload, address));
    }

    /// The next datagram to send.
    pub fn front(&self) -> Option<&(P, A)> {
        self.entries.front()
    }

    /// Removes the next datagram (it was sent, or failed for good).
    pub fn pop_front(&mut self) -> Option<(P, A)> {
        let entry = self.entries.pop_front()?;
        self.size -= self.cost(&entry.0);
        Some(entry)
    }

    /// Puts a datagram back at the head (a send that would block).
    pub fn push_front(&mut self, payload: P, address: A) {
        self.size += self.cost(&payload);
        self.entries.push_front((payload, address));
    }

    /// The queued datagrams, in order.
    pub fn iter(&self) -> impl Iterator<Item = &(P, A)> {
        self.entries.iter()
    }

    /// Removes everything; returns the entries in order.
    pub fn clear(&mut self) -> Vec<(P, A)> {
        self.size = 0;
        self.entries.drain(..).collect()
    }
}
