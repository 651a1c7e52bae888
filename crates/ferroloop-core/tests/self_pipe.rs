//! The self-pipe wakes a poller from another thread, and only when asked.

use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use ferroloop_core::{Events, Interest, Poller, SelfPipe};

#[test]
fn wake_from_another_thread_interrupts_an_infinite_wait() {
    let p = Poller::new().unwrap();
    let pipe = Arc::new(SelfPipe::new().unwrap());
    p.add(pipe.read_fd().unwrap(), 42, Interest::READABLE)
        .unwrap();
    pipe.set_sleeping(true);
    let waker = {
        let pipe = pipe.clone();
        thread::spawn(move || {
            thread::sleep(Duration::from_millis(50));
            pipe.wake_if_sleeping();
        })
    };
    let mut ev = Events::with_capacity(4);
    let t0 = Instant::now();
    p.wait(&mut ev, None).unwrap();
    assert!(t0.elapsed() < Duration::from_secs(5));
    assert_eq!(ev.iter().next().unwrap().token, 42);
    pipe.set_sleeping(false);
    waker.join().unwrap();
    let mut signals = Vec::new();
    pipe.drain(|s| signals.push(s)).unwrap();
    assert!(signals.is_empty(), "wake bytes are zero and not signals");
    p.wait(&mut ev, Some(Duration::ZERO)).unwrap();
    assert!(ev.is_empty(), "drained");
}

#[test]
fn no_write_while_awake() {
    let pipe = SelfPipe::new().unwrap();
    pipe.wake_if_sleeping();
    let p = Poller::new().unwrap();
    p.add(pipe.read_fd().unwrap(), 1, Interest::READABLE)
        .unwrap();
    let mut ev = Events::with_capacity(1);
    p.wait(&mut ev, Some(Duration::ZERO)).unwrap();
    assert!(ev.is_empty());
}

#[test]
fn drain_reports_signal_numbers() {
    let pipe = SelfPipe::new().unwrap();
    let bytes = [0u8, 2, 0, 15, 10];
    // SAFETY: writes from a valid local buffer to the open write end.
    let n = unsafe { libc::write(pipe.write_fd().unwrap(), bytes.as_ptr().cast(), bytes.len()) };
    assert_eq!(n, 5);
    let mut signals = Vec::new();
    pipe.drain(|s| signals.push(s)).unwrap();
    assert_eq!(signals, vec![2, 15, 10]);
}

#[test]
fn a_full_pipe_does_not_block_wakers() {
    let pipe = SelfPipe::new().unwrap();
    pipe.set_sleeping(true);
    for _ in 0..1_000_000 {
        pipe.wake_if_sleeping();
    }
    pipe.drain(|_| {}).unwrap();
    pipe.close();
    pipe.wake();
    assert!(pipe.drain(|_| {}).is_err());
}

#[test]
fn a_drain_empties_the_pipe_whatever_it_holds() {
    let p = Poller::new().unwrap();
    for count in [1usize, 4095, 4096, 4097, 3 * 4096, 100_000] {
        let pipe = SelfPipe::new().unwrap();
        p.add(pipe.read_fd().unwrap(), 7, Interest::READABLE)
            .unwrap();
        let bytes: Vec<u8> = (0..count)
            .map(|i| if i % 1000 == 999 { 10 } else { 0 })
            .collect();
        let mut written = 0;
        let mut signals = Vec::new();
        // A socket buffer may not hold 100,000 bytes: write what fits,
        // drain, and go on, as a loop woken many times would.
        while written < count {
            // SAFETY: writes from a valid slice to the open write end.
            let n = unsafe {
                libc::write(
                    pipe.write_fd().unwrap(),
                    bytes[written..].as_ptr().cast(),
                    count - written,
                )
            };
            if n > 0 {
                written += n as usize;
            }
            pipe.drain(|s| signals.push(s)).unwrap();
        }
        assert_eq!(signals.len(), count / 1000, "{count} bytes");
        let mut ev = Events::with_capacity(1);
        p.wait(&mut ev, Some(Duration::ZERO)).unwrap();
        assert!(ev.is_empty(), "{count} bytes: drained");
        p.delete(pipe.read_fd().unwrap()).unwrap();
    }
}
