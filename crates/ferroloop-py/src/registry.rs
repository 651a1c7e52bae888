//! The table of descriptors the loop watches: `add_reader`/`add_writer`
//! callbacks and transports.
//!
//! Indexed by descriptor number (descriptors are small integers), each slot
//! holds what runs when the descriptor is readable and when it is writable:
//! a `Handle` (from `add_reader`/`add_writer`) or a transport (whose
//! `_read_ready`/`_write_ready` the loop calls natively). It also keeps the
//! object the caller registered (so that `remove_reader(sock)` still works
//! after `sock.close()` made `sock.fileno()` return -1, as with `selectors`)
//! and a generation number that goes into the epoll token: an event whose
//! generation does not match the slot belongs to an earlier registration of a
//! reused descriptor number and is ignored.
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
use crate::sock::SockWaiter;
use crate::transport::SocketTransport;

/// Token of the self-pipe's read end (its descriptor half, `-1`, never
/// matches a registration).
pub const SELF_PIPE_TOKEN: u64 = u64::MAX;

/// Which callback of a registration.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Direction {
    Read,
    Write,
}

/// What runs when a descriptor is ready.
pub enum IoCallback {
    /// An `add_reader`/`add_writer` callback.
    Handle(Py<Handle>),
    /// A transport's `_read_ready`/`_write_ready`.
    Transport(Py<SocketTransport>),
    /// A pending `sock_recv`/`sock_recv_into`/`sock_sendall`.
    Sock(Py<SockWaiter>),
}

impl IoCallback {
    pub(crate) fn release_into(self, dead: &mut Dropped) {
        match self {
            IoCallback::Handle(h) => dead.handles.push(h),
            IoCallback::Transport(t) => dead.objects.push(t.into_any()),
            IoCallback::Sock(w) => dead.objects.push(w.into_any()),
        }
    }

    fn as_ptr(&self) -> *mut pyo3::ffi::PyObject {
        match self {
            IoCallback::Handle(h) => h.as_ptr(),
            IoCallback::Transport(t) => t.as_ptr(),
            IoCallback::Sock(w) => w.as_ptr(),
        }
    }
}

/// An item of the loop's ready queue.
pub enum Ready {
    /// A scheduled callback.
    Handle(Py<Handle>),
    /// A transport's descriptor is readable.
    Read(Py<SocketTransport>),
    /// A transport's descriptor is writable.
    Write(Py<SocketTransport>),
    /// A socket operation's descriptor is ready in that direction.
    Sock(Py<SockWaiter>, Direction),
    /// A step of an asyncio C `Task`: its callback and the task's context.
    /// Queued without a handle, since nothing can see one (see
    /// `Loop::call_soon_task_step`).
    TaskStep(Py<PyAny>, Py<PyAny>),
}

impl Ready {
    /// Hands the item's reference to `dead`.
    pub fn release_into(self, dead: &mut Dropped) {
        match self {
            Ready::Handle(h) => dead.handles.push(h),
            Ready::Read(t) | Ready::Write(t) => dead.objects.push(t.into_any()),
            Ready::Sock(w, _) => dead.objects.push(w.into_any()),
            Ready::TaskStep(callback, context) => dead.objects.extend([callback, context]),
        }
    }

    /// Visits the item (see `Handle::traverse_queued`).
    pub fn traverse(&self, visit: &PyVisit<'_>) -> Result<(), PyTraverseError> {
        match self {
            Ready::Handle(h) => Handle::traverse_queued(h, visit),
            Ready::Read(t) | Ready::Write(t) => visit.call(t),
            Ready::Sock(w, _) => visit.call(w),
            Ready::TaskStep(callback, context) => {
                visit.call(callback)?;
                visit.call(context)
            }
        }
    }
}

struct Registration {
    /// The object given to `add_reader`/`add_writer` (None for transports).
    fileobj: Option<Py<PyAny>>,
    reader: Option<IoCallback>,
    writer: Option<IoCallback>,
    generation: u32,
}

impl Registration {
    fn interest(&self) -> Interest {
        Interest {
            readable: self.reader.is_some(),
            writable: self.writer.is_some(),
        }
    }

    fn slot(&mut self, dir: Direction) -> &mut Option<IoCallback> {
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
    Callback(IoCallback),
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
                .filter(|reg| {
                    reg.fileobj
                        .as_ref()
                        .is_some_and(|f| f.as_ptr() == obj.as_ptr())
                })
                .map(|_| fd as RawFd)
        })
    }

    /// Installs `callback` as the `dir` callback of `fd`, replacing (and
    /// returning) the previous one. On failure the callback is handed back in
    /// `dead` and the OS error returned.
    pub fn set(
        &mut self,
        poller: &Poller,
        fd: RawFd,
        fileobj: Option<Py<PyAny>>,
        callback: IoCallback,
        dir: Direction,
        dead: &mut Dropped,
    ) -> io::Result<Option<IoCallback>> {
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
            dead.objects.extend(fileobj);
            if let Err(e) = outcome {
                callback.release_into(dead);
                return Err(e);
            }
            return Ok(reg.slot(dir).replace(callback));
        }
        let generation = self.next_generation;
        self.next_generation = self.next_generation.wrapping_add(1);
        let mut reg = Registration {
            fileobj,
            reader: None,
            writer: None,
            generation,
        };
        *reg.slot(dir) = Some(callback);
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
            for callback in [reg.reader.take(), reg.writer.take()].into_iter().flatten() {
                callback.release_into(dead);
            }
            dead.objects.extend(reg.fileobj);
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
            Some(callback) => Removed::Callback(callback),
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
            if let Removed::Callback(callback) = removed {
                callback.release_into(dead);
            }
            self.unregister(fd, dead);
            return Err(e);
        }
        Ok(removed)
    }

    /// Removes the `dir` callback of `fd` if it is `callback` (by identity);
    /// whether it was.
    pub fn remove_if(
        &mut self,
        poller: &Poller,
        fd: RawFd,
        dir: Direction,
        callback: *mut pyo3::ffi::PyObject,
        dead: &mut Dropped,
    ) -> bool {
        let current = self
            .get_mut(fd)
            .and_then(|reg| reg.slot(dir).as_ref().map(IoCallback::as_ptr));
        if current != Some(callback) {
            return false;
        }
        match self.remove(poller, fd, dir, dead) {
            Ok(Removed::Callback(cb)) => {
                cb.release_into(dead);
                true
            }
            _ => true,
        }
    }

    /// Removes everything registered for `fd` (a transport closing it).
    pub fn forget(&mut self, poller: &Poller, fd: RawFd, dead: &mut Dropped) {
        if self.get_mut(fd).is_some() {
            let _ = poller.delete(fd);
            self.unregister(fd, dead);
        }
    }

    fn unregister(&mut self, fd: RawFd, dead: &mut Dropped) {
        if let Some(reg) = self.slots.get_mut(fd as usize).and_then(Option::take) {
            self.count -= 1;
            dead.objects.extend(reg.fileobj);
            for callback in [reg.reader, reg.writer].into_iter().flatten() {
                callback.release_into(dead);
            }
        }
    }

    /// What a readiness event schedules, in asyncio's order (reader, then
    /// writer). Cancelled callbacks are removed instead, like
    /// `BaseSelectorEventLoop._process_events`.
    pub fn ready_callbacks(
        &mut self,
        py: Python<'_>,
        poller: &Poller,
        event: Event,
        out: &mut impl Extend<Ready>,
        dead: &mut Dropped,
    ) {
        let (fd, generation) = split_token(event.token);
        let Some(reg) = self.get_mut(fd) else { return };
        if reg.generation != generation {
            return;
        }
        for (dir, ready) in [
            (Direction::Read, event.readable),
            (Direction::Write, event.writable),
        ] {
            if !ready {
                continue;
            }
            let Some(reg) = self.get_mut(fd) else { return };
            let item = match reg.slot(dir) {
                None => continue,
                Some(IoCallback::Transport(t)) => match dir {
                    Direction::Read => Ready::Read(t.clone_ref(py)),
                    Direction::Write => Ready::Write(t.clone_ref(py)),
                },
                Some(IoCallback::Sock(w)) => Ready::Sock(w.clone_ref(py), dir),
                Some(IoCallback::Handle(h)) if !h.get().is_cancelled() => {
                    Ready::Handle(h.clone_ref(py))
                }
                Some(IoCallback::Handle(_)) => {
                    if let Ok(Removed::Callback(callback)) = self.remove(poller, fd, dir, dead) {
                        callback.release_into(dead);
                    }
                    continue;
                }
            };
            out.extend(Some(item));
        }
    }

    /// Removes every registration (the poller is about to be closed).
    pub fn clear(&mut self, dead: &mut Dropped) {
        for fd in 0..self.slots.len() {
            self.unregister(fd as RawFd, dead);
        }
        self.slots = Vec::new();
    }

    /// Visits the registered file objects, callbacks and transports (see
    /// `Handle::traverse_queued`).
    pub fn traverse(&self, visit: &PyVisit<'_>) -> Result<(), PyTraverseError> {
        for reg in self.slots.iter().flatten() {
            visit.call(&reg.fileobj)?;
            for callback in reg.reader.iter().chain(&reg.writer) {
                match callback {
                    IoCallback::Handle(h) => Handle::traverse_queued(h, visit)?,
                    IoCallback::Transport(t) => visit.call(t)?,
                    IoCallback::Sock(w) => visit.call(w)?,
                }
            }
        }
        Ok(())
    }
}
