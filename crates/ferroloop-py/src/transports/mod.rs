//! Transports: what every kind shares (`base.rs`) and each kind's own I/O.
//!
//! A kind is a frozen pyclass holding a [`base::TransportBase`] and its own
//! I/O state (receiving with `reading.rs`, sending with `writing.rs`); it
//! implements [`base::Transport`] (and, through it, the loop's `Watcher`),
//! and gets the shared Python methods with `transport_methods!`
//! (`methods.rs`). Its Python face, a subclass of the matching `asyncio`
//! transport class, lives in `python/ferroloop/_transports.py`.
//!
//! TLS (`tls/`) is not a transport kind of its own but a layer on one: the
//! protocol of the transport below (a `NativeProtocol`, which a stream
//! transport feeds without a Python call) and the core of the transport the
//! application sees.

pub mod base;
#[macro_use]
mod methods;
pub mod datagram;
mod feed;
mod limits;
pub mod pipe;
pub mod reading;
pub mod stream;
pub mod tls;
pub mod writing;
