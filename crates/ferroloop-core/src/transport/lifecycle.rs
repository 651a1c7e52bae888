//! The lifecycle of a transport as a sans-I/O state machine.
//!
//! A transport is open, then *closing* (after `close()`, `abort()` or a
//! fatal error: no more reading, and nothing more accepted for writing),
//! then *lost* once `connection_lost` is scheduled. Independently, reading
//! can be paused, and the write side can be shut down (`write_eof()`). The
//! machine also tracks which directions the transport watches, so that the
//! bindings register and unregister with the poller only on real changes.
//!
//! Every method takes what it needs to know about the outside (whether
//! bytes are still queued) and returns what the caller must do; nothing here
//! performs I/O. The transitions are those of asyncio's `_SelectorTransport`
//! and `_SelectorSocketTransport`.

/// Which directions are watched, and which changes a call asks for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Watch {
    /// Readable events.
    pub read: bool,
    /// Writable events.
    pub write: bool,
}

/// What `close()` asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Close {
    /// Already closing: nothing.
    Nothing,
    /// Stop reading; `connection_lost(None)` comes once the queued bytes
    /// are flushed.
    AfterFlush,
    /// Stop reading and writing, and schedule `connection_lost(None)` now.
    LoseNow,
}

/// What `abort()` or a fatal error asks for, unless the connection is
/// already lost (then nothing).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ForceClose {
    /// Stop watching for these (drop the queued bytes first if `write`).
    pub stop: Watch,
}

/// What `write_eof()` asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteEof {
    /// Closing, or already done: nothing.
    Nothing,
    /// Shut the write side down now (nothing is queued).
    ShutDownNow,
    /// Shut it down once the queued bytes are flushed.
    AfterFlush,
}

/// What a `write()` may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteGate {
    /// Send or queue the data.
    Open,
    /// The connection is lost: drop the data; `warn` asks for asyncio's
    /// warning (from the [`LOG_THRESHOLD_FOR_CONNLOST_WRITES`]th such write).
    Lost {
        /// Whether to log "socket.send() raised exception.".
        warn: bool,
    },
}

/// What to do once the queue has been flushed empty.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flushed {
    /// Keep going.
    Nothing,
    /// `close()` was waiting for the flush: call `connection_lost(None)`.
    LoseConnection,
    /// `write_eof()` was waiting for the flush: shut the write side down.
    ShutDownWrite,
}

/// After this many writes to a lost connection, each one logs a warning
/// (asyncio's `LOG_THRESHOLD_FOR_CONNLOST_WRITES`).
pub const LOG_THRESHOLD_FOR_CONNLOST_WRITES: u32 = 5;

/// The lifecycle state of one transport.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Lifecycle {
    closing: bool,
    /// `write_eof()` was called.
    eof: bool,
    /// `pause_reading()` was called (and not undone).
    paused: bool,
    /// Non-zero once `connection_lost` is scheduled; then counts the writes
    /// attempted after that.
    conn_lost: u32,
    /// What the transport currently watches.
    watching: Watch,
}

impl Lifecycle {
    /// Whether `close()` (or an abort) happened.
    pub fn is_closing(&self) -> bool {
        self.closing
    }

    /// Whether `connection_lost` has been scheduled.
    pub fn is_lost(&self) -> bool {
        self.conn_lost > 0
    }

    /// asyncio's `_conn_lost` counter.
    pub fn conn_lost(&self) -> u32 {
        self.conn_lost
    }

    /// Whether `write_eof()` was called.
    pub fn eof_written(&self) -> bool {
        self.eof
    }

    /// asyncio's `is_reading()`: neither closing nor paused.
    pub fn is_reading(&self) -> bool {
        !self.closing && !self.paused
    }

    /// What is watched now.
    pub fn watching(&self) -> Watch {
        self.watching
    }

    /// Records that readable (`read`) or writable events are now wanted or
    /// not; whether that is a change the poller must hear of.
    pub fn set_watching(&mut self, read: bool, on: bool) -> bool {
        let flag = if read {
            &mut self.watching.read
        } else {
            &mut self.watching.write
        };
        std::mem::replace(flag, on) != on
    }

    /// `pause_reading()`: whether reading stops now.
    pub fn pause_reading(&mut self) -> bool {
        if self.closing || self.paused {
            return false;
        }
        self.paused = true;
        true
    }

    /// `resume_reading()`: whether reading starts again now.
    pub fn resume_reading(&mut self) -> bool {
        if self.closing || !self.paused {
            return false;
        }
        self.paused = false;
        true
    }

    /// `close()`, with `queued` bytes still to send or not.
    pub fn close(&mut self, queued: bool) -> Close {
        if std::mem::replace(&mut self.closing, true) {
            return Close::Nothing;
        }
        if queued {
            Close::AfterFlush
        } else {
            self.conn_lost += 1;
            Close::LoseNow
        }
    }

    /// `abort()` or a fatal error, with `queued` bytes still to send or not:
    /// `None` if the connection is already lost. Otherwise `connection_lost`
    /// is to be scheduled now.
    pub fn force_close(&mut self, queued: bool) -> Option<ForceClose> {
        if self.conn_lost > 0 {
            return None;
        }
        let was_closing = std::mem::replace(&mut self.closing, true);
        self.conn_lost += 1;
        Some(ForceClose {
            stop: Watch {
                read: !was_closing,
                write: queued,
            },
        })
    }

    /// `write_eof()`, with `queued` bytes still to send or not.
    pub fn write_eof(&mut self, queued: bool) -> WriteEof {
        if self.closing || self.eof {
            return WriteEof::Nothing;
        }
        self.eof = true;
        if queued {
            WriteEof::AfterFlush
        } else {
            WriteEof::ShutDownNow
        }
    }

    /// A non-empty `write()` (after the end-of-file check): whether it may
    /// proceed.
    pub fn write_gate(&mut self) -> WriteGate {
        if self.conn_lost == 0 {
            return WriteGate::Open;
        }
        let warn = self.conn_lost >= LOG_THRESHOLD_FOR_CONNLOST_WRITES;
        self.conn_lost += 1;
        WriteGate::Lost { warn }
    }

    /// The queue was flushed empty: what was waiting for it.
    pub fn flushed(&self) -> Flushed {
        if self.closing {
            Flushed::LoseConnection
        } else if self.eof {
            Flushed::ShutDownWrite
        } else {
            Flushed::Nothing
        }
    }

    /// `connection_lost` ran: nothing is watched any more.
    pub fn connection_lost(&mut self) {
        self.watching = Watch::default();
    }
}
