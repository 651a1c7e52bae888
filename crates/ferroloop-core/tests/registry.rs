//! The descriptor registry over a real epoll instance: interest merging,
//! generations in tokens, stale events, recovery from closed and reused
//! descriptors, owners, and that nothing removed is dropped by the registry.

use std::os::fd::RawFd;
use std::time::Duration;

use ferroloop_core::reactor::registry::{split_token, token, Dispatch, Registry, Removed};
use ferroloop_core::sys::{pipe, socket};
use ferroloop_core::{Direction, Events, Poller};

type Dead = (Vec<&'static str>, Vec<u32>);

fn pair() -> (RawFd, RawFd) {
    socket::socketpair_nonblocking().unwrap()
}

fn close(fd: RawFd) {
    pipe::close(fd).unwrap();
}

fn wait(poller: &Poller) -> Vec<ferroloop_core::Event> {
    let mut events = Events::with_capacity(16);
    poller
        .wait(&mut events, Some(Duration::from_millis(50)))
        .unwrap();
    events.iter().collect()
}

/// The payloads an event dispatches, in order.
fn dispatched(
    reg: &mut Registry<&'static str, u32>,
    poller: &Poller,
    dead: &mut Dead,
) -> Vec<(Direction, &'static str)> {
    let mut out = Vec::new();
    for event in wait(poller) {
        reg.dispatch(poller, event, dead, |dir, p| {
            out.push((dir, *p));
            Dispatch::Keep
        });
    }
    out
}

#[test]
fn reader_then_writer_share_one_registration() {
    let poller = Poller::new().unwrap();
    let mut reg = Registry::new();
    let mut dead: Dead = Default::default();
    let (a, b) = pair();
    assert!(reg
        .set(&poller, a, Some(7), "r", Direction::Read, &mut dead)
        .unwrap()
        .is_none());
    assert!(reg
        .set(&poller, a, Some(8), "w", Direction::Write, &mut dead)
        .unwrap()
        .is_none());
    assert_eq!(reg.len(), 1);
    // The second owner is not kept: the first registration's owner stays.
    assert_eq!(dead.1, vec![8]);
    assert_eq!(reg.find_by_owner(|o| *o == 7), Some(a));
    // Writable at once; readable once the peer writes. Reader comes first.
    assert_eq!(
        dispatched(&mut reg, &poller, &mut dead),
        vec![(Direction::Write, "w")]
    );
    socket::send(b, b"x").unwrap();
    assert_eq!(
        dispatched(&mut reg, &poller, &mut dead),
        vec![(Direction::Read, "r"), (Direction::Write, "w")]
    );
    close(a);
    close(b);
}

#[test]
fn replacing_returns_the_old_payload() {
    let poller = Poller::new().unwrap();
    let mut reg: Registry<&str, u32> = Registry::new();
    let mut dead: Dead = Default::default();
    let (a, b) = pair();
    reg.set(&poller, a, None, "one", Direction::Read, &mut dead)
        .unwrap();
    let old = reg
        .set(&poller, a, None, "two", Direction::Read, &mut dead)
        .unwrap();
    assert_eq!(old, Some("one"));
    assert_eq!(reg.get(a, Direction::Read), Some(&"two"));
    close(a);
    close(b);
}

#[test]
fn removing_the_last_direction_unregisters() {
    let poller = Poller::new().unwrap();
    let mut reg: Registry<&str, u32> = Registry::new();
    let mut dead: Dead = Default::default();
    let (a, b) = pair();
    reg.set(&poller, a, Some(1), "r", Direction::Read, &mut dead)
        .unwrap();
    reg.set(&poller, a, None, "w", Direction::Write, &mut dead)
        .unwrap();
    assert!(matches!(
        reg.remove(&poller, a, Direction::Write, &mut dead).unwrap(),
        Removed::Payload("w")
    ));
    assert!(matches!(
        reg.remove(&poller, a, Direction::Write, &mut dead).unwrap(),
        Removed::NoPayload
    ));
    assert_eq!(reg.len(), 1);
    // Only readable interest is left: no writable event.
    assert!(dispatched(&mut reg, &poller, &mut dead).is_empty());
    assert!(matches!(
        reg.remove(&poller, a, Direction::Read, &mut dead).unwrap(),
        Removed::Payload("r")
    ));
    assert_eq!(reg.len(), 0);
    assert!(reg.is_empty());
    assert_eq!(dead.1, vec![1], "the owner is handed back");
    assert!(matches!(
        reg.remove(&poller, a, Direction::Read, &mut dead).unwrap(),
        Removed::NotRegistered
    ));
    // Out of epoll too: adding it again directly must succeed.
    poller
        .add(a, 0, ferroloop_core::Interest::READABLE)
        .unwrap();
    close(a);
    close(b);
}

#[test]
fn remove_if_only_takes_the_matching_payload() {
    let poller = Poller::new().unwrap();
    let mut reg: Registry<&str, u32> = Registry::new();
    let mut dead: Dead = Default::default();
    let (a, b) = pair();
    reg.set(&poller, a, None, "mine", Direction::Read, &mut dead)
        .unwrap();
    assert!(!reg.remove_if(&poller, a, Direction::Read, |p| *p == "other", &mut dead));
    assert_eq!(reg.len(), 1);
    assert!(reg.remove_if(&poller, a, Direction::Read, |p| *p == "mine", &mut dead));
    assert_eq!(reg.len(), 0);
    assert_eq!(dead.0, vec!["mine"]);
    close(a);
    close(b);
}

#[test]
fn tokens_carry_descriptor_and_generation() {
    assert_eq!(split_token(token(5, 9)), (5, 9));
    assert_eq!(split_token(token(0, u32::MAX)), (0, u32::MAX));
    let (fd, _) = split_token(u64::MAX);
    assert_eq!(fd, -1, "the foreign token never names a slot");
}

#[test]
fn event_of_an_earlier_registration_is_ignored() {
    let poller = Poller::new().unwrap();
    let mut reg: Registry<&str, u32> = Registry::new();
    let mut dead: Dead = Default::default();
    let (a, b) = pair();
    reg.set(&poller, a, None, "old", Direction::Write, &mut dead)
        .unwrap();
    let events = wait(&poller);
    assert_eq!(events.len(), 1);
    // The descriptor is unregistered and registered again before the event
    // is dispatched: the event belongs to the old generation.
    reg.forget(&poller, a, &mut dead);
    reg.set(&poller, a, None, "new", Direction::Write, &mut dead)
        .unwrap();
    let mut seen = Vec::new();
    reg.dispatch(&poller, events[0], &mut dead, |_, p| {
        seen.push(*p);
        Dispatch::Keep
    });
    assert!(seen.is_empty());
    assert_eq!(
        dispatched(&mut reg, &poller, &mut dead),
        vec![(Direction::Write, "new")]
    );
    close(a);
    close(b);
}

#[test]
fn dispatch_can_remove_a_payload() {
    let poller = Poller::new().unwrap();
    let mut reg: Registry<&str, u32> = Registry::new();
    let mut dead: Dead = Default::default();
    let (a, b) = pair();
    reg.set(&poller, a, None, "cancelled", Direction::Write, &mut dead)
        .unwrap();
    for event in wait(&poller) {
        reg.dispatch(&poller, event, &mut dead, |_, _| Dispatch::Remove);
    }
    assert_eq!(reg.len(), 0);
    assert_eq!(dead.0, vec!["cancelled"]);
    assert!(wait(&poller).is_empty());
    close(a);
    close(b);
}

#[test]
fn closed_and_reused_descriptor_is_registered_again() {
    let poller = Poller::new().unwrap();
    let mut reg: Registry<&str, u32> = Registry::new();
    let mut dead: Dead = Default::default();
    let (a, b) = pair();
    reg.set(&poller, a, None, "r", Direction::Read, &mut dead)
        .unwrap();
    // The descriptor number is reused for a new socket behind the
    // registry's back: dup2 closes the old one (which removes it from
    // epoll) and puts the new one in its place, atomically, so no other
    // test thread can take the number in between.
    let (c, d) = pair();
    // SAFETY: `a` and `c` are descriptors this test owns.
    assert_eq!(unsafe { libc::dup2(c, a) }, a);
    close(c);
    close(b);
    // Adding the writer modifies a registration epoll no longer has:
    // ENOENT, recovered by adding it again.
    reg.set(&poller, a, None, "w", Direction::Write, &mut dead)
        .unwrap();
    assert_eq!(
        dispatched(&mut reg, &poller, &mut dead),
        vec![(Direction::Write, "w")]
    );
    close(a);
    close(d);
}

#[test]
fn a_descriptor_already_in_epoll_is_taken_over() {
    let poller = Poller::new().unwrap();
    let mut reg: Registry<&str, u32> = Registry::new();
    let mut dead: Dead = Default::default();
    let (a, b) = pair();
    poller
        .add(a, 12345, ferroloop_core::Interest::READABLE)
        .unwrap();
    // EEXIST on add: modified to the registry's token instead.
    reg.set(&poller, a, None, "w", Direction::Write, &mut dead)
        .unwrap();
    assert_eq!(
        dispatched(&mut reg, &poller, &mut dead),
        vec![(Direction::Write, "w")]
    );
    close(a);
    close(b);
}

#[test]
fn a_failed_registration_hands_everything_back() {
    let poller = Poller::new().unwrap();
    let mut reg: Registry<&str, u32> = Registry::new();
    let mut dead: Dead = Default::default();
    // A number no descriptor has (far above the open-file limit).
    let bad = 1 << 24;
    let err = reg
        .set(&poller, bad, Some(3), "r", Direction::Read, &mut dead)
        .unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EBADF));
    assert_eq!(reg.len(), 0);
    assert_eq!(dead, (vec!["r"], vec![3]));
}

#[test]
fn clear_and_iter() {
    let poller = Poller::new().unwrap();
    let mut reg: Registry<&str, u32> = Registry::new();
    let mut dead: Dead = Default::default();
    let (a, b) = pair();
    reg.set(&poller, a, Some(1), "ra", Direction::Read, &mut dead)
        .unwrap();
    reg.set(&poller, b, None, "wb", Direction::Write, &mut dead)
        .unwrap();
    let seen: Vec<_> = reg
        .iter()
        .map(|(fd, owner, r, w)| (fd, owner.copied(), r.copied(), w.copied()))
        .collect();
    assert_eq!(
        seen,
        vec![(a, Some(1), Some("ra"), None), (b, None, None, Some("wb"))]
    );
    reg.clear(&mut dead);
    assert_eq!(reg.len(), 0);
    dead.0.sort();
    assert_eq!(dead, (vec!["ra", "wb"], vec![1]));
    close(a);
    close(b);
}
