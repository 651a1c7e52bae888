//! Transports: what every kind shares (`base.rs`) and each kind's own I/O.
//!
//! A kind is a frozen pyclass holding a [`base::TransportBase`] and its own
//! I/O state; it implements [`base::Transport`] (and, through it, the
//! loop's `Watcher`), and gets the shared Python methods with
//! `transport_methods!`. Its Python face, a subclass of the matching
//! `asyncio` transport class, lives in `python/ferroloop/_transports.py`.

#[macro_use]
pub mod base;
pub mod datagram;
pub mod stream;
