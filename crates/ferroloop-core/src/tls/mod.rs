//! TLS, sans I/O: the states of asyncio's TLS protocol and what each input
//! does in each of them. The bindings drive Python's `ssl` objects (an
//! `SSLObject` over two memory BIOs) as these decide.

pub mod state;
