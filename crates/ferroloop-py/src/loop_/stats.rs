//! `loop.stats()`: what the loop counts and, with timing on, measures.
//!
//! The counters (`ferroloop_core::metrics::Counters`) are kept always, at a
//! cost of a few additions per turn: turns, callbacks run, timers scheduled,
//! cancelled and fired, readiness events, wake-ups written for
//! `call_soon_threadsafe`, and what happened to asynchronous generators.
//! Timing (debug mode, `FERROLOOP_STATS=1`, or `loop.set_stats(True)`)
//! adds two clock readings per callback and per wait: the time spent
//! waiting in the poller and running callbacks, a histogram of callback
//! durations, and the ten slowest callbacks (described when they are among
//! them, so that nothing is kept alive for it).

use std::sync::atomic::Ordering::Relaxed;

use ferroloop_core::metrics::{Counters, Timing, BUCKET_BOUNDS_US};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};

use super::asyncgens::{count_live, AsyncGenCounts};
use super::Loop;

/// The loop's figures, reset by `reset_stats()`.
#[derive(Default)]
pub(super) struct Stats {
    pub counters: Counters,
    pub timing: Timing<String>,
}

/// The label of a histogram bucket (its upper bound).
fn bucket_label(i: usize) -> String {
    match BUCKET_BOUNDS_US.get(i) {
        Some(&us) if us >= 1_000_000 => format!("<={:.2}s", us as f64 / 1e6),
        Some(&us) if us >= 1000 => format!("<={:.3}ms", us as f64 / 1e3),
        Some(&us) => format!("<={us}us"),
        None => format!(
            ">{:.2}s",
            BUCKET_BOUNDS_US[BUCKET_BOUNDS_US.len() - 1] as f64 / 1e6
        ),
    }
}

impl Loop {
    /// Whether callbacks and waits are timed now.
    #[inline]
    pub(super) fn timing(&self) -> bool {
        self.timing_on.load(Relaxed) || self.debug()
    }

    /// One callback took `seconds`; `describe` (run only if it is among the
    /// ten slowest) says what it was.
    pub(super) fn record_callback(
        &self,
        py: Python<'_>,
        seconds: f64,
        describe: impl FnOnce() -> PyResult<String>,
    ) -> PyResult<()> {
        let slowest = self.state.with(py, |s| {
            s.stats.timing.callback_seconds += seconds;
            s.stats.timing.histogram.record(seconds);
            s.stats.timing.slowest.qualifies(seconds)
        });
        if slowest {
            let what = describe()?;
            self.state
                .with(py, |s| s.stats.timing.slowest.offer(seconds, what));
        }
        Ok(())
    }

    pub(super) fn stats_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let (counters, timing, gens, refs) = self.state.with(py, |s| {
            s.sync_cancelled_timers(self.link.get());
            (
                s.stats.counters,
                s.stats.timing.clone(),
                s.asyncgens.counts,
                s.asyncgens.refs_snapshot(py),
            )
        });
        // Reading a generator's frame is Python code: outside the borrow.
        let (live, unfinished) = count_live(py, &refs)?;
        let AsyncGenCounts {
            first_iterated,
            finalized,
            closed_by_shutdown,
            cleanup_errors,
        } = gens;
        let d = PyDict::new(py);
        d.set_item("turns", counters.turns)?;
        d.set_item("callbacks_scheduled", counters.callbacks_scheduled)?;
        d.set_item("callbacks_run", counters.callbacks_run)?;
        d.set_item("callbacks_cancelled", counters.callbacks_cancelled)?;
        d.set_item("timers_scheduled", counters.timers_scheduled)?;
        d.set_item("timers_cancelled", counters.timers_cancelled)?;
        d.set_item("timers_fired", counters.timers_fired)?;
        d.set_item("io_events", counters.io_events)?;
        d.set_item(
            "threadsafe_wakeups",
            counters.threadsafe_wakeups + self.threadsafe_wakeups.load(Relaxed),
        )?;
        let agens = PyDict::new(py);
        agens.set_item("first_iterated", first_iterated)?;
        // Neither finalized while suspended, nor closed by the shutdown,
        // nor still suspended: exhausted, or closed with aclose().
        let finished = first_iterated
            .saturating_sub(finalized + closed_by_shutdown)
            .saturating_sub(unfinished as u64);
        agens.set_item("finished_or_closed", finished)?;
        agens.set_item("finalized_unclosed", finalized)?;
        agens.set_item("closed_by_shutdown", closed_by_shutdown)?;
        agens.set_item("cleanup_errors", cleanup_errors)?;
        agens.set_item("alive", live)?;
        agens.set_item("suspended", unfinished)?;
        d.set_item("asyncgens", agens)?;
        d.set_item("timing", self.timing())?;
        if self.timing() || timing.histogram.total() > 0 {
            d.set_item("poll_seconds", timing.poll_seconds)?;
            d.set_item("callback_seconds", timing.callback_seconds)?;
            let histogram = PyDict::new(py);
            for (i, count) in timing.histogram.counts.iter().enumerate() {
                histogram.set_item(bucket_label(i), count)?;
            }
            d.set_item("callback_durations", histogram)?;
            let slowest = PyList::empty(py);
            for (seconds, what) in timing.slowest.iter() {
                slowest.append((what, seconds))?;
            }
            d.set_item("slowest_callbacks", slowest)?;
        }
        Ok(d)
    }

    pub(super) fn reset_stats_impl(&self, py: Python<'_>) {
        let old = self.state.with(py, |s| {
            s.sync_cancelled_timers(self.link.get());
            s.asyncgens.counts = AsyncGenCounts::default();
            std::mem::take(&mut s.stats)
        });
        self.threadsafe_wakeups.store(0, Relaxed);
        drop(old);
    }
}
