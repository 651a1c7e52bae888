//! The ready queue, the timer queue, and the planning of one loop turn.
//!
//! One turn (CPython's `BaseEventLoop._run_once`):
//! 1. drop cancelled timers (the head run, or the whole heap when more than
//!    half of a large heap is cancelled);
//! 2. compute the poll timeout: zero when callbacks are ready or the loop is
//!    stopping, otherwise until the earliest timer (at most
//!    [`MAXIMUM_SELECT_TIMEOUT`]), otherwise infinite;
//! 3. poll, unless the timeout is zero and nothing is watched: no event
//!    could then be reported that the turn would act on (wake-ups only
//!    matter to a sleeping loop), so the system call is skipped;
//! 4. (the caller queues what the poll reported;)
//! 5. move due timers (`when < now + resolution`) to the ready queue, in
//!    `(when, sequence)` order;
//! 6. run exactly the items that are ready at this point: items queued
//!    while they run wait for the next turn.
//!
//! [`Scheduler::plan`] does 1 to 3, [`Scheduler::collect_due`] does 5 and
//! returns the count for 6. The clock is a parameter, so that tests control
//! time; it is read only when a timer makes the reading matter (reading it
//! costs a system call's worth of time, and a busy loop turns millions of
//! times a second). Removed timers are returned, never dropped here (see
//! [`TimerQueue`]).

use std::collections::VecDeque;
use std::time::Duration;

use crate::timers::{TimerEntry, TimerQueue};

/// The longest single wait, as asyncio's `MAXIMUM_SELECT_TIMEOUT` (a day).
pub const MAXIMUM_SELECT_TIMEOUT: f64 = 24.0 * 3600.0;

/// What [`Scheduler::plan`] decided for this turn.
pub struct TurnPlan<T> {
    /// Cancelled timers removed from the heap, for the caller to release.
    pub pruned: Vec<T>,
    /// How long the poll may wait (`None`: without limit).
    pub timeout: Option<Duration>,
    /// Whether to poll at all.
    pub poll: bool,
}

/// The loop's queues: callbacks ready to run (`R`) and timers (`T`).
pub struct Scheduler<R, T> {
    /// Items to run, in order.
    pub ready: VecDeque<R>,
    /// Scheduled timers.
    pub timers: TimerQueue<T>,
}

impl<R, T> Default for Scheduler<R, T> {
    fn default() -> Self {
        Self {
            ready: VecDeque::new(),
            timers: TimerQueue::default(),
        }
    }
}

impl<R, T: TimerEntry> Scheduler<R, T> {
    /// Steps 1 to 3 of a turn; `now` reads the clock. `stopping`: the loop
    /// stops after this turn. `watching`: descriptors (or signals) are
    /// watched, so the poll cannot be skipped.
    pub fn plan(
        &mut self,
        now: impl FnOnce() -> f64,
        stopping: bool,
        watching: bool,
    ) -> TurnPlan<T> {
        let pruned = self.timers.prune();
        let timeout = if !self.ready.is_empty() || stopping {
            Some(Duration::ZERO)
        } else {
            self.timers.next_when().map(|when| {
                Duration::from_secs_f64((when - now()).clamp(0.0, MAXIMUM_SELECT_TIMEOUT))
            })
        };
        let poll = timeout != Some(Duration::ZERO) || watching;
        TurnPlan {
            pruned,
            timeout,
            poll,
        }
    }

    /// Step 5: moves every timer due before `end_time()` to the ready queue
    /// (converted by `ready`), then returns how many items are ready: the
    /// number step 6 runs. The timers are not inspected when moved (with
    /// many timers they are cold in the cache); the caller settles their
    /// bookkeeping when it runs them.
    pub fn collect_due(
        &mut self,
        end_time: impl FnOnce() -> f64,
        mut ready: impl FnMut(T) -> R,
    ) -> usize {
        if !self.timers.is_empty() {
            let end_time = end_time();
            while let Some(timer) = self.timers.pop_due(end_time) {
                self.ready.push_back(ready(timer));
            }
        }
        self.ready.len()
    }
}
