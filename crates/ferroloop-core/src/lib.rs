//! The Python-free core of ferroloop.
//!
//! Everything here is plain Rust over the operating system: the monotonic
//! clock, the timer queue, the level-triggered epoll poller and the self-pipe
//! used to wake a sleeping loop. The PyO3 bindings (`ferroloop-py`) own the
//! Python objects and put them into these containers; the containers are
//! generic so that they can be tested, fuzzed and run under miri without
//! libpython.
//!
//! Errors stay `std::io::Error` here; conversion to Python exceptions happens
//! only at the binding boundary.
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

pub mod clock;
pub mod fd;
pub mod poller;
pub mod timers;
pub mod waker;
pub mod write_buffer;

pub use clock::{monotonic, monotonic_ns, ns_to_seconds, CLOCK_RESOLUTION};
pub use fd::SharedFd;
pub use poller::{Event, Events, Interest, Poller};
pub use timers::{TimerEntry, TimerQueue};
pub use waker::SelfPipe;
pub use write_buffer::{Chunk, WriteBuffer};
