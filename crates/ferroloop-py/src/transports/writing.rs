//! Writing, for every transport kind that writes (streams, write pipes).
//!
//! asyncio's rule: `write()` writes at once when nothing is queued; what the
//! descriptor does not take is queued (a `bytes` object by reference,
//! anything else copied), the descriptor is watched for writability, and the
//! protocol is paused above the high water mark. When writable, the queue is
//! flushed with one vectored write (`ferroloop_core::WriteBuffer`, through
//! the kind's [`Sink`]) and the protocol resumed at the low water mark. The
//! kind decides what a failure means and what happens once the queue is
//! drained ([`Flush`]).

use std::io;

use ferroloop_core::sys::would_block;
use ferroloop_core::{Sink, WriteBuffer};
use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyBytes, PyMemoryView};

use super::base::{self, Transport};
use crate::buffer::{with_bytes, OutChunk};
use crate::gil_cell::GilCell;
use crate::source::Direction;

/// Whether `data` is one of the bytes-like types `write()` takes (`bytes`,
/// `bytearray`, `memoryview`).
pub fn is_bytes_like(data: &Bound<'_, PyAny>) -> bool {
    data.is_instance_of::<PyBytes>()
        || data.is_instance_of::<PyByteArray>()
        || data.is_instance_of::<PyMemoryView>()
}

/// What a flush of the queue came to.
pub enum Flush {
    /// Bytes are still queued (the descriptor stays watched).
    Pending,
    /// The queue is empty; the descriptor is no longer watched for writing.
    Drained,
    /// The write failed: the queue was dropped and the descriptor is no
    /// longer watched for writing.
    Failed(io::Error),
}

/// The sending side of a transport: its queue and sink.
pub struct Writing {
    buffer: GilCell<WriteBuffer<OutChunk>>,
    sink: Sink,
}

impl Writing {
    /// An empty queue flushed through `sink`.
    pub fn new(sink: Sink) -> Self {
        Writing {
            buffer: GilCell::new(WriteBuffer::new()),
            sink,
        }
    }

    /// Bytes queued.
    pub fn len(&self, py: Python<'_>) -> usize {
        self.buffer.with(py, |b| b.len())
    }

    /// Drops everything queued.
    pub fn clear(&self, py: Python<'_>) {
        let dropped = self.buffer.with(py, |b| b.clear());
        drop(dropped);
    }

    /// Writes `data` (`length` bytes, not zero) at once if nothing is
    /// queued, and queues what the descriptor did not take. `Ok(Err(e))`:
    /// the write failed and nothing was queued.
    pub fn write<T: Transport>(
        &self,
        slf: &Bound<'_, T>,
        data: &Bound<'_, PyAny>,
        length: usize,
    ) -> PyResult<io::Result<()>> {
        let py = slf.py();
        let mut written = 0;
        if self.len(py) == 0 {
            let fd = slf.get().base().fd();
            match with_bytes(data, |b| self.sink.write(fd, b))? {
                Ok(n) => written = n,
                Err(e) if would_block(&e) => {}
                Err(e) => return Ok(Err(e)),
            }
            if written == length {
                return Ok(Ok(()));
            }
            base::set_watching(slf, Direction::Write, true)?;
        }
        let chunk = OutChunk::new(data, written)?;
        self.buffer.with(py, |b| b.push(chunk));
        base::maybe_pause_protocol(slf)?;
        Ok(Ok(()))
    }

    /// The descriptor is writable: one vectored write of the queue, then
    /// the protocol is resumed if the queue fell to the low water mark.
    pub fn flush<T: Transport>(&self, slf: &Bound<'_, T>) -> PyResult<Flush> {
        let py = slf.py();
        let fd = slf.get().base().fd();
        let mut done = Vec::new();
        let written = self.buffer.with(py, |b| b.flush(self.sink, fd, &mut done));
        drop(done);
        if let Err(e) = written {
            base::set_watching(slf, Direction::Write, false)?;
            self.clear(py);
            return Ok(Flush::Failed(e));
        }
        base::maybe_resume_protocol(slf)?;
        if self.len(py) > 0 {
            return Ok(Flush::Pending);
        }
        base::set_watching(slf, Direction::Write, false)?;
        Ok(Flush::Drained)
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self, py: Python<'_>) -> bool {
        self.len(py) == 0
    }
}
