//! Shared bits of the benchmark binaries.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;

/// A connected stream: TCP or Unix.
pub enum Stream {
    /// TCP (with `TCP_NODELAY`).
    Tcp(TcpStream),
    /// Unix stream socket.
    Unix(UnixStream),
}

impl Stream {
    /// Connects to `host:port` or, with a leading `unix:`, to a socket path.
    pub fn connect(target: &str) -> std::io::Result<Stream> {
        match target.strip_prefix("unix:") {
            Some(path) => Ok(Stream::Unix(UnixStream::connect(path)?)),
            None => {
                let s = TcpStream::connect(target)?;
                s.set_nodelay(true)?;
                Ok(Stream::Tcp(s))
            }
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read(buf),
            Stream::Unix(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write(buf),
            Stream::Unix(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
