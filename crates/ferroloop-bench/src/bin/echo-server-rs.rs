//! The ceiling: a plain single-threaded Rust echo server on the same
//! level-triggered epoll poller ferroloop uses, with a 256 KiB receive buffer
//! and no Python. `echo-server-rs ADDRESS` (`host:port` or `unix:/path`,
//! or `udp:host:port` for a UDP echo that, as ferroloop, reads up to 32
//! datagrams per readiness event with `recvfrom` and answers each with
//! `sendto`); prints `ready` once listening.

use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};

use ferroloop_core::sys::sockaddr::SockAddr;
use ferroloop_core::sys::socket;
use ferroloop_core::{Events, Interest, Poller};

enum Conn {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Conn {
    fn io(&mut self) -> (&mut dyn Read, RawFd) {
        match self {
            Conn::Tcp(s) => {
                let fd = s.as_raw_fd();
                (s, fd)
            }
            Conn::Unix(s) => {
                let fd = s.as_raw_fd();
                (s, fd)
            }
        }
    }

    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        match self {
            Conn::Tcp(s) => s.write(data),
            Conn::Unix(s) => s.write(data),
        }
    }
}

/// The UDP echo (see the module documentation); a reply the kernel does
/// not take at once is dropped.
fn serve_udp(poller: Poller, address: &str) -> std::io::Result<()> {
    let socket = UdpSocket::bind(address)?;
    socket.set_nonblocking(true)?;
    let fd = socket.as_raw_fd();
    poller.add(fd, fd as u64, Interest::READABLE)?;
    println!("ready");
    let mut events = Events::with_capacity(16);
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        match poller.wait(&mut events, None) {
            Err(e) if e.kind() != ErrorKind::Interrupted => return Err(e),
            _ => {}
        }
        for _ in 0..32 {
            let mut from = SockAddr::empty();
            match socket::recv_from(fd, &mut buf, &mut from) {
                Ok(n) => {
                    let _ = socket::send_to(fd, &buf[..n], &from);
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
}

fn main() -> std::io::Result<()> {
    let address = std::env::args()
        .nth(1)
        .expect("usage: echo-server-rs ADDRESS");
    let poller = Poller::new()?;
    if let Some(udp) = address.strip_prefix("udp:") {
        return serve_udp(poller, udp);
    }
    let (tcp, unix) = match address.strip_prefix("unix:") {
        Some(path) => {
            let _ = std::fs::remove_file(path);
            (None, Some(UnixListener::bind(path)?))
        }
        None => (Some(TcpListener::bind(&address)?), None),
    };
    let listen_fd = tcp
        .as_ref()
        .map(|l| l.as_raw_fd())
        .or(unix.as_ref().map(|l| l.as_raw_fd()))
        .unwrap();
    if let Some(l) = &tcp {
        l.set_nonblocking(true)?;
    }
    if let Some(l) = &unix {
        l.set_nonblocking(true)?;
    }
    poller.add(listen_fd, listen_fd as u64, Interest::READABLE)?;
    println!("ready");
    let mut conns: HashMap<RawFd, (Conn, Vec<u8>)> = HashMap::new();
    let mut events = Events::with_capacity(256);
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        poller.wait(&mut events, None).or_else(|e| {
            if e.kind() == ErrorKind::Interrupted {
                Ok(0)
            } else {
                Err(e)
            }
        })?;
        let ready: Vec<_> = events.iter().collect();
        for ev in ready {
            let fd = ev.token as RawFd;
            if fd == listen_fd {
                loop {
                    let conn = match (&tcp, &unix) {
                        (Some(l), _) => l.accept().map(|(s, _)| {
                            s.set_nodelay(true).ok();
                            Conn::Tcp(s)
                        }),
                        (_, Some(l)) => l.accept().map(|(s, _)| Conn::Unix(s)),
                        _ => unreachable!(),
                    };
                    let mut conn = match conn {
                        Ok(c) => c,
                        Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                        Err(e) => return Err(e),
                    };
                    let fd = match &mut conn {
                        Conn::Tcp(s) => {
                            s.set_nonblocking(true)?;
                            s.as_raw_fd()
                        }
                        Conn::Unix(s) => {
                            s.set_nonblocking(true)?;
                            s.as_raw_fd()
                        }
                    };
                    poller.add(fd, fd as u64, Interest::READABLE)?;
                    conns.insert(fd, (conn, Vec::new()));
                }
                continue;
            }
            let Some((conn, pending)) = conns.get_mut(&fd) else {
                continue;
            };
            let mut closed = false;
            if ev.writable && !pending.is_empty() {
                match conn.write(pending) {
                    Ok(n) => {
                        pending.drain(..n);
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                    Err(_) => closed = true,
                }
                if pending.is_empty() {
                    poller.modify(fd, fd as u64, Interest::READABLE)?;
                }
            }
            if ev.readable && !closed {
                let (reader, _) = conn.io();
                match reader.read(&mut buf) {
                    Ok(0) => closed = true,
                    Ok(n) => {
                        let data = &buf[..n];
                        if pending.is_empty() {
                            match conn.write(data) {
                                Ok(w) if w == n => {}
                                Ok(w) => {
                                    pending.extend_from_slice(&data[w..]);
                                    poller.modify(fd, fd as u64, Interest::BOTH)?;
                                }
                                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                                    pending.extend_from_slice(data);
                                    poller.modify(fd, fd as u64, Interest::BOTH)?;
                                }
                                Err(_) => closed = true,
                            }
                        } else {
                            pending.extend_from_slice(data);
                        }
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                    Err(_) => closed = true,
                }
            }
            if closed {
                let _ = poller.delete(fd);
                conns.remove(&fd);
            }
        }
    }
}
