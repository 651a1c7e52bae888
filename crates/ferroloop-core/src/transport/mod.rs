//! What every transport kind shares, as sans-I/O state: write flow control
//! (`flow`) and the lifecycle of closing, end of file, paused reading and
//! lost connection (`lifecycle`). The bindings perform the I/O and the
//! protocol calls these decide on.

pub mod flow;
pub mod lifecycle;
