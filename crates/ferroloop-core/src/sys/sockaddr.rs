//! Socket addresses as the kernel reads and writes them (`sockaddr_in`,
//! `sockaddr_in6`, `sockaddr_un`), for datagram sockets, which name a peer
//! on every send and receive.
//!
//! A [`SockAddr`] is a `sockaddr_storage` and the length the kernel (or the
//! constructor) filled in. [`SockAddr::view`] reads it back the way Python's
//! `socket` module presents addresses, so that the bindings can build the
//! same objects: an IPv4 address and port; an IPv6 address, port, flow
//! information and scope; a Unix path (up to its first NUL), an abstract
//! name (Linux: a leading NUL, every byte of the given length), or no name
//! at all (a datagram from an unbound Unix socket, length 0).

use std::ffi::CStr;
use std::io;
use std::mem;

/// A socket address of any family, with its length.
#[derive(Clone, Copy)]
pub struct SockAddr {
    storage: libc::sockaddr_storage,
    len: libc::socklen_t,
}

/// What a [`SockAddr`] holds, as Python's `socket` module reads it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AddrView<'a> {
    /// No address (length 0): a datagram from an unnamed Unix socket.
    Unnamed,
    /// `AF_INET`: address and port (host order).
    V4 {
        /// The address.
        ip: [u8; 4],
        /// The port.
        port: u16,
    },
    /// `AF_INET6`: address, port, flow information and scope (host order).
    V6 {
        /// The address.
        ip: [u8; 16],
        /// The port.
        port: u16,
        /// The flow information (`sin6_flowinfo`).
        flowinfo: u32,
        /// The scope (`sin6_scope_id`).
        scope_id: u32,
    },
    /// `AF_UNIX` with a path name: its bytes up to the first NUL (empty for
    /// an unbound socket's own name).
    UnixPath(&'a [u8]),
    /// `AF_UNIX` in Linux's abstract namespace: every byte of the name,
    /// starting with the NUL that marks it.
    UnixAbstract(&'a [u8]),
    /// Another family.
    Other(libc::c_int),
}

/// The address families the datagram calls convert natively.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    /// `AF_INET`.
    V4,
    /// `AF_INET6`.
    V6,
    /// `AF_UNIX`.
    Unix,
    /// Any other family (raw value).
    Other(libc::c_int),
}

impl Family {
    /// The family of a raw `AF_*` value (a Python socket's `family`).
    pub fn from_raw(family: libc::c_int) -> Self {
        match family {
            libc::AF_INET => Family::V4,
            libc::AF_INET6 => Family::V6,
            libc::AF_UNIX => Family::Unix,
            other => Family::Other(other),
        }
    }
}

/// The offset of `sun_path` in `sockaddr_un` (the family field before it).
const SUN_PATH_OFFSET: usize = mem::size_of::<libc::sa_family_t>();

impl Default for SockAddr {
    fn default() -> Self {
        Self::empty()
    }
}

impl SockAddr {
    /// Room for an address of any family, to receive one into.
    pub fn empty() -> Self {
        SockAddr {
            // SAFETY: sockaddr_storage is plain data; all zeroes is valid.
            storage: unsafe { mem::zeroed() },
            len: mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t,
        }
    }

    /// An IPv4 address and port.
    pub fn v4(ip: [u8; 4], port: u16) -> Self {
        let mut addr = Self::empty();
        // SAFETY: sockaddr_storage is large enough and suitably aligned for
        // every sockaddr type; the storage is zeroed.
        let sin = unsafe { &mut *(&mut addr.storage as *mut _ as *mut libc::sockaddr_in) };
        sin.sin_family = libc::AF_INET as libc::sa_family_t;
        sin.sin_port = port.to_be();
        sin.sin_addr.s_addr = u32::from_ne_bytes(ip);
        addr.len = mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
        addr
    }

    /// An IPv6 address, port, flow information and scope.
    pub fn v6(ip: [u8; 16], port: u16, flowinfo: u32, scope_id: u32) -> Self {
        let mut addr = Self::empty();
        // SAFETY: as in `v4`.
        let sin6 = unsafe { &mut *(&mut addr.storage as *mut _ as *mut libc::sockaddr_in6) };
        sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
        sin6.sin6_port = port.to_be();
        sin6.sin6_flowinfo = flowinfo.to_be();
        sin6.sin6_addr.s6_addr = ip;
        sin6.sin6_scope_id = scope_id;
        addr.len = mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t;
        addr
    }

    /// A Unix address: a path (NUL-terminated here), or, if `name` starts
    /// with a NUL, an abstract name of exactly these bytes. `None` if it
    /// does not fit in `sun_path`.
    pub fn unix(name: &[u8]) -> Option<Self> {
        let mut addr = Self::empty();
        // SAFETY: as in `v4`.
        let sun = unsafe { &mut *(&mut addr.storage as *mut _ as *mut libc::sockaddr_un) };
        let abstract_name = name.first() == Some(&0);
        // A path needs room for its terminating NUL; an abstract name does not.
        let room = sun.sun_path.len() - usize::from(!abstract_name);
        if name.len() > room {
            return None;
        }
        sun.sun_family = libc::AF_UNIX as libc::sa_family_t;
        for (dst, src) in sun.sun_path.iter_mut().zip(name) {
            *dst = *src as libc::c_char;
        }
        let len = SUN_PATH_OFFSET + name.len() + usize::from(!abstract_name);
        addr.len = len as libc::socklen_t;
        Some(addr)
    }

    /// The address family (`AF_UNSPEC` when unnamed).
    pub fn family(&self) -> libc::c_int {
        if self.len == 0 {
            return libc::AF_UNSPEC;
        }
        libc::c_int::from(self.storage.ss_family)
    }

    /// The length in use.
    pub fn len(&self) -> libc::socklen_t {
        self.len
    }

    /// Whether the length is zero (no address).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The address for a system call to read.
    pub fn as_ptr(&self) -> *const libc::sockaddr {
        (&self.storage as *const libc::sockaddr_storage).cast()
    }

    /// Resets to the full storage, then gives the pointers a system call
    /// fills in (`recvfrom`'s `src_addr` and `addrlen`).
    pub fn as_out(&mut self) -> (*mut libc::sockaddr, *mut libc::socklen_t) {
        self.len = mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        (
            (&mut self.storage as *mut libc::sockaddr_storage).cast(),
            &mut self.len,
        )
    }

    /// The bytes in use (what two equal addresses share).
    pub fn as_bytes(&self) -> &[u8] {
        let len = (self.len as usize).min(mem::size_of::<libc::sockaddr_storage>());
        // SAFETY: the storage is plain data of at least `len` bytes.
        unsafe { std::slice::from_raw_parts(self.as_ptr().cast::<u8>(), len) }
    }

    /// The address as Python's `socket` module reads it.
    pub fn view(&self) -> AddrView<'_> {
        let len = (self.len as usize).min(mem::size_of::<libc::sockaddr_storage>());
        if len == 0 {
            return AddrView::Unnamed;
        }
        match self.family() {
            libc::AF_INET if len >= mem::size_of::<libc::sockaddr_in>() => {
                // SAFETY: the family says the storage holds a sockaddr_in.
                let sin = unsafe { &*(self.as_ptr() as *const libc::sockaddr_in) };
                AddrView::V4 {
                    ip: sin.sin_addr.s_addr.to_ne_bytes(),
                    port: u16::from_be(sin.sin_port),
                }
            }
            libc::AF_INET6 if len >= mem::size_of::<libc::sockaddr_in6>() => {
                // SAFETY: the family says the storage holds a sockaddr_in6.
                let sin6 = unsafe { &*(self.as_ptr() as *const libc::sockaddr_in6) };
                AddrView::V6 {
                    ip: sin6.sin6_addr.s6_addr,
                    port: u16::from_be(sin6.sin6_port),
                    flowinfo: u32::from_be(sin6.sin6_flowinfo),
                    scope_id: sin6.sin6_scope_id,
                }
            }
            libc::AF_UNIX => {
                let name = &self.as_bytes()[SUN_PATH_OFFSET.min(len)..];
                if name.first() == Some(&0) {
                    AddrView::UnixAbstract(name)
                } else {
                    let end = name.iter().position(|&b| b == 0).unwrap_or(name.len());
                    AddrView::UnixPath(&name[..end])
                }
            }
            family => AddrView::Other(family),
        }
    }
}

impl PartialEq for SockAddr {
    fn eq(&self, other: &Self) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl Eq for SockAddr {}

impl std::fmt::Debug for SockAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.view().fmt(f)
    }
}

/// The text of an IPv4 address, as `inet_ntop` (and Python) write it, in
/// `buf`; returns the part written (at most 15 bytes, ASCII).
pub fn ipv4_text(ip: [u8; 4], buf: &mut [u8; 15]) -> &str {
    let mut len = 0;
    for (i, octet) in ip.into_iter().enumerate() {
        if i > 0 {
            buf[len] = b'.';
            len += 1;
        }
        let digits = [octet / 100, octet / 10 % 10, octet % 10];
        let skip = if octet >= 100 {
            0
        } else if octet >= 10 {
            1
        } else {
            2
        };
        for d in &digits[skip..] {
            buf[len] = b'0' + d;
            len += 1;
        }
    }
    // Only ASCII digits and dots were written.
    std::str::from_utf8(&buf[..len]).unwrap_or_default()
}

extern "C" {
    // POSIX (`<arpa/inet.h>`), in every C library; the `libc` crate does
    // not declare it.
    fn inet_ntop(
        af: libc::c_int,
        src: *const libc::c_void,
        dst: *mut libc::c_char,
        size: libc::socklen_t,
    ) -> *const libc::c_char;
}

/// The text of an IPv6 address, as the C library's `inet_ntop` writes it
/// (which Python uses; it differs from Rust's formatting for some
/// IPv4-compatible addresses).
pub fn ipv6_text(ip: [u8; 16]) -> io::Result<String> {
    let mut buf = [0 as libc::c_char; 64];
    // SAFETY: `ip` is 16 readable bytes (an in6_addr); `buf` is writable
    // for its whole length, which is more than INET6_ADDRSTRLEN.
    let out = unsafe {
        inet_ntop(
            libc::AF_INET6,
            ip.as_ptr().cast(),
            buf.as_mut_ptr(),
            buf.len() as libc::socklen_t,
        )
    };
    if out.is_null() {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: inet_ntop succeeded, so `buf` holds a NUL-terminated string.
    Ok(unsafe { CStr::from_ptr(buf.as_ptr()) }
        .to_string_lossy()
        .into_owned())
}
