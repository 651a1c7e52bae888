//! Timer queue ordering, cancellation and compaction, driven by a manual clock.

use std::cell::Cell;
use std::rc::Rc;

use ferroloop_core::timers::{CANCELLED_FRACTION_FOR_COMPACTION, MIN_SCHEDULED_FOR_COMPACTION};
use ferroloop_core::{TimerEntry, TimerQueue};

/// A timer whose cancellation flag the test can flip after scheduling it.
#[derive(Clone)]
struct Timer {
    id: u32,
    cancelled: Rc<Cell<bool>>,
}

impl Timer {
    fn new(id: u32) -> Self {
        Self {
            id,
            cancelled: Rc::new(Cell::new(false)),
        }
    }
}

impl TimerEntry for Timer {
    fn is_cancelled(&self) -> bool {
        self.cancelled.get()
    }
}

fn cancel(q: &mut TimerQueue<Timer>, t: &Timer) {
    t.cancelled.set(true);
    q.note_cancelled();
}

/// A deterministic xorshift generator for the randomized tests.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn due_ids(q: &mut TimerQueue<Timer>, now: f64) -> Vec<u32> {
    std::iter::from_fn(|| q.pop_due(now))
        .map(|t| t.id)
        .collect()
}

#[test]
fn fires_in_deadline_order() {
    let mut q = TimerQueue::new();
    for (id, when) in [(1, 3.0), (2, 1.0), (3, 2.0), (4, 0.5)] {
        q.push(when, Timer::new(id));
    }
    assert_eq!(q.next_when(), Some(0.5));
    assert_eq!(due_ids(&mut q, 10.0), vec![4, 2, 3, 1]);
    assert!(q.is_empty());
}

#[test]
fn equal_deadlines_fire_in_insertion_order() {
    let mut q = TimerQueue::new();
    for id in 0..1000 {
        q.push(5.0, Timer::new(id));
    }
    assert_eq!(due_ids(&mut q, 6.0), (0..1000).collect::<Vec<_>>());
}

#[test]
fn nothing_fires_early() {
    let mut q = TimerQueue::new();
    q.push(2.0, Timer::new(1));
    q.push(1.0, Timer::new(2));
    // A timer is due when `when < end_time`; at exactly its deadline it waits.
    assert_eq!(due_ids(&mut q, 1.0), Vec::<u32>::new());
    assert_eq!(due_ids(&mut q, 1.5), vec![2]);
    assert_eq!(due_ids(&mut q, 2.0), Vec::<u32>::new());
    assert_eq!(due_ids(&mut q, 2.0 + 1e-9), vec![1]);
}

#[test]
fn nan_deadline_fires_first_and_infinity_never() {
    let mut q = TimerQueue::new();
    q.push(1.0, Timer::new(1));
    q.push(f64::INFINITY, Timer::new(2));
    q.push(f64::NAN, Timer::new(3));
    assert_eq!(q.next_when(), Some(f64::NEG_INFINITY));
    assert_eq!(due_ids(&mut q, 0.0), vec![3]);
    assert_eq!(due_ids(&mut q, 1e300), vec![1]);
    assert_eq!(q.len(), 1);
}

#[test]
fn cancelled_head_is_pruned() {
    let mut q = TimerQueue::new();
    let timers: Vec<_> = (0..5).map(Timer::new).collect();
    for (i, t) in timers.iter().enumerate() {
        q.push(i as f64, t.clone());
    }
    cancel(&mut q, &timers[0]);
    cancel(&mut q, &timers[1]);
    cancel(&mut q, &timers[3]);
    let dead: Vec<_> = q.prune().into_iter().map(|t| t.id).collect();
    // Only the head run is removed: timer 3 waits until it reaches the head.
    assert_eq!(dead, vec![0, 1]);
    assert_eq!(q.cancelled_count(), 1);
    assert_eq!(q.next_when(), Some(2.0));
    // Cancelled timers that become due are still returned by pop_due: the
    // caller skips them when running, as CPython does.
    assert_eq!(due_ids(&mut q, 10.0), vec![2, 3, 4]);
}

#[test]
fn compaction_rebuilds_heap_when_mostly_cancelled() {
    let mut q = TimerQueue::new();
    let n = MIN_SCHEDULED_FOR_COMPACTION * 3;
    let timers: Vec<_> = (0..n as u32).map(Timer::new).collect();
    for t in &timers {
        q.push(1000.0 - t.id as f64, t.clone());
    }
    // Cancel the latest deadlines (not at the head) until just over half.
    let to_cancel = (n as f64 * CANCELLED_FRACTION_FOR_COMPACTION) as usize + 1;
    for t in &timers[..to_cancel] {
        cancel(&mut q, t);
    }
    let dead = q.prune();
    assert_eq!(dead.len(), to_cancel);
    assert!(dead.iter().all(|t| t.is_cancelled()));
    assert_eq!(q.len(), n - to_cancel);
    assert_eq!(q.cancelled_count(), 0);
    // The survivors still come out in order.
    let ids = due_ids(&mut q, f64::INFINITY);
    let expected: Vec<u32> = (to_cancel as u32..n as u32).rev().collect();
    assert_eq!(ids, expected);
}

#[test]
fn small_heaps_are_not_compacted() {
    let mut q = TimerQueue::new();
    let timers: Vec<_> = (0..MIN_SCHEDULED_FOR_COMPACTION as u32)
        .map(Timer::new)
        .collect();
    for t in &timers {
        q.push(t.id as f64, t.clone());
    }
    // Everything but the head is cancelled: no compaction below the threshold.
    for t in &timers[1..] {
        cancel(&mut q, t);
    }
    assert!(q.prune().is_empty());
    assert_eq!(q.len(), MIN_SCHEDULED_FOR_COMPACTION);
}

#[test]
fn drain_returns_everything() {
    let mut q = TimerQueue::new();
    for id in 0..10 {
        q.push(id as f64, Timer::new(id));
    }
    cancel(&mut q, &Timer::new(99));
    let mut ids: Vec<_> = q.drain().into_iter().map(|t| t.id).collect();
    ids.sort();
    assert_eq!(ids, (0..10).collect::<Vec<_>>());
    assert!(q.is_empty());
    assert_eq!(q.cancelled_count(), 0);
}

#[test]
fn interleaved_random_schedule_matches_sorted_order() {
    // A deterministic pseudo-random sequence of pushes and pops, checked
    // against a sorted reference model.
    let mut q = TimerQueue::new();
    let mut model: Vec<(f64, u32)> = Vec::new();
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut next = || rng.next();
    let mut id = 0u32;
    let mut now = 0.0;
    for _ in 0..20_000 {
        if next() % 3 != 0 {
            let when = now + (next() % 1000) as f64 / 100.0;
            q.push(when, Timer::new(id));
            model.push((when, id));
            id += 1;
        } else {
            now += (next() % 500) as f64 / 100.0;
            let got = due_ids(&mut q, now);
            // Stable sort keeps insertion order among equal deadlines.
            model.sort_by(|a, b| a.0.total_cmp(&b.0));
            let split = model.partition_point(|&(w, _)| w < now);
            let want: Vec<u32> = model.drain(..split).map(|(_, id)| id).collect();
            assert_eq!(got, want);
        }
    }
}

#[test]
fn random_schedule_with_cancellations_matches_model() {
    // Pushes, cancellations (some far from the head, enough to trigger
    // compaction) and pops, checked against a sorted reference model.
    let mut q = TimerQueue::new();
    let mut model: Vec<(f64, u32, Timer)> = Vec::new();
    let mut rng = Rng(0xDEAD_BEEF_CAFE_F00D);
    let mut next = || rng.next();
    let mut id = 0u32;
    let mut now = 0.0;
    let mut compactions = 0;
    for _ in 0..50_000 {
        match next() % 10 {
            0..=3 => {
                let when = now + (next() % 20000) as f64 / 100.0;
                let t = Timer::new(id);
                q.push(when, t.clone());
                model.push((when, id, t));
                id += 1;
            }
            4..=7 => {
                if !model.is_empty() {
                    let i = (next() as usize) % model.len();
                    let t = model.remove(i).2;
                    cancel(&mut q, &t);
                }
            }
            _ => {
                let before = q.len();
                let cancelled_before = q.cancelled_count();
                let dead = q.prune();
                assert!(dead.iter().all(TimerEntry::is_cancelled));
                if before > MIN_SCHEDULED_FOR_COMPACTION
                    && cancelled_before as f64 / before as f64 > CANCELLED_FRACTION_FOR_COMPACTION
                {
                    // Compaction: every cancelled entry went at once.
                    assert_eq!(dead.len(), cancelled_before);
                    assert_eq!(q.cancelled_count(), 0);
                    compactions += 1;
                }
                now += (next() % 300) as f64 / 100.0;
                let mut got = Vec::new();
                while let Some(t) = q.pop_due(now) {
                    if t.is_cancelled() {
                        q.forget_cancelled();
                    } else {
                        got.push(t.id);
                    }
                }
                model.sort_by(|a, b| a.0.total_cmp(&b.0));
                let split = model.partition_point(|&(w, _, _)| w < now);
                let want: Vec<u32> = model.drain(..split).map(|(_, id, _)| id).collect();
                assert_eq!(got, want);
            }
        }
    }
    assert!(compactions > 0, "compaction path not exercised");
}
