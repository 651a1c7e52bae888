//! The level-triggered epoll poller, on pipes.

use std::os::fd::RawFd;
use std::time::{Duration, Instant};

use ferroloop_core::{Events, Interest, Poller};

struct Pipe {
    r: RawFd,
    w: RawFd,
}

impl Pipe {
    fn new() -> Self {
        let mut fds = [0; 2];
        // SAFETY: `fds` has room for the two descriptors pipe2 writes.
        assert_eq!(
            unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) },
            0
        );
        Pipe {
            r: fds[0],
            w: fds[1],
        }
    }

    fn write(&self, data: &[u8]) {
        // SAFETY: writes from a valid slice.
        let n = unsafe { libc::write(self.w, data.as_ptr().cast(), data.len()) };
        assert_eq!(n, data.len() as isize);
    }

    fn read_all(&self) -> usize {
        let mut buf = [0u8; 1024];
        // SAFETY: reads into a valid local buffer.
        let n = unsafe { libc::read(self.r, buf.as_mut_ptr().cast(), buf.len()) };
        n.max(0) as usize
    }
}

impl Drop for Pipe {
    fn drop(&mut self) {
        // SAFETY: the test owns both descriptors.
        unsafe {
            libc::close(self.r);
            if self.w >= 0 {
                libc::close(self.w);
            }
        }
    }
}

fn wait(p: &Poller, ev: &mut Events, ms: u64) -> Vec<(u64, bool, bool)> {
    p.wait(ev, Some(Duration::from_millis(ms))).unwrap();
    ev.iter()
        .map(|e| (e.token, e.readable, e.writable))
        .collect()
}

#[test]
fn readable_is_level_triggered() {
    let p = Poller::new().unwrap();
    let pipe = Pipe::new();
    let mut ev = Events::with_capacity(8);
    p.add(pipe.r, 7, Interest::READABLE).unwrap();
    assert!(wait(&p, &mut ev, 0).is_empty());
    pipe.write(b"x");
    // Reported again and again until drained.
    assert_eq!(wait(&p, &mut ev, 0), vec![(7, true, false)]);
    assert_eq!(wait(&p, &mut ev, 0), vec![(7, true, false)]);
    assert_eq!(pipe.read_all(), 1);
    assert!(wait(&p, &mut ev, 0).is_empty());
}

#[test]
fn modify_and_delete() {
    let p = Poller::new().unwrap();
    let pipe = Pipe::new();
    let mut ev = Events::with_capacity(8);
    p.add(pipe.w, 1, Interest::READABLE).unwrap();
    assert!(wait(&p, &mut ev, 0).is_empty());
    p.modify(pipe.w, 2, Interest::WRITABLE).unwrap();
    assert_eq!(wait(&p, &mut ev, 0), vec![(2, false, true)]);
    p.delete(pipe.w).unwrap();
    assert!(wait(&p, &mut ev, 0).is_empty());
    // Errors carry errno.
    assert_eq!(
        p.delete(pipe.w).unwrap_err().raw_os_error(),
        Some(libc::ENOENT)
    );
    assert_eq!(
        p.add(-1, 0, Interest::READABLE).unwrap_err().raw_os_error(),
        Some(libc::EBADF)
    );
}

#[test]
fn hangup_reports_readable_for_a_reader() {
    let p = Poller::new().unwrap();
    let pipe = Pipe::new();
    let mut ev = Events::with_capacity(8);
    p.add(pipe.r, 3, Interest::READABLE).unwrap();
    let mut pipe = pipe;
    // SAFETY: closes the write end we own; it is marked closed so that Drop
    // does not close a number another test may have been given since.
    unsafe { libc::close(pipe.w) };
    pipe.w = -1;
    let got = wait(&p, &mut ev, 100);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].0, 3);
    assert!(got[0].1);
}

#[test]
fn timeout_is_respected_and_rounded_up() {
    let p = Poller::new().unwrap();
    let mut ev = Events::with_capacity(1);
    let t0 = Instant::now();
    p.wait(&mut ev, Some(Duration::from_micros(20_100)))
        .unwrap();
    // Rounded up to 21 ms: never returns before the deadline.
    assert!(t0.elapsed() >= Duration::from_micros(20_100));
    assert_eq!(
        ferroloop_core::poller::timeout_ms(Some(Duration::from_nanos(1))),
        1
    );
    assert_eq!(ferroloop_core::poller::timeout_ms(Some(Duration::ZERO)), 0);
    assert_eq!(ferroloop_core::poller::timeout_ms(None), -1);
    assert_eq!(
        ferroloop_core::poller::timeout_ms(Some(Duration::from_secs(u64::MAX))),
        libc::c_int::MAX
    );
}

#[test]
fn more_ready_than_capacity_comes_in_later_waits() {
    let p = Poller::new().unwrap();
    let pipes: Vec<_> = (0..5).map(|_| Pipe::new()).collect();
    for (i, pipe) in pipes.iter().enumerate() {
        p.add(pipe.r, i as u64, Interest::READABLE).unwrap();
        pipe.write(b"y");
    }
    let mut ev = Events::with_capacity(2);
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..10 {
        for (token, _, _) in wait(&p, &mut ev, 0) {
            assert!(ev.len() <= 2);
            if seen.insert(token) {
                pipes[token as usize].read_all();
            }
        }
    }
    assert_eq!(seen.len(), 5);
}

#[test]
fn closed_poller_fails_with_ebadf() {
    let p = Poller::new().unwrap();
    p.close();
    assert!(p.is_closed());
    let mut ev = Events::with_capacity(1);
    assert_eq!(
        p.wait(&mut ev, Some(Duration::ZERO))
            .unwrap_err()
            .raw_os_error(),
        Some(libc::EBADF)
    );
}
