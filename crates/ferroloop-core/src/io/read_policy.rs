//! How much a stream transport asks the kernel for, and where it lands.
//!
//! A read goes either into the loop's shared receive buffer (256 KiB), whose
//! contents are then copied into a `bytes` of their size, or straight into
//! a `bytes` object, which spares that copy. Asking the kernel how much is
//! queued (`FIONREAD`) would cost a system call per read, measurably more
//! than it saves, so the size of the next read is guessed from the recent
//! ones: the largest, forgotten slowly (an eighth per smaller read), so that
//! a connection alternating small and large messages keeps room for the
//! large ones.
//!
//! - While that guess is [`DIRECT_READ`] bytes or more, reads go straight
//!   into an object of the guess plus an eighth. A stream of similar
//!   messages (an echo, a request/response protocol, a bulk transfer in
//!   steady chunks) then lands without a copy.
//! - A read that filled such an object may have left more data queued, so
//!   the next read goes to the shared buffer, which takes up to 256 KiB at
//!   once; the two reads count as one burst for the guess, so that the next
//!   burst of that size lands in one read.
//! - Smaller reads go to the shared buffer: their copy is cheap, and a
//!   guess that small would cut a queue of pipelined messages into many
//!   reads.
//!
//! # Reusing the object
//! A `bytes` handed to `data_received` is usually dropped as soon as the
//! callback returns. The loop then keeps it (one spare per loop) and fills
//! it again for a later read, instead of freeing it and allocating another:
//! objects of more than 512 bytes come from the C allocator, whose free and
//! allocate pair costs a 1 KiB echo as much as the rest of the loop's own
//! work per message. A shorter `bytes` than its allocation is sound (its
//! memory is freed by address). An object carries `n` bytes only if it was
//! made for at least `n` and at most an eighth more ([`fits`]), so that
//! what a kept object holds beyond its contents stays bounded (a protocol
//! that keeps every chunk uses at most an eighth more memory for them); a direct read that got less is copied into an
//! object of its size, and the unused one stays the spare.

/// Reads at least this large send the next read straight into an object.
pub const DIRECT_READ: usize = 512;

/// Where the next read goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadPlan {
    /// Into the shared buffer, then copied.
    Shared,
    /// Straight into an object of at least this many bytes.
    Direct(usize),
}

/// The read-size policy of one transport: remembers the recent reads.
#[derive(Clone, Copy, Debug, Default)]
pub struct ReadSizer {
    /// The largest recent burst, decayed by an eighth per smaller one.
    guess: usize,
    /// What the reads of the current burst got, while each filled all the
    /// room it was given (0 otherwise): the next read continues the burst.
    filled: usize,
}

impl ReadSizer {
    /// Where the next read should go; direct reads are capped at `max` (the
    /// size of the shared buffer).
    pub fn plan(&self, max: usize) -> ReadPlan {
        if self.filled > 0 || self.guess < DIRECT_READ {
            ReadPlan::Shared
        } else {
            ReadPlan::Direct((self.guess + self.guess / 8).min(max))
        }
    }

    /// Records a read of `n` bytes (0 for none or an error) into room for
    /// `room` bytes. A read after one that filled its room belongs to the
    /// same burst: the guess learns the burst's whole size, so that the
    /// next burst of that size fits one read.
    pub fn record(&mut self, n: usize, room: usize) {
        let burst = self.filled + n;
        self.guess = burst.max(self.guess - self.guess / 8);
        self.filled = if n > 0 && n == room { burst } else { 0 };
    }
}

/// Whether an object allocated for `capacity` bytes may carry `n` (see
/// "Reusing the object" above): it is large enough, and at most an eighth
/// of it would go unused.
pub fn fits(capacity: usize, n: usize) -> bool {
    n <= capacity && capacity - n <= capacity / 8
}
