//! The transport state shared by every kind: flow control and lifecycle.

use ferroloop_core::transport::flow::{FlowControl, InvalidLimits, DEFAULT_HIGH_WATER};
use ferroloop_core::transport::lifecycle::{
    Close, Flushed, Lifecycle, Watch, WriteEof, WriteGate, LOG_THRESHOLD_FOR_CONNLOST_WRITES,
};

#[test]
fn water_mark_defaults_follow_asyncio() {
    let mut flow = FlowControl::default();
    assert_eq!(flow.limits(), (DEFAULT_HIGH_WATER / 4, DEFAULT_HIGH_WATER));
    flow.set_limits(None, Some(100)).unwrap();
    assert_eq!(flow.limits(), (100, 400));
    flow.set_limits(Some(99), None).unwrap();
    assert_eq!(flow.limits(), (24, 99), "low is high // 4, rounded down");
    flow.set_limits(Some(10), Some(10)).unwrap();
    assert_eq!(flow.limits(), (10, 10));
    flow.set_limits(None, None).unwrap();
    assert_eq!(flow.limits(), (DEFAULT_HIGH_WATER / 4, DEFAULT_HIGH_WATER));
    flow.set_limits(Some(0), Some(0)).unwrap();
    assert_eq!(flow.limits(), (0, 0));
}

#[test]
fn invalid_water_marks_are_refused_with_asyncios_message() {
    let mut flow = FlowControl::default();
    let err = flow.set_limits(Some(1), Some(2)).unwrap_err();
    assert_eq!(err, InvalidLimits { high: 1, low: 2 });
    assert_eq!(err.to_string(), "high (1) must be >= low (2) must be >= 0");
    let err = flow.set_limits(Some(-4), None).unwrap_err();
    assert_eq!(
        err.to_string(),
        "high (-4) must be >= low (-1) must be >= 0"
    );
    assert_eq!(
        flow.limits(),
        (DEFAULT_HIGH_WATER / 4, DEFAULT_HIGH_WATER),
        "unchanged"
    );
}

#[test]
fn pause_and_resume_are_reported_once_per_edge() {
    let mut flow = FlowControl::default();
    flow.set_limits(Some(100), Some(10)).unwrap();
    assert!(!flow.pause_due(100), "at the high mark: not above it");
    assert!(flow.pause_due(101));
    assert!(flow.is_paused());
    assert!(!flow.pause_due(500), "already paused");
    assert!(!flow.resume_due(11));
    assert!(flow.resume_due(10));
    assert!(!flow.is_paused());
    assert!(!flow.resume_due(0), "already running");
}

#[test]
fn close_with_nothing_queued_loses_the_connection_now() {
    let mut lc = Lifecycle::default();
    assert!(lc.is_reading());
    assert_eq!(lc.close(false), Close::LoseNow);
    assert!(lc.is_closing() && lc.is_lost() && !lc.is_reading());
    assert_eq!(lc.close(false), Close::Nothing);
    assert_eq!(lc.force_close(false), None, "already lost");
}

#[test]
fn close_with_bytes_queued_waits_for_the_flush() {
    let mut lc = Lifecycle::default();
    assert_eq!(lc.close(true), Close::AfterFlush);
    assert!(lc.is_closing() && !lc.is_lost());
    assert_eq!(lc.flushed(), Flushed::LoseConnection);
    // An abort during the flush still loses the connection, once.
    let forced = lc.force_close(true).unwrap();
    assert_eq!(
        forced.stop,
        Watch {
            read: false,
            write: true
        }
    );
    assert!(lc.is_lost());
    assert_eq!(lc.force_close(true), None);
}

#[test]
fn abort_stops_both_directions() {
    let mut lc = Lifecycle::default();
    let forced = lc.force_close(false).unwrap();
    assert_eq!(
        forced.stop,
        Watch {
            read: true,
            write: false
        }
    );
    assert_eq!(lc.conn_lost(), 1);
}

#[test]
fn write_eof_now_or_after_the_flush() {
    let mut lc = Lifecycle::default();
    assert_eq!(lc.write_eof(false), WriteEof::ShutDownNow);
    assert!(lc.eof_written());
    assert_eq!(lc.write_eof(false), WriteEof::Nothing);
    let mut lc = Lifecycle::default();
    assert_eq!(lc.write_eof(true), WriteEof::AfterFlush);
    assert_eq!(lc.flushed(), Flushed::ShutDownWrite);
    let mut lc = Lifecycle::default();
    lc.close(true);
    assert_eq!(lc.write_eof(false), WriteEof::Nothing, "closing");
    assert_eq!(Lifecycle::default().flushed(), Flushed::Nothing);
}

#[test]
fn writes_after_the_loss_are_counted_and_warned_about() {
    let mut lc = Lifecycle::default();
    assert_eq!(lc.write_gate(), WriteGate::Open);
    lc.force_close(false);
    let mut warned = 0;
    for _ in 0..10 {
        match lc.write_gate() {
            WriteGate::Lost { warn } => warned += usize::from(warn),
            WriteGate::Open => panic!("lost connections take no data"),
        }
    }
    // conn_lost starts at 1; writes warn from the threshold on.
    assert_eq!(
        warned,
        10 - (LOG_THRESHOLD_FOR_CONNLOST_WRITES as usize - 1)
    );
    assert_eq!(lc.conn_lost(), 11);
}

#[test]
fn pause_and_resume_reading() {
    let mut lc = Lifecycle::default();
    assert!(lc.pause_reading());
    assert!(!lc.pause_reading());
    assert!(!lc.is_reading());
    assert!(lc.resume_reading());
    assert!(!lc.resume_reading());
    assert!(lc.pause_reading());
    lc.close(false);
    assert!(!lc.resume_reading(), "closing transports stay paused");
}

#[test]
fn watching_reports_only_changes() {
    let mut lc = Lifecycle::default();
    assert!(lc.set_watching(true, true));
    assert!(!lc.set_watching(true, true));
    assert!(lc.set_watching(false, true));
    assert_eq!(
        lc.watching(),
        Watch {
            read: true,
            write: true
        }
    );
    lc.connection_lost();
    assert_eq!(lc.watching(), Watch::default());
    assert!(!lc.set_watching(true, false));
}
