//! The table of watched descriptors.
//!
//! Indexed by descriptor number (descriptors are small integers), each slot
//! holds a payload per direction (what runs when the descriptor is readable,
//! and when it is writable), an optional *owner* (the object a caller
//! registered, so that it can still be found by identity after its
//! descriptor number became unknown, as `selectors` does for a closed
//! socket), and a generation number that goes into the epoll token: an event
//! whose generation does not match the slot belongs to an earlier
//! registration of a reused descriptor number and is ignored.
//!
//! The epoll interest always matches the occupied directions. Two kernel
//! states the table cannot see are recovered from: a descriptor that was
//! closed (and maybe reused) since it was registered has left epoll
//! (`ENOENT` on modify: it is added again), and a descriptor the kernel
//! still has but the table does not (`EEXIST` on add: it is taken over).
//!
//! Payloads and owners are type parameters. The registry never drops one:
//! whatever it removes goes to a [`Graveyard`] the caller provides, so that
//! a caller whose values run code when dropped (Python objects) can drop
//! them at a safe moment.

use std::io;
use std::os::fd::RawFd;

use super::Direction;
use crate::poller::{Event, Interest, Poller};

/// Token of a descriptor the registry does not manage (the loop's wake-up
/// pipe): its descriptor half, `-1`, never matches a slot.
pub const FOREIGN_TOKEN: u64 = u64::MAX;

/// Where removed payloads and owners go.
pub trait Graveyard<P, O> {
    /// Takes a removed payload.
    fn payload(&mut self, payload: P);
    /// Takes a removed owner.
    fn owner(&mut self, owner: O);
}

impl<P, O> Graveyard<P, O> for (Vec<P>, Vec<O>) {
    fn payload(&mut self, payload: P) {
        self.0.push(payload);
    }

    fn owner(&mut self, owner: O) {
        self.1.push(owner);
    }
}

/// What the caller decides for a payload whose descriptor is ready.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dispatch {
    /// It was dispatched (or deliberately skipped); keep it registered.
    Keep,
    /// Unregister it (for example, a cancelled callback).
    Remove,
}

struct Registration<P, O> {
    owner: Option<O>,
    reader: Option<P>,
    writer: Option<P>,
    generation: u32,
}

impl<P, O> Registration<P, O> {
    fn interest(&self) -> Interest {
        Interest {
            readable: self.reader.is_some(),
            writable: self.writer.is_some(),
        }
    }

    fn slot(&mut self, dir: Direction) -> &mut Option<P> {
        match dir {
            Direction::Read => &mut self.reader,
            Direction::Write => &mut self.writer,
        }
    }
}

/// The epoll token of `fd`'s registration of generation `generation`.
pub fn token(fd: RawFd, generation: u32) -> u64 {
    (u64::from(generation) << 32) | u64::from(fd as u32)
}

/// Splits an epoll token into descriptor and generation.
pub fn split_token(token: u64) -> (RawFd, u32) {
    ((token & 0xffff_ffff) as u32 as RawFd, (token >> 32) as u32)
}

/// Outcome of [`Registry::remove`].
#[derive(Debug)]
pub enum Removed<P> {
    /// The descriptor is not registered.
    NotRegistered,
    /// It is, but without a payload in that direction.
    NoPayload,
    /// This payload was removed.
    Payload(P),
}

/// Registered descriptors.
pub struct Registry<P, O> {
    slots: Vec<Option<Registration<P, O>>>,
    count: usize,
    next_generation: u32,
}

impl<P, O> Default for Registry<P, O> {
    fn default() -> Self {
        Self {
            slots: Vec::new(),
            count: 0,
            next_generation: 0,
        }
    }
}

impl<P, O> Registry<P, O> {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of registered descriptors.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether no descriptor is registered.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    fn get_mut(&mut self, fd: RawFd) -> Option<&mut Registration<P, O>> {
        self.slots.get_mut(usize::try_from(fd).ok()?)?.as_mut()
    }

    /// The payload watching `fd` in direction `dir`, if any.
    pub fn get(&self, fd: RawFd, dir: Direction) -> Option<&P> {
        let reg = self.slots.get(usize::try_from(fd).ok()?)?.as_ref()?;
        match dir {
            Direction::Read => reg.reader.as_ref(),
            Direction::Write => reg.writer.as_ref(),
        }
    }

    /// The generation of `fd`'s registration, if it is registered.
    pub fn generation(&self, fd: RawFd) -> Option<u32> {
        let reg = self.slots.get(usize::try_from(fd).ok()?)?.as_ref()?;
        Some(reg.generation)
    }

    /// The first registered descriptor whose owner satisfies `is_it`.
    pub fn find_by_owner(&self, mut is_it: impl FnMut(&O) -> bool) -> Option<RawFd> {
        self.slots.iter().enumerate().find_map(|(fd, slot)| {
            slot.as_ref()
                .filter(|reg| reg.owner.as_ref().is_some_and(&mut is_it))
                .map(|_| fd as RawFd)
        })
    }

    /// Installs `payload` as the `dir` payload of `fd`, replacing (and
    /// returning) the previous one. A new registration keeps `owner`; an
    /// existing one keeps its first owner and the new one goes to `dead`. On
    /// failure the payload and owner go to `dead` and the OS error is
    /// returned.
    pub fn set(
        &mut self,
        poller: &Poller,
        fd: RawFd,
        owner: Option<O>,
        payload: P,
        dir: Direction,
        dead: &mut impl Graveyard<P, O>,
    ) -> io::Result<Option<P>> {
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
            if let Some(owner) = owner {
                dead.owner(owner);
            }
            if let Err(e) = outcome {
                dead.payload(payload);
                return Err(e);
            }
            return Ok(reg.slot(dir).replace(payload));
        }
        let generation = self.next_generation;
        self.next_generation = self.next_generation.wrapping_add(1);
        let mut reg = Registration {
            owner,
            reader: None,
            writer: None,
            generation,
        };
        *reg.slot(dir) = Some(payload);
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
            Self::bury(reg, dead);
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

    /// Removes the `dir` payload of `fd`, unregistering the descriptor when
    /// nothing is left. An error changing the epoll interest unregisters the
    /// descriptor and is returned (as `selectors` does).
    pub fn remove(
        &mut self,
        poller: &Poller,
        fd: RawFd,
        dir: Direction,
        dead: &mut impl Graveyard<P, O>,
    ) -> io::Result<Removed<P>> {
        let Some(reg) = self.get_mut(fd) else {
            return Ok(Removed::NotRegistered);
        };
        let removed = match reg.slot(dir).take() {
            Some(payload) => Removed::Payload(payload),
            None => Removed::NoPayload,
        };
        let interest = reg.interest();
        if interest.is_empty() {
            // Errors are ignored: a closed descriptor already left epoll.
            let _ = poller.delete(fd);
            self.unregister(fd, dead);
            return Ok(removed);
        }
        if let Err(e) = poller.modify(fd, token(fd, reg.generation), interest) {
            if let Removed::Payload(payload) = removed {
                dead.payload(payload);
            }
            self.unregister(fd, dead);
            return Err(e);
        }
        Ok(removed)
    }

    /// Removes the `dir` payload of `fd` if `is_it` accepts it (a waiter
    /// taking itself off, and nothing that replaced it); whether it did. The
    /// payload goes to `dead`.
    pub fn remove_if(
        &mut self,
        poller: &Poller,
        fd: RawFd,
        dir: Direction,
        is_it: impl FnOnce(&P) -> bool,
        dead: &mut impl Graveyard<P, O>,
    ) -> bool {
        if !self.get(fd, dir).is_some_and(is_it) {
            return false;
        }
        if let Ok(Removed::Payload(payload)) = self.remove(poller, fd, dir, dead) {
            dead.payload(payload);
        }
        true
    }

    /// Removes everything registered for `fd` (its owner is closing it).
    pub fn forget(&mut self, poller: &Poller, fd: RawFd, dead: &mut impl Graveyard<P, O>) {
        if self.get_mut(fd).is_some() {
            let _ = poller.delete(fd);
            self.unregister(fd, dead);
        }
    }

    fn bury(reg: Registration<P, O>, dead: &mut impl Graveyard<P, O>) {
        if let Some(owner) = reg.owner {
            dead.owner(owner);
        }
        for payload in [reg.reader, reg.writer].into_iter().flatten() {
            dead.payload(payload);
        }
    }

    fn unregister(&mut self, fd: RawFd, dead: &mut impl Graveyard<P, O>) {
        if let Some(reg) = self.slots.get_mut(fd as usize).and_then(Option::take) {
            self.count -= 1;
            Self::bury(reg, dead);
        }
    }

    /// Hands the payloads an event concerns to `dispatch`, in asyncio's
    /// order (reader, then writer). An event of an older registration of the
    /// descriptor number is ignored. A payload for which `dispatch` returns
    /// [`Dispatch::Remove`] is unregistered (as
    /// `BaseSelectorEventLoop._process_events` removes cancelled handles).
    pub fn dispatch(
        &mut self,
        poller: &Poller,
        event: Event,
        dead: &mut impl Graveyard<P, O>,
        mut dispatch: impl FnMut(Direction, &P) -> Dispatch,
    ) {
        let (fd, generation) = split_token(event.token);
        match self.generation(fd) {
            Some(g) if g == generation => {}
            _ => return,
        }
        for (dir, ready) in [
            (Direction::Read, event.readable),
            (Direction::Write, event.writable),
        ] {
            if !ready {
                continue;
            }
            let Some(payload) = self.get(fd, dir) else {
                continue;
            };
            if dispatch(dir, payload) == Dispatch::Remove {
                if let Ok(Removed::Payload(payload)) = self.remove(poller, fd, dir, dead) {
                    dead.payload(payload);
                }
            }
        }
    }

    /// Removes every registration without touching epoll (the poller is
    /// about to be closed).
    pub fn clear(&mut self, dead: &mut impl Graveyard<P, O>) {
        for fd in 0..self.slots.len() {
            self.unregister(fd as RawFd, dead);
        }
        self.slots = Vec::new();
    }

    /// Every registration: `(fd, owner, reader, writer)`, by descriptor.
    pub fn iter(&self) -> impl Iterator<Item = (RawFd, Option<&O>, Option<&P>, Option<&P>)> {
        self.slots.iter().enumerate().filter_map(|(fd, slot)| {
            let reg = slot.as_ref()?;
            Some((
                fd as RawFd,
                reg.owner.as_ref(),
                reg.reader.as_ref(),
                reg.writer.as_ref(),
            ))
        })
    }
}
