//! Socket addresses as Python objects, both ways, for datagram transports.
//!
//! Received addresses become the objects Python's `socket` module makes:
//! `(host, port)` for IPv4, `(host, port, flowinfo, scope_id)` for IPv6 (the
//! host as the C library's `inet_ntop` writes it), a `str` for a Unix path
//! (decoded with the file-system encoding), `bytes` for an abstract Unix
//! name, `None` for an unnamed sender.
//!
//! Addresses to send to are converted here only where the conversion is
//! certain to agree with the `socket` module's: an exact tuple of a numeric
//! IP address (no zone index) and in-range integers, or an exact `str` or
//! `bytes` Unix name that fits. Everything else (host names, which Python
//! resolves; `'<broadcast>'`; `''`; tuple subclasses; integers out of range;
//! path-like objects) is [`from_python`]'s `None`, and the caller hands the
//! address to the socket object's own `sendto`, which resolves it or raises
//! exactly as it does under asyncio.
//!
//! [`AddrCache`] keeps recently received addresses with their objects: a
//! peer that sends many datagrams gets one object, built once.

use std::ffi::OsStr;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::os::unix::ffi::OsStrExt;

use ferroloop_core::sys::sockaddr::{ipv4_text, ipv6_text, AddrView, Family, SockAddr};
use pyo3::gc::PyVisit;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyInt, PyString, PyTuple};
use pyo3::PyTraverseError;

use crate::errors::os_error;

/// The object Python's `socket` module makes for `addr`.
pub fn to_python<'py>(py: Python<'py>, addr: &SockAddr) -> PyResult<Bound<'py, PyAny>> {
    Ok(match addr.view() {
        AddrView::Unnamed => py.None().into_bound(py),
        AddrView::V4 { ip, port } => {
            let mut buf = [0; 15];
            (ipv4_text(ip, &mut buf), port)
                .into_pyobject(py)?
                .into_any()
        }
        AddrView::V6 {
            ip,
            port,
            flowinfo,
            scope_id,
        } => (ipv6_text(ip).map_err(os_error)?, port, flowinfo, scope_id)
            .into_pyobject(py)?
            .into_any(),
        AddrView::UnixPath(path) => OsStr::from_bytes(path).into_pyobject(py)?.into_any(),
        AddrView::UnixAbstract(name) => PyBytes::new(py, name).into_any(),
        AddrView::Other(family) => {
            return Err(pyo3::exceptions::PyValueError::new_err(format!(
                "no conversion for addresses of family {family}"
            )))
        }
    })
}

/// `addr` as a socket address of `family`, where that is certain to be the
/// address the `socket` module would make of it; `None` otherwise (see the
/// module documentation).
pub fn from_python(family: Family, addr: &Bound<'_, PyAny>) -> Option<SockAddr> {
    match family {
        Family::V4 => {
            let t = addr.cast_exact::<PyTuple>().ok()?;
            if t.len() != 2 {
                return None;
            }
            let ip: Ipv4Addr = parse_exact_str(&t.get_item(0).ok()?)?;
            let port = exact_int::<u16>(&t.get_item(1).ok()?)?;
            Some(SockAddr::v4(ip.octets(), port))
        }
        Family::V6 => {
            let t = addr.cast_exact::<PyTuple>().ok()?;
            if !(2..=4).contains(&t.len()) {
                return None;
            }
            let ip: Ipv6Addr = parse_exact_str(&t.get_item(0).ok()?)?;
            let port = exact_int::<u16>(&t.get_item(1).ok()?)?;
            let flowinfo = match t.get_item(2) {
                Ok(f) => exact_int::<u32>(&f).filter(|f| *f <= 0xfffff)?,
                Err(_) => 0,
            };
            let scope_id = match t.get_item(3) {
                Ok(s) => exact_int::<u32>(&s)?,
                Err(_) => 0,
            };
            Some(SockAddr::v6(ip.octets(), port, flowinfo, scope_id))
        }
        Family::Unix => {
            if let Ok(b) = addr.cast_exact::<PyBytes>() {
                return SockAddr::unix(b.as_bytes());
            }
            let s = addr.cast_exact::<PyString>().ok()?;
            let encoded = encode_fs(s)?;
            SockAddr::unix(encoded.as_bytes())
        }
        Family::Other(_) => None,
    }
}

/// An exact `str` parsed as a `T` (an IP address).
fn parse_exact_str<T: std::str::FromStr>(obj: &Bound<'_, PyAny>) -> Option<T> {
    obj.cast_exact::<PyString>()
        .ok()?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

/// The value of an exact `int` (not `bool`), if it fits `T`.
fn exact_int<T: for<'a, 'py> FromPyObject<'a, 'py>>(obj: &Bound<'_, PyAny>) -> Option<T> {
    obj.cast_exact::<PyInt>().ok()?.extract().ok()
}

/// A `str` encoded with the file-system encoding (`os.fsencode`).
fn encode_fs<'py>(s: &Bound<'py, PyString>) -> Option<Bound<'py, PyBytes>> {
    // SAFETY: `s` is a valid str; the result is a new reference or NULL
    // with an exception set, which `from_owned_ptr_or_err` takes.
    let encoded = unsafe {
        Bound::from_owned_ptr_or_err(s.py(), pyo3::ffi::PyUnicode_EncodeFSDefault(s.as_ptr()))
    };
    encoded.ok()?.cast_into::<PyBytes>().ok()
}

/// How many received addresses an [`AddrCache`] remembers (a power of two).
const CACHED: usize = 64;

/// Recently received addresses and their Python objects, in a
/// direct-mapped table indexed by a hash of the address (allocated on
/// first use): a hit costs one hash and one comparison, and a few dozen
/// peers sending in turn do not evict each other.
#[derive(Default)]
pub struct AddrCache {
    slots: Option<Box<[Slot]>>,
}

/// An address and its object, or nothing.
type Slot = Option<(SockAddr, Py<PyAny>)>;

/// The slot of an address: its bytes in use, folded eight at a time with a
/// multiplicative hash; the top bits pick the slot.
fn slot_of(addr: &SockAddr) -> usize {
    let mut hash = 0_u64;
    for chunk in addr.as_bytes().chunks(8) {
        let mut word = [0_u8; 8];
        word[..chunk.len()].copy_from_slice(chunk);
        hash = (hash ^ u64::from_ne_bytes(word)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
    (hash >> (64 - CACHED.trailing_zeros())) as usize
}

impl AddrCache {
    /// The cached object of a received address.
    pub fn find(&self, py: Python<'_>, addr: &SockAddr) -> Option<Py<PyAny>> {
        match &self.slots.as_ref()?[slot_of(addr)] {
            Some((a, obj)) if a == addr => Some(obj.clone_ref(py)),
            _ => None,
        }
    }

    /// Remembers the object made for a received address; returns the one it
    /// replaces, for the caller to drop.
    pub fn insert(&mut self, addr: SockAddr, obj: Py<PyAny>) -> Option<Py<PyAny>> {
        if addr.is_empty() {
            return Some(obj);
        }
        let slots = self
            .slots
            .get_or_insert_with(|| (0..CACHED).map(|_| None).collect());
        slots[slot_of(&addr)]
            .replace((addr, obj))
            .map(|(_, old)| old)
    }

    /// Visits the cached objects.
    pub fn traverse(&self, visit: &PyVisit<'_>) -> Result<(), PyTraverseError> {
        self.slots
            .iter()
            .flat_map(|slots| slots.iter().flatten())
            .try_for_each(|(_, obj)| visit.call(obj))
    }

    /// Forgets everything; returns the objects to drop.
    pub fn clear(&mut self) -> Vec<Py<PyAny>> {
        self.slots
            .take()
            .map(|slots| {
                slots
                    .into_vec()
                    .into_iter()
                    .flatten()
                    .map(|(_, obj)| obj)
                    .collect()
            })
            .unwrap_or_default()
    }
}
