//! The timer queue behind `call_later` / `call_at`.
//!
//! A binary min-heap keyed by `(when, sequence)`: the sequence number is
//! assigned at insertion, so the key is unique and timers due at the same
//! instant fire in the order they were scheduled. Cancelled timers are not
//! searched for; they stay in the heap until they reach the head or until
//! more than half of a large heap is cancelled, at which point the heap is
//! rebuilt without them — the policy of CPython's `BaseEventLoop._run_once`.
//!
//! The queue never drops an item on its own behalf while the caller may still
//! be in a delicate state: everything removed is *returned* to the caller,
//! which decides when it is safe to drop (the Python bindings drop handles
//! only after releasing their borrow of the loop state, because dropping a
//! Python object can run arbitrary code).

use std::cmp::Ordering;
use std::collections::BinaryHeap;

/// Heaps with at most this many entries are never compacted.
pub const MIN_SCHEDULED_FOR_COMPACTION: usize = 100;
/// Compact when more than this fraction of the entries is cancelled.
pub const CANCELLED_FRACTION_FOR_COMPACTION: f64 = 0.5;

/// What the queue needs to know about an item.
pub trait TimerEntry {
    /// Whether the timer was cancelled; cancelled entries are discarded.
    fn is_cancelled(&self) -> bool;
}

struct Slot<T> {
    /// The ordering key: `when`, with NaN mapped to -inf (see [`sort_key`]).
    key: f64,
    /// Insertion order, the tie-breaker between equal `key`s.
    seq: u64,
    item: T,
}

impl<T> PartialEq for Slot<T> {
    fn eq(&self, other: &Self) -> bool {
        self.seq == other.seq
    }
}

impl<T> Eq for Slot<T> {}

impl<T> PartialOrd for Slot<T> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl<T> Ord for Slot<T> {
    /// Reversed, so that `BinaryHeap` (a max-heap) yields the earliest timer.
    fn cmp(&self, other: &Self) -> Ordering {
        other
            .key
            .total_cmp(&self.key)
            .then_with(|| other.seq.cmp(&self.seq))
    }
}

/// Maps a user-supplied deadline to the key the heap orders by.
///
/// A NaN deadline compares false with everything in CPython, which in
/// practice makes such a timer fire on the next loop iteration
/// (`asyncio.sleep(nan)` returns at once on Python 3.11). We give that
/// behaviour a deterministic place in the order: before every real deadline.
pub fn sort_key(when: f64) -> f64 {
    if when.is_nan() {
        f64::NEG_INFINITY
    } else {
        when
    }
}

/// A min-heap of timers ordered by `(when, insertion order)`.
pub struct TimerQueue<T> {
    heap: BinaryHeap<Slot<T>>,
    next_seq: u64,
    /// How many entries still in the heap were cancelled (as reported through
    /// [`TimerQueue::note_cancelled`]).
    cancelled: usize,
}

impl<T> Default for TimerQueue<T> {
    fn default() -> Self {
        Self {
            heap: BinaryHeap::new(),
            next_seq: 0,
            cancelled: 0,
        }
    }
}

impl<T: TimerEntry> TimerQueue<T> {
    /// An empty queue.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of entries, cancelled ones included.
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// Whether the queue holds no entry at all.
    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }

    /// Number of cancelled entries still in the heap.
    pub fn cancelled_count(&self) -> usize {
        self.cancelled
    }

    /// Schedules `item` at `when`.
    pub fn push(&mut self, when: f64, item: T) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.heap.push(Slot {
            key: sort_key(when),
            seq,
            item,
        });
    }

    /// Records that an entry still in the heap has just been cancelled.
    pub fn note_cancelled(&mut self) {
        self.cancelled += 1;
    }

    /// Records that `n` entries still in the heap were cancelled (counted
    /// elsewhere since the last call, e.g. by handles cancelled while the
    /// queue was out of reach).
    pub fn note_cancelled_many(&mut self, n: usize) {
        self.cancelled += n;
    }

    /// Drops cancelled entries: all of them when they are more than half of a
    /// heap larger than [`MIN_SCHEDULED_FOR_COMPACTION`], otherwise only those
    /// at the head. Returns what was removed.
    pub fn prune(&mut self) -> Vec<T> {
        let len = self.heap.len();
        if len > MIN_SCHEDULED_FOR_COMPACTION
            && self.cancelled as f64 / len as f64 > CANCELLED_FRACTION_FOR_COMPACTION
        {
            let (dead, live): (Vec<_>, Vec<_>) = std::mem::take(&mut self.heap)
                .into_vec()
                .into_iter()
                .partition(|slot| slot.item.is_cancelled());
            self.heap = BinaryHeap::from(live);
            self.cancelled = 0;
            return dead.into_iter().map(|slot| slot.item).collect();
        }
        let mut dead = Vec::new();
        while self
            .heap
            .peek()
            .is_some_and(|slot| slot.item.is_cancelled())
        {
            self.cancelled = self.cancelled.saturating_sub(1);
            dead.extend(self.heap.pop().map(|slot| slot.item));
        }
        dead
    }

    /// The ordering key of the earliest entry (NaN deadlines read as -inf).
    pub fn next_when(&self) -> Option<f64> {
        self.heap.peek().map(|slot| slot.key)
    }

    /// Removes and returns the earliest entry if it is due before `end_time`
    /// (cancelled or not: the caller skips cancelled ones when running them,
    /// as CPython does). The item is not inspected — it may be cold in the
    /// cache; a caller that receives a cancelled entry reports it with
    /// [`TimerQueue::forget_cancelled`] to keep the count exact.
    pub fn pop_due(&mut self, end_time: f64) -> Option<T> {
        if self.heap.peek()?.key < end_time {
            self.heap.pop().map(|slot| slot.item)
        } else {
            None
        }
    }

    /// A cancelled entry left the heap through [`TimerQueue::pop_due`].
    pub fn forget_cancelled(&mut self) {
        self.cancelled = self.cancelled.saturating_sub(1);
    }

    /// Removes every entry and returns them in no particular order.
    pub fn drain(&mut self) -> Vec<T> {
        self.cancelled = 0;
        std::mem::take(&mut self.heap)
            .into_vec()
            .into_iter()
            .map(|slot| slot.item)
            .collect()
    }

    /// Iterates over the entries in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.heap.iter().map(|slot| &slot.item)
    }
}
