//! How much a stream transport asks the kernel for, and where it lands.
//!
//! Most reads are small: they go into the loop's shared receive buffer and
//! are copied into an exact-size object, which is cheap for small sizes and
//! never allocates a large object that stays mostly unused. After a large
//! read ([`LARGE_READ`] bytes or more) the next read goes straight into a new
//! object of the last read's size: fixed-size messages and bulk transfers
//! then skip one copy per read, and a shorter read is copied into an
//! exact-size object as a small one would be. Asking the kernel how much is
//! queued (`FIONREAD`) instead would cost a system call per read, measurably
//! more than it saves.
//!
//! # Reusing the object
//! A `bytes` handed to `data_received` is usually dropped as soon as the
//! callback returns. The loop then keeps it (one spare per loop) and fills
//! it again for a later read, instead of freeing it and allocating another:
//! objects of more than 512 bytes come from the C allocator, whose free and
//! allocate pair costs a 1 KiB echo as much as the rest of the loop's own
//! work per message. An object is reused for `n` bytes only if it was made
//! for at least `n` and at most a quarter more ([`fits`]), so that the
//! bytes a reused object carries beyond its contents stay bounded if the
//! protocol keeps it.

/// Reads at least this large switch to receiving straight into a new object.
pub const LARGE_READ: usize = 32 * 1024;

/// Where the next read goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadPlan {
    /// Into the shared buffer, then copied.
    Shared,
    /// Straight into a new object of this many bytes.
    Direct(usize),
}

/// The read-size policy of one transport: remembers the last read.
#[derive(Clone, Copy, Debug, Default)]
pub struct ReadSizer {
    last: usize,
}

impl ReadSizer {
    /// Where the next read should go; direct reads are capped at `max` (the
    /// size of the shared buffer).
    pub fn plan(&self, max: usize) -> ReadPlan {
        if self.last >= LARGE_READ {
            ReadPlan::Direct(self.last.min(max))
        } else {
            ReadPlan::Shared
        }
    }

    /// Records how many bytes the last read returned (0 for none or error).
    pub fn record(&mut self, n: usize) {
        self.last = n;
    }
}

/// Whether an object allocated for `capacity` bytes may carry `n` (see
/// "Reusing the object" above): it is large enough, and at most a quarter
/// of it would go unused.
pub fn fits(capacity: usize, n: usize) -> bool {
    n <= capacity && capacity - n <= capacity / 4
}
