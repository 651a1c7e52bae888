//! The reactor's Python-free mechanisms: which descriptor runs what
//! (`registry`), and what one turn of the loop does (`scheduler`), plus the
//! policy for keeping reusable objects (`free_list`).

pub mod free_list;
pub mod registry;
pub mod scheduler;

/// Which side of a descriptor a callback watches.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Direction {
    /// Readable (or hung up / in error).
    Read,
    /// Writable (or hung up / in error).
    Write,
}
