//! Byte-moving containers and policies shared by every transport kind:
//! the outgoing byte queue, the outgoing datagram queue, and the read-size
//! policy.

pub mod datagram_queue;
pub mod read_policy;
pub mod write_buffer;
