//! The table of descriptors watched for `add_reader` / `add_writer`.
//!
//! Indexed by descriptor number (descriptors are small integers), each slot
//! holds the reader and writer handles, the object the caller registered (so
//! that `remove_reader(sock)` still works after `sock.close()` made
//! `sock.fileno()` return -1, as with `selectors`), and a generation number
//! that goes into the epoll token: an event whose generation does not match
//! the slot belongs to an earlier registration of a reused descriptor number
//! and is ignored.
//!
//! Methods never drop Python objects: whatever they remove is collected in a
//! [`Dropped`] that the caller releases after leaving the `GilCell` borrow.

use std::io;
use std::os::fd::RawFd;

use ferroloop_core::{Event, Interest, Poller};
use pyo3::gc::PyVisit;
use pyo3::prelude::*;
use pyo3::PyTraverseError;

use crate::handles::{Dropped, Handle};

/// Token of the self-pipe's read end (its descriptor half, `-1`, never
/// matches a registration).
pub const SELF_PIPE_TOKEN: u64 = u64::MAX;

/// Which callback of a registration.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Direction {
    Read,
    Write,
}

struct Registration {
    fileobj: Py<PyAny>,
    reader: Option<Py<Handle>>,
    writer: Option<Py<Handle>>,
    generation: u32,
}

impl Registration {
    fn interest(&self) -> Interest {
        Interest {
            readable: self.reader.is_some(),
            writable: self.writer.is_some(),
        }
    }

    fn slot(&mut self, dir: Direction) -> &mut Option<Py<Handle>> {
        match dir {
            Direction::Read => &mut self.reader,
            Direction::Write => &mut self.writer,
        }
    }
}

fn token(fd: RawFd, generation: u32) -> u64 {
    (u64::from(generation) << 32) | u64::from(fd as u32)
}

/// Splits an epoll token into descriptor and generation.
pub fn split_token(token: u64) -> (RawFd, u32) {
    ((token & 0xffff_ffff) as u32 as RawFd, (token >> 32) as u32)
}

/// Registered descriptors.
#[derive(Default)]
pub struct Registry {
    slots: Vec<Option<Registration>>,
    count: usize,
    next_generation: u32,
}

/// Outcome of [`Registry::remove`].
pub enum Removed {
    /// The descriptor is not registered.
    NotRegistered,
    /// It is, but without a callback in that direction.
    NoCallback,
    /// This callback was removed.
    Callback(Py<Handle>),
}

impl Registry {
    /// Number of registered descriptors.
    pub fn len(&self) -> usize {
        self.count
    }

    fn get_mut(&mut self, fd: RawFd) -> Option<&mut Registration> {
        self.slots.get_mut(usize::try_from(fd).ok()?)?.as_mut()
    }

    /// The descriptor a registration was made for by `obj` (identity), used
    /// when `obj.fileno()` no longer gives it.
    pub fn find_by_object(&self, obj: &Bound<'_, PyAny>) -> Option<RawFd> {
        self.slots.iter().enumerate().find_map(|(fd, slot)| {
            slot.as_ref()
                .filter(|reg| reg.fileobj.as_ptr() == obj.as_ptr())
                .map(|_| fd as RawFd)
        })
    }

    /// Installs `handle` as the `dir` callback of `fd`, replacing (and
    /// returning) the previous one. On failure the handle is handed back in
    /// `dead` and the OS error returned.
    pub fn set(
        &mut self,
        poller: &Poller,
        fd: RawFd,
        fileobj: Py<PyAny>,
        handle: Py<Handle>,
        dir: Direction,
        dead: &mut Dropped,
    ) -> io::Result<Option<Py<Handle>>> {
        if let Some(reg) = self.get_mut(fd) {
            let mut interest = reg.interest();
            match dir {
                Direction::Read => interest.readable = true,
                Direction::Write => interest.writable = true,
            }
            let tok = token(fd, reg.generation);
            let outcome = match poller.modify(fd, tok, interest) {
                // The descriptor was closed (and maybe reused) since it was
                // registered, which removed it from epoll: register afresh.
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => poller.add(fd, tok, interest),
                other => other,
            };
            dead.objects.push(fileobj);
            if let Err(e) = outcome {
                dead.handles.push(handle);
                return Err(e);
            }
            return Ok(reg.slot(dir).replace(handle));
        }
        let generation = self.next_generation;
        self.next_generation = self.next_generation.wrapping_add(1);
        let mut reg = Registration {
            fileobj,
            reader: None,
            writer: None,
            generation,
        };
        *reg.slot(dir) = Some(handle);
        let interest = reg.interest();
        let outcome = match poller.add(fd, token(fd, generation), interest) {
            // Registered in epoll but not here: only possible if the table and
            // the kernel disagree; take the registration over.
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {
                poller.modify(fd, token(fd, generation), interest)
            }
            other => other,
        };
        if let Err(e) = outcome {
            dead.handles.extend(reg.reader.take());
            dead.handles.extend(reg.writer.take());
            dead.objects.push(reg.fileobj);
            return Err(e);
        }
        let index = fd as usize;
        if self.slots.len() <= index {
            self.slots.resize_with(index + 1, || None);
        }
        self.slots[index] = Some(reg);
        self.count += 1;
        Ok(None)
    }

    /// Removes the `dir` callback of `fd`, unregistering the descriptor when
    /// nothing is left. An error changing the epoll interest unregisters the
    /// descriptor and is returned (as `selectors` does).
    pub fn remove(
        &mut self,
        poller: &Poller,
        fd: RawFd,
        dir: Direction,
        dead: &mut Dropped,
    ) -> io::Result<Removed> {
        let Some(reg) = self.get_mut(fd) else {
            return Ok(Removed::NotRegistered);
        };
        let removed = match reg.slot(dir).take() {
            Some(handle) => Removed::Callback(handle),
            None => Removed::NoCallback,
        };
        let interest = reg.interest();
        if interest.is_empty() {
            // Errors are ignored: a closed descriptor already left epoll.
            let _ = poller.delete(fd);
            self.unregister(fd, dead);
            return Ok(removed);
        }
        if let Err(e) = poller.modify(fd, token(fd, reg.generation), interest) {
            if let Removed::Callback(handle) = removed {
                dead.handles.push(handle);
            }
            self.unregister(fd, dead);
            return Err(e);
        }
        Ok(removed)
    }

    fn unregister(&mut self, fd: RawFd, dead: &mut Dropped) {
        if let Some(reg) = self.slots.get_mut(fd as usize).and_then(Option::take) {
            self.count -= 1;
            dead.objects.push(reg.fileobj);
            dead.handles.extend(reg.reader);
            dead.handles.extend(reg.writer);
        }
    }

    /// The callbacks a readiness event for `token` schedules, in asyncio's
    /// order (reader, then writer). Cancelled callbacks are removed instead,
    /// like `BaseSelectorEventLoop._process_events`.
    pub fn ready_callbacks(
        &mut self,
        py: Python<'_>,
        poller: &Poller,
        event: Event,
        out: &mut impl Extend<Py<Handle>>,
        dead: &mut Dropped,
    ) {
        let (fd, generation) = split_token(event.token);
        let Some(reg) = self.get_mut(fd) else { return };
        if reg.generation != generation {
            return;
        }
        let reader = event
            .readable
            .then(|| reg.reader.as_ref().map(|h| h.clone_ref(py)))
            .flatten();
        let writer = event
            .writable
            .then(|| reg.writer.as_ref().map(|h| h.clone_ref(py)))
            .flatten();
        for (handle, dir) in [(reader, Direction::Read), (writer, Direction::Write)] {
            let Some(handle) = handle else { continue };
            if handle.get().is_cancelled() {
                dead.handles.push(handle);
                if let Ok(Removed::Callback(h)) = self.remove(poller, fd, dir, dead) {
                    dead.handles.push(h);
                }
            } else {
                out.extend(Some(handle));
            }
        }
    }

    /// Removes every registration (the poller is about to be closed).
    pub fn clear(&mut self, dead: &mut Dropped) {
        for fd in 0..self.slots.len() {
            self.unregister(fd as RawFd, dead);
        }
        self.slots = Vec::new();
    }

    /// Visits the registered file objects and callbacks (see
    /// `Handle::traverse_queued`).
    pub fn traverse(&self, visit: &PyVisit<'_>) -> Result<(), PyTraverseError> {
        for reg in self.slots.iter().flatten() {
            visit.call(&reg.fileobj)?;
            for handle in reg.reader.iter().chain(&reg.writer) {
                Handle::traverse_queued(handle, visit)?;
            }
        }
        Ok(())
    }
}
