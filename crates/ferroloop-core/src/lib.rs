//! The Python-free core of ferroloop.
//!
//! Everything here is plain Rust over the operating system, testable with
//! `cargo test` without libpython. The PyO3 bindings (`ferroloop-py`) own the
//! Python objects, put them into these containers and perform what these
//! state machines decide; the containers are generic over what they hold.
//!
//! # Layers (no module uses one above it)
//! 1. `sys` — the system calls on sockets, pipes and child processes, one
//!    errno path.
//! 2. `clock`, `fd`, `poller`, `waker` — time, owned descriptors, the
//!    level-triggered epoll layer and the self-pipe that wakes it;
//!    `address_map` — a map keyed by object addresses.
//! 3. `timers`, `io` — the timer heap; the outgoing byte queue (flushed
//!    through a socket or pipe sink), the outgoing datagram queue, and the
//!    read-size policy.
//! 4. `reactor` — the descriptor registry (generations in epoll tokens,
//!    interest merging, recovery from `ENOENT`/`EEXIST`), the scheduler
//!    (ready queue, timer queue, turn planning) and the free-list policy.
//! 5. `transport` — what every transport kind shares, sans I/O: write flow
//!    control and the closing / end-of-file / paused / lost lifecycle; `tls`
//!    — the states of a TLS layer and what each input does in them;
//!    `process` — child processes watched by pidfd (or the SIGCHLD
//!    fallback), reaped by pid, and the orphan reaper.
//! 6. `metrics` — the loop's counters and duration histogram.
//!
//! Errors stay `std::io::Error` (or a small error type) here; conversion to
//! Python exceptions happens only at the binding boundary.
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

pub mod address_map;
pub mod clock;
pub mod fd;
pub mod io;
pub mod metrics;
pub mod poller;
pub mod process;
pub mod reactor;
pub mod sys;
pub mod timers;
pub mod tls;
pub mod transport;
pub mod waker;

pub use clock::{monotonic, monotonic_ns, ns_to_seconds, CLOCK_RESOLUTION};
pub use fd::SharedFd;
pub use io::write_buffer::{Chunk, Sink, WriteBuffer};
pub use poller::{Event, Events, Interest, Poller};
pub use reactor::Direction;
pub use timers::{TimerEntry, TimerQueue};
pub use waker::SelfPipe;
