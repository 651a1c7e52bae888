//! Loop metrics: counters and a duration histogram, each update O(1).
//!
//! The counters are always kept: they are additions the loop makes once
//! per turn, per poll or per scheduled timer, never per callback.
//! Durations (time waiting in the poller, time running callbacks, the
//! distribution of callback durations and the slowest callbacks) are kept
//! only when timing is on, since measuring costs two clock readings per
//! callback.

/// What the loop counts, always.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Turns of the loop (`_run_once`).
    pub turns: u64,
    /// Callbacks, task steps, due timers and readiness callbacks queued to
    /// run.
    pub callbacks_scheduled: u64,
    /// Of those, run.
    pub callbacks_run: u64,
    /// Of those, found cancelled when their turn came (not run).
    pub callbacks_cancelled: u64,
    /// Timers scheduled (`call_later`, `call_at`).
    pub timers_scheduled: u64,
    /// Timers cancelled while scheduled.
    pub timers_cancelled: u64,
    /// Timers that came due and were queued to run.
    pub timers_fired: u64,
    /// Readiness events the poller reported.
    pub io_events: u64,
    /// Wake-ups written for `call_soon_threadsafe` (to a sleeping loop).
    pub threadsafe_wakeups: u64,
}

/// Upper bounds of the histogram's buckets, in microseconds: powers of
/// two from 1 µs to 2^20 µs (about 1 s); a last bucket takes the rest.
pub const BUCKET_BOUNDS_US: [u64; 21] = {
    let mut bounds = [0u64; 21];
    let mut i = 0;
    while i < 21 {
        bounds[i] = 1 << i;
        i += 1;
    }
    bounds
};

/// Callback durations in power-of-two buckets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Histogram {
    /// Counts per bucket: `counts[i]` for durations up to
    /// `BUCKET_BOUNDS_US[i]` (and above the previous bound); the last for
    /// longer ones.
    pub counts: [u64; BUCKET_BOUNDS_US.len() + 1],
}

impl Default for Histogram {
    fn default() -> Self {
        Self {
            counts: [0; BUCKET_BOUNDS_US.len() + 1],
        }
    }
}

impl Histogram {
    /// The bucket of a duration of `seconds`.
    pub fn bucket(seconds: f64) -> usize {
        let us = (seconds * 1e6).ceil();
        if us <= 1.0 {
            return 0;
        }
        // The smallest i with 2^i >= us.
        let i = (us as u64 - 1)
            .checked_ilog2()
            .map_or(0, |l| l as usize + 1);
        i.min(BUCKET_BOUNDS_US.len())
    }

    /// Counts one duration.
    pub fn record(&mut self, seconds: f64) {
        self.counts[Self::bucket(seconds)] += 1;
    }

    /// Total count.
    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }
}

/// The `N` largest values seen, with what they belong to.
#[derive(Clone, Debug)]
pub struct Slowest<T, const N: usize> {
    entries: Vec<(f64, T)>,
}

impl<T, const N: usize> Default for Slowest<T, N> {
    fn default() -> Self {
        Self {
            entries: Vec::with_capacity(N),
        }
    }
}

impl<T, const N: usize> Slowest<T, N> {
    /// Whether a value of `seconds` would be kept (so that the caller
    /// computes what it belongs to only then).
    pub fn qualifies(&self, seconds: f64) -> bool {
        self.entries.len() < N || self.entries.last().is_some_and(|(s, _)| seconds > *s)
    }

    /// Keeps `(seconds, item)` if it is among the `N` largest; returns what
    /// it pushed out (for the caller to drop), if anything.
    pub fn offer(&mut self, seconds: f64, item: T) -> Option<T> {
        if !self.qualifies(seconds) {
            return Some(item);
        }
        let at = self.entries.partition_point(|(s, _)| *s >= seconds);
        self.entries.insert(at, (seconds, item));
        if self.entries.len() > N {
            self.entries.pop().map(|(_, item)| item)
        } else {
            None
        }
    }

    /// The kept entries, largest first.
    pub fn iter(&self) -> impl Iterator<Item = &(f64, T)> {
        self.entries.iter()
    }

    /// Removes everything; returns the items.
    pub fn clear(&mut self) -> Vec<T> {
        self.entries.drain(..).map(|(_, item)| item).collect()
    }
}

/// What the loop measures when timing is on.
#[derive(Clone, Debug, Default)]
pub struct Timing<T> {
    /// Seconds spent waiting in the poller.
    pub poll_seconds: f64,
    /// Seconds spent running callbacks.
    pub callback_seconds: f64,
    /// Durations of callbacks.
    pub histogram: Histogram,
    /// The ten slowest callbacks.
    pub slowest: Slowest<T, 10>,
}

impl<T> Timing<T> {
    /// One callback took `seconds`; `describe` says what it was, called only
    /// if it is among the slowest. Returns what that pushed out.
    pub fn callback(&mut self, seconds: f64, describe: impl FnOnce() -> T) -> Option<T> {
        self.callback_seconds += seconds;
        self.histogram.record(seconds);
        if self.slowest.qualifies(seconds) {
            self.slowest.offer(seconds, describe())
        } else {
            None
        }
    }
}
