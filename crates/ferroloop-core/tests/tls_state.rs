//! The TLS layer's state machine: allowed transitions (with asyncio's
//! message for the others) and what each input does in each state.

use ferroloop_core::tls::state::{AppState, Drive, Eof, StartShutdown, TlsState};
use ferroloop_core::transport::flow::{FlowControl, PauseAt};

use TlsState::*;

const ALL: [TlsState; 5] = [Unwrapped, DoHandshake, Wrapped, Flushing, Shutdown];

#[test]
fn only_the_forward_path_and_unwrapping_are_allowed() {
    let allowed = [
        (Unwrapped, DoHandshake),
        (DoHandshake, Wrapped),
        (Wrapped, Flushing),
        (Flushing, Shutdown),
    ];
    for from in ALL {
        for to in ALL {
            let expected = to == Unwrapped || allowed.contains(&(from, to));
            assert_eq!(from.can_become(to), expected, "{from} -> {to}");
        }
    }
    let mut s = Wrapped;
    let err = s.become_(DoHandshake).unwrap_err();
    assert_eq!(
        err.to_string(),
        "cannot switch state from SSLProtocolState.WRAPPED to SSLProtocolState.DO_HANDSHAKE"
    );
    assert_eq!(s, Wrapped, "unchanged");
    s.become_(Flushing).unwrap();
    assert_eq!(s, Flushing);
}

#[test]
fn incoming_bytes_drive_the_current_stage() {
    assert_eq!(DoHandshake.on_incoming(), Drive::Handshake);
    assert_eq!(Wrapped.on_incoming(), Drive::Read);
    assert_eq!(Flushing.on_incoming(), Drive::Flush);
    assert_eq!(Shutdown.on_incoming(), Drive::Shutdown);
    assert_eq!(Unwrapped.on_incoming(), Drive::Nothing);
    assert_eq!(DoHandshake.on_resume_reading(), Drive::Nothing);
    assert_eq!(Flushing.on_resume_reading(), Drive::Flush);
}

#[test]
fn end_of_stream_per_state() {
    assert_eq!(DoHandshake.on_eof(false), Eof::HandshakeReset);
    assert_eq!(Wrapped.on_eof(false), Eof::Flush);
    assert_eq!(Wrapped.on_eof(true), Eof::FlushLater);
    assert_eq!(Flushing.on_eof(false), Eof::WriteThenShutdown);
    assert_eq!(Shutdown.on_eof(true), Eof::Shutdown);
    assert_eq!(Unwrapped.on_eof(false), Eof::Nothing);
}

#[test]
fn close_aborts_a_handshake_and_flushes_a_connection() {
    assert_eq!(DoHandshake.on_close(), StartShutdown::Abort);
    assert_eq!(Wrapped.on_close(), StartShutdown::Flush);
    for s in [Unwrapped, Flushing, Shutdown] {
        assert_eq!(s.on_close(), StartShutdown::Nothing);
    }
}

#[test]
fn reading_and_writing_per_state() {
    let reads: Vec<_> = ALL.into_iter().filter(|s| s.reads()).collect();
    assert_eq!(reads, vec![Wrapped, Flushing]);
    let writes: Vec<_> = ALL.into_iter().filter(|s| s.accepts_writes()).collect();
    assert_eq!(writes, vec![DoHandshake, Wrapped]);
    assert!(AppState::Made.owes_connection_lost());
    assert!(AppState::Eof.owes_connection_lost());
    assert!(!AppState::Init.owes_connection_lost());
    assert!(!AppState::Lost.owes_connection_lost());
}

#[test]
fn tls_flow_control_pauses_at_the_high_mark() {
    let mut flow = FlowControl::new(512 * 1024, PauseAt::AtOrAbove);
    assert_eq!(flow.limits(), (128 * 1024, 512 * 1024));
    flow.set_limits(None, None).unwrap();
    assert_eq!(flow.limits(), (128 * 1024, 512 * 1024), "its own default");
    flow.set_limits(Some(100), Some(10)).unwrap();
    assert!(flow.pause_due(100), "at the mark");
    assert!(flow.resume_due(10));
    let mut transport = FlowControl::new(100, PauseAt::Above);
    assert!(!transport.pause_due(100));
    assert!(transport.pause_due(101));
}
