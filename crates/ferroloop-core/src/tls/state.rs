//! The state machine of a TLS connection layered on a stream transport, as
//! asyncio's `sslproto.SSLProtocol` runs it.
//!
//! ```text
//! UNWRAPPED -> DO_HANDSHAKE -> WRAPPED -> FLUSHING -> SHUTDOWN
//!      ^________________________________________________|   (any state)
//! ```
//!
//! - `DO_HANDSHAKE`: incoming records feed the handshake.
//! - `WRAPPED`: application data flows both ways.
//! - `FLUSHING`: `close()` was called, or the peer's end of stream arrived:
//!   what is readable is still delivered, then the shutdown starts.
//! - `SHUTDOWN`: the close_notify exchange, bounded by the shutdown timeout.
//! - `UNWRAPPED`: before the handshake, and after the connection is lost or
//!   aborted.
//!
//! Separately, the application protocol goes `INIT -> CON_MADE [-> EOF] ->
//! CON_LOST` (`connection_made`, `eof_received`, `connection_lost`, each at
//! most once).

use std::fmt;

/// The TLS state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsState {
    /// Not (or no longer) TLS.
    Unwrapped,
    /// Handshaking.
    DoHandshake,
    /// Application data flows.
    Wrapped,
    /// Delivering what is left before the shutdown.
    Flushing,
    /// Exchanging close_notify.
    Shutdown,
}

impl fmt::Display for TlsState {
    /// The name asyncio prints (`SSLProtocolState.WRAPPED`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            TlsState::Unwrapped => "UNWRAPPED",
            TlsState::DoHandshake => "DO_HANDSHAKE",
            TlsState::Wrapped => "WRAPPED",
            TlsState::Flushing => "FLUSHING",
            TlsState::Shutdown => "SHUTDOWN",
        };
        write!(f, "SSLProtocolState.{name}")
    }
}

/// A transition the machine does not allow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BadTransition {
    /// The state it was in.
    pub from: TlsState,
    /// The state asked for.
    pub to: TlsState,
}

impl fmt::Display for BadTransition {
    /// asyncio's message.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot switch state from {} to {}", self.from, self.to)
    }
}

/// What incoming bytes drive (or a resumed reader, or the end of a flush).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Drive {
    /// Continue the handshake.
    Handshake,
    /// Read application data.
    Read,
    /// Deliver what is left, then start the shutdown.
    Flush,
    /// Continue the close_notify exchange.
    Shutdown,
    /// Nothing to do in this state.
    Nothing,
}

/// What the peer's end of stream (on the layer below) asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Eof {
    /// The handshake fails with `ConnectionResetError`.
    HandshakeReset,
    /// Start flushing; the application does not read now, so the layer
    /// below must stay open (`eof_received` returns true).
    FlushLater,
    /// Flush now.
    Flush,
    /// Write what is queued, then shut down.
    WriteThenShutdown,
    /// Continue the shutdown.
    Shutdown,
    /// Nothing.
    Nothing,
}

/// What `close()` of the application transport asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartShutdown {
    /// Already shutting down, or not TLS: nothing.
    Nothing,
    /// Still handshaking: abort.
    Abort,
    /// Flush, then exchange close_notify (under the shutdown timeout).
    Flush,
}

impl TlsState {
    /// Whether the machine may go from `self` to `to`.
    pub fn can_become(self, to: TlsState) -> bool {
        use TlsState::*;
        matches!(
            (self, to),
            (_, Unwrapped)
                | (Unwrapped, DoHandshake)
                | (DoHandshake, Wrapped)
                | (Wrapped, Flushing)
                | (Flushing, Shutdown)
        )
    }

    /// Goes to `to` if allowed.
    pub fn become_(&mut self, to: TlsState) -> Result<(), BadTransition> {
        if self.can_become(to) {
            *self = to;
            Ok(())
        } else {
            Err(BadTransition { from: *self, to })
        }
    }

    /// What incoming bytes drive in this state.
    pub fn on_incoming(self) -> Drive {
        match self {
            TlsState::DoHandshake => Drive::Handshake,
            TlsState::Wrapped => Drive::Read,
            TlsState::Flushing => Drive::Flush,
            TlsState::Shutdown => Drive::Shutdown,
            TlsState::Unwrapped => Drive::Nothing,
        }
    }

    /// What a reader resumed by the application drives (as incoming bytes,
    /// except that a handshake is not driven by it).
    pub fn on_resume_reading(self) -> Drive {
        match self.on_incoming() {
            Drive::Handshake => Drive::Nothing,
            other => other,
        }
    }

    /// What the peer's end of stream asks for; `app_reading_paused`: the
    /// application paused reading.
    pub fn on_eof(self, app_reading_paused: bool) -> Eof {
        match self {
            TlsState::DoHandshake => Eof::HandshakeReset,
            TlsState::Wrapped if app_reading_paused => Eof::FlushLater,
            TlsState::Wrapped => Eof::Flush,
            TlsState::Flushing => Eof::WriteThenShutdown,
            TlsState::Shutdown => Eof::Shutdown,
            TlsState::Unwrapped => Eof::Nothing,
        }
    }

    /// What `close()` asks for.
    pub fn on_close(self) -> StartShutdown {
        match self {
            TlsState::Flushing | TlsState::Shutdown | TlsState::Unwrapped => StartShutdown::Nothing,
            TlsState::DoHandshake => StartShutdown::Abort,
            TlsState::Wrapped => StartShutdown::Flush,
        }
    }

    /// Whether application data read from TLS is delivered in this state.
    pub fn reads(self) -> bool {
        matches!(self, TlsState::Wrapped | TlsState::Flushing)
    }

    /// Whether the application may still write (its data is queued).
    pub fn accepts_writes(self) -> bool {
        matches!(self, TlsState::DoHandshake | TlsState::Wrapped)
    }
}

/// The application protocol's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AppState {
    /// `connection_made` not called yet.
    Init,
    /// Connected.
    Made,
    /// `eof_received` called.
    Eof,
    /// `connection_lost` called (or scheduled).
    Lost,
}

impl AppState {
    /// Whether `connection_lost` is still owed to the application.
    pub fn owes_connection_lost(self) -> bool {
        matches!(self, AppState::Made | AppState::Eof)
    }
}
