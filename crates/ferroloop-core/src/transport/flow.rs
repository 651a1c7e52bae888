//! Write flow control: the high and low water marks of a transport's
//! outgoing buffer and the edges at which the protocol is told to pause and
//! resume writing (asyncio's `_FlowControlMixin`).
//!
//! `pause_writing` is due when the buffer grows above the high mark while
//! the protocol is not paused; `resume_writing` is due when it drains to the
//! low mark or below while the protocol is paused. Each edge is reported
//! once. asyncio's TLS protocol uses the same marks with its own defaults,
//! and pauses already *at* the high mark ([`PauseAt::AtOrAbove`]), for both
//! its outgoing buffer and its incoming one.

use std::fmt;

/// asyncio's default high water mark (64 KiB); the low mark defaults to a
/// quarter of the high one.
pub const DEFAULT_HIGH_WATER: usize = 64 * 1024;

/// Water marks that `set_limits` refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InvalidLimits {
    /// The high mark asked for (after defaults were applied).
    pub high: i64,
    /// The low mark asked for (after defaults were applied).
    pub low: i64,
}

impl fmt::Display for InvalidLimits {
    /// asyncio's message.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "high ({}) must be >= low ({}) must be >= 0",
            self.high, self.low
        )
    }
}

/// When the buffered size calls for a pause.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PauseAt {
    /// Above the high mark (asyncio's transports).
    Above,
    /// At the high mark or above (asyncio's TLS protocol).
    AtOrAbove,
}

/// The flow-control state of one buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowControl {
    high: usize,
    low: usize,
    /// Whether the protocol was told to pause.
    paused: bool,
    pause_at: PauseAt,
    /// The high mark when none is given.
    default_high: usize,
}

impl Default for FlowControl {
    fn default() -> Self {
        Self::new(DEFAULT_HIGH_WATER, PauseAt::Above)
    }
}

impl FlowControl {
    /// Marks at `default_high` and a quarter of it, pausing as `pause_at`
    /// says.
    pub fn new(default_high: usize, pause_at: PauseAt) -> Self {
        Self {
            high: default_high,
            low: default_high / 4,
            paused: false,
            pause_at,
            default_high,
        }
    }

    /// `(low, high)`, as `get_write_buffer_limits()` returns them.
    pub fn limits(&self) -> (usize, usize) {
        (self.low, self.high)
    }

    /// Whether the protocol is paused.
    pub fn is_paused(&self) -> bool {
        self.paused
    }

    /// `set_write_buffer_limits(high, low)` with asyncio's defaults: no high
    /// mark means the default (or four times the low mark if one is given),
    /// no low mark means a quarter of the high one (rounded down). Refuses marks
    /// that are not `high >= low >= 0`, leaving the old ones. The caller
    /// then checks whether the protocol must pause ([`Self::pause_due`]).
    pub fn set_limits(&mut self, high: Option<i64>, low: Option<i64>) -> Result<(), InvalidLimits> {
        let high = match (high, low) {
            (Some(high), _) => high,
            (None, Some(low)) => low.saturating_mul(4),
            (None, None) => self.default_high as i64,
        };
        let low = low.unwrap_or_else(|| high.div_euclid(4));
        if !(high >= low && low >= 0) {
            return Err(InvalidLimits { high, low });
        }
        self.high = high as usize;
        self.low = low as usize;
        Ok(())
    }

    /// With `buffered` bytes queued: whether `pause_writing` is due now
    /// (the protocol then counts as paused).
    pub fn pause_due(&mut self, buffered: usize) -> bool {
        let over = match self.pause_at {
            PauseAt::Above => buffered > self.high,
            PauseAt::AtOrAbove => buffered >= self.high,
        };
        if !over || self.paused {
            return false;
        }
        self.paused = true;
        true
    }

    /// With `buffered` bytes queued: whether `resume_writing` is due now
    /// (the protocol then counts as running).
    pub fn resume_due(&mut self, buffered: usize) -> bool {
        if !self.paused || buffered > self.low {
            return false;
        }
        self.paused = false;
        true
    }
}
