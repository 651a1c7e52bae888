//! Turn planning with a manual clock: timeouts, poll skipping, pruning of
//! cancelled timers and moving due timers to the ready queue.

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use ferroloop_core::reactor::scheduler::{Scheduler, MAXIMUM_SELECT_TIMEOUT};
use ferroloop_core::TimerEntry;

#[derive(Clone)]
struct Timer(u32, Rc<Cell<bool>>);

impl TimerEntry for Timer {
    fn is_cancelled(&self) -> bool {
        self.1.get()
    }
}

fn timer(id: u32) -> Timer {
    Timer(id, Rc::new(Cell::new(false)))
}

#[test]
fn idle_loop_waits_forever_and_must_poll() {
    let mut s: Scheduler<u32, Timer> = Scheduler::default();
    let plan = s.plan(|| 10.0, false, false);
    assert_eq!(plan.timeout, None);
    assert!(plan.poll);
    assert!(plan.pruned.is_empty());
}

#[test]
fn ready_callbacks_skip_the_poll_unless_something_is_watched() {
    let mut s: Scheduler<u32, Timer> = Scheduler::default();
    s.ready.push_back(1);
    let plan = s.plan(|| 0.0, false, false);
    assert_eq!(plan.timeout, Some(Duration::ZERO));
    assert!(!plan.poll, "nothing watched: the system call is skipped");
    let plan = s.plan(|| 0.0, false, true);
    assert_eq!(plan.timeout, Some(Duration::ZERO));
    assert!(plan.poll, "watched descriptors are polled without waiting");
}

#[test]
fn stopping_does_not_wait() {
    let mut s: Scheduler<u32, Timer> = Scheduler::default();
    s.timers.push(100.0, timer(1));
    let plan = s.plan(|| 0.0, true, false);
    assert_eq!(plan.timeout, Some(Duration::ZERO));
    assert!(!plan.poll);
}

#[test]
fn timeout_runs_until_the_earliest_timer_and_is_capped() {
    let mut s: Scheduler<u32, Timer> = Scheduler::default();
    s.timers.push(12.5, timer(1));
    s.timers.push(11.0, timer(2));
    let plan = s.plan(|| 10.0, false, false);
    assert_eq!(plan.timeout, Some(Duration::from_secs(1)));
    // A timer in the past: no wait; the poll is skipped unless descriptors
    // are watched.
    let plan = s.plan(|| 20.0, false, false);
    assert_eq!(plan.timeout, Some(Duration::ZERO));
    assert!(!plan.poll);
    assert!(s.plan(|| 20.0, false, true).poll);
    let mut far: Scheduler<u32, Timer> = Scheduler::default();
    far.timers.push(1e12, timer(3));
    let plan = far.plan(|| 0.0, false, false);
    assert_eq!(
        plan.timeout,
        Some(Duration::from_secs_f64(MAXIMUM_SELECT_TIMEOUT))
    );
}

#[test]
fn cancelled_head_timers_are_pruned_and_returned() {
    let mut s: Scheduler<u32, Timer> = Scheduler::default();
    let (a, b) = (timer(1), timer(2));
    s.timers.push(1.0, a.clone());
    s.timers.push(2.0, b.clone());
    a.1.set(true);
    s.timers.note_cancelled();
    let plan = s.plan(|| 0.0, false, false);
    assert_eq!(plan.pruned.iter().map(|t| t.0).collect::<Vec<_>>(), vec![1]);
    assert_eq!(plan.timeout, Some(Duration::from_secs(2)));
    assert_eq!(s.timers.cancelled_count(), 0);
}

#[test]
fn due_timers_join_the_ready_queue_in_order() {
    let mut s: Scheduler<u32, Timer> = Scheduler::default();
    s.ready.push_back(100);
    for (id, when) in [(1, 3.0), (2, 1.0), (3, 2.0), (4, 9.0), (5, 1.0)] {
        s.timers.push(when, timer(id));
    }
    let ntodo = s.collect_due(|| 3.0, |t| t.0);
    // Due means strictly before the end time; ties keep scheduling order.
    assert_eq!(ntodo, 4);
    assert_eq!(
        s.ready.iter().copied().collect::<Vec<_>>(),
        vec![100, 2, 5, 3]
    );
    assert_eq!(s.timers.len(), 2);
}

#[test]
fn the_clock_is_read_only_when_a_timer_needs_it() {
    let reads = Cell::new(0);
    let clock = || {
        reads.set(reads.get() + 1);
        5.0
    };
    let mut s: Scheduler<u32, Timer> = Scheduler::default();
    s.ready.push_back(1);
    s.plan(clock, false, false);
    assert_eq!(s.collect_due(clock, |t| t.0), 1);
    assert_eq!(reads.get(), 0, "ready callbacks and no timer: no reading");
    s.timers.push(1.0, timer(1));
    s.plan(clock, false, false);
    assert_eq!(reads.get(), 0, "ready callbacks: no wait to compute");
    s.collect_due(clock, |t| t.0);
    assert_eq!(reads.get(), 1, "a timer may be due: one reading");
}
