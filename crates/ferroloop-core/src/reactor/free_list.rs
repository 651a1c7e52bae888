//! A bounded stack of reusable objects, cut back after a burst.
//!
//! The loop reuses handle objects: an object released while the list has
//! room is kept, and the next allocation pops it. The list must be large
//! enough for bursts (tens of thousands of callbacks queued from another
//! thread while the loop waits), but a loop that had one burst should not
//! keep all those objects for good. So when the list has held more than its
//! resting size for a whole trim interval, as seen each time the loop is
//! about to wait, it is cut back to the resting size. A loop that keeps
//! being fed bursts between waits keeps reusing its objects.
//!
//! Objects leaving the list are returned, never dropped here.

/// Reusable objects, at most `capacity`, trimmed to `resting`.
pub struct FreeList<T> {
    items: Vec<T>,
    capacity: usize,
    resting: usize,
    trim_interval: f64,
    /// Since when the list has held more than `resting` items, as seen by
    /// [`FreeList::trim`].
    above_resting_since: Option<f64>,
}

impl<T> FreeList<T> {
    /// An empty list holding at most `capacity` items, cut back to `resting`
    /// once it has held more for `trim_interval` seconds.
    pub fn new(capacity: usize, resting: usize, trim_interval: f64) -> Self {
        Self {
            items: Vec::new(),
            capacity,
            resting,
            trim_interval,
            above_resting_since: None,
        }
    }

    /// Number of items kept.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether no item is kept.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// An item to reuse, if any.
    pub fn pop(&mut self) -> Option<T> {
        self.items.pop()
    }

    /// Keeps `item`, or hands it back if the list is full.
    pub fn push(&mut self, item: T) -> Option<T> {
        if self.items.len() >= self.capacity {
            Some(item)
        } else {
            self.items.push(item);
            None
        }
    }

    /// Called when the loop is about to wait, at time `now`: returns the items
    /// beyond the resting size if the list has stayed above it for the whole
    /// trim interval (then the interval starts over).
    pub fn trim(&mut self, now: f64) -> Vec<T> {
        if self.items.len() <= self.resting {
            self.above_resting_since = None;
            return Vec::new();
        }
        match self.above_resting_since {
            None => {
                self.above_resting_since = Some(now);
                Vec::new()
            }
            Some(since) if now - since < self.trim_interval => Vec::new(),
            Some(_) => {
                self.above_resting_since = None;
                self.items.split_off(self.resting)
            }
        }
    }

    /// Removes every item.
    pub fn drain(&mut self) -> Vec<T> {
        self.above_resting_since = None;
        std::mem::take(&mut self.items)
    }

    /// Iterates over the kept items.
    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.items.iter()
    }
}
