//! Child processes: pidfd watching, reaping by pid, exit-status decoding,
//! signals, the SIGCHLD fallback and the orphan reaper.

use std::process::{Command, Stdio};
use std::time::Duration;

use ferroloop_core::process::orphans;
use ferroloop_core::process::sigchld::SigchldWake;
use ferroloop_core::process::{Child, ExitStatus, WatchMode};
use ferroloop_core::sys::process::WaitInfo;
use ferroloop_core::{Events, Interest, Poller};

/// Starts `sh -c script` and returns its pid (the std handle is dropped
/// without waiting: the tests reap it themselves).
#[allow(clippy::zombie_processes)]
fn spawn(script: &str) -> libc::pid_t {
    let child = Command::new("sh")
        .arg("-c")
        .arg(script)
        .stdin(Stdio::null())
        .spawn()
        .expect("spawn sh");
    child.id() as libc::pid_t
}

/// Waits (up to a minute) until `fd` is readable.
fn wait_readable(fd: i32) {
    let poller = Poller::new().unwrap();
    poller.add(fd, 1, Interest::READABLE).unwrap();
    let mut events = Events::with_capacity(4);
    // The SIGCHLD handler may interrupt the wait (epoll_wait is never
    // restarted): wait again.
    let n = loop {
        match poller.wait(&mut events, Some(Duration::from_secs(60))) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            other => break other.unwrap(),
        }
    };
    assert_eq!(n, 1, "descriptor did not become readable");
}

/// Whether `/proc/<pid>` shows a process that is neither gone nor a zombie.
fn proc_state(pid: libc::pid_t) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = stat.rsplit_once(") ")?.1;
    after.chars().next()
}

/// Polls `f` until it holds (at most a minute): the waits of these tests
/// are for the kernel, never timed assertions.
fn eventually(mut f: impl FnMut() -> bool) -> bool {
    for _ in 0..6000 {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}

fn pidfd_mode() -> bool {
    ferroloop_core::process::mode() == WatchMode::Pidfd
}

#[test]
fn exit_status_decoding() {
    let exited = WaitInfo {
        code: libc::CLD_EXITED,
        status: 7,
    };
    assert_eq!(ExitStatus::from_wait_info(exited), ExitStatus::Exited(7));
    assert_eq!(ExitStatus::from_wait_info(exited).returncode(), 7);
    let killed = WaitInfo {
        code: libc::CLD_KILLED,
        status: libc::SIGKILL,
    };
    assert_eq!(ExitStatus::from_wait_info(killed).returncode(), -9);
    let dumped = WaitInfo {
        code: libc::CLD_DUMPED,
        status: libc::SIGSEGV,
    };
    assert_eq!(ExitStatus::from_wait_info(dumped), ExitStatus::Signaled(11));
    assert_eq!(
        ExitStatus::from_wait_status(3 << 8),
        Some(ExitStatus::Exited(3))
    );
    assert_eq!(
        ExitStatus::from_wait_status(15),
        Some(ExitStatus::Signaled(15))
    );
    assert_eq!(ExitStatus::from_wait_status(0x137f), None); // stopped
}

#[test]
fn pidfd_becomes_readable_and_reaps_the_exit_code() {
    if !pidfd_mode() {
        return;
    }
    let pid = spawn("exit 7");
    let mut child = Child::new(pid, WatchMode::Pidfd).unwrap();
    wait_readable(child.pidfd().unwrap());
    assert!(child.has_exited());
    assert!(child.has_exited(), "peeking does not reap");
    assert_eq!(child.try_wait().unwrap(), Some(ExitStatus::Exited(7)));
    assert!(child.is_gone());
    assert_eq!(
        child.try_wait().unwrap_err().raw_os_error(),
        Some(libc::ECHILD)
    );
    assert_eq!(proc_state(pid), None, "no zombie left");
}

#[test]
fn running_child_is_not_reaped_and_can_be_killed() {
    let mode = ferroloop_core::process::mode();
    let pid = spawn("exec sleep 1000");
    let mut child = Child::new(pid, mode).unwrap();
    assert_eq!(child.try_wait().unwrap(), None);
    assert!(!child.has_exited());
    child.send_signal(libc::SIGKILL).unwrap();
    assert!(eventually(|| child.has_exited()));
    let status = child.try_wait().unwrap().unwrap();
    assert_eq!(status, ExitStatus::Signaled(libc::SIGKILL));
    assert_eq!(status.returncode(), -9);
    assert_eq!(
        child.send_signal(libc::SIGTERM).unwrap_err().raw_os_error(),
        Some(libc::ESRCH)
    );
}

#[test]
fn a_child_reaped_elsewhere_reports_echild() {
    let mode = ferroloop_core::process::mode();
    let mut std_child = Command::new("true").spawn().unwrap();
    let pid = std_child.id() as libc::pid_t;
    let mut child = Child::new(pid, mode).unwrap();
    std_child.wait().unwrap();
    assert!(child.has_exited());
    assert_eq!(
        child.try_wait().unwrap_err().raw_os_error(),
        Some(libc::ECHILD)
    );
    assert!(child.is_gone());
}

#[test]
fn sigchld_wake_fires_and_children_are_reaped_by_pid() {
    let wake = SigchldWake::new().unwrap();
    let pid = spawn("exit 3");
    let mut child = Child::new(pid, WatchMode::Sigchld).unwrap();
    assert_eq!(child.pidfd(), None);
    wait_readable(wake.fd());
    assert!(wake.take());
    assert!(eventually(|| child.has_exited()));
    assert_eq!(child.try_wait().unwrap(), Some(ExitStatus::Exited(3)));
    assert_eq!(proc_state(pid), None);
}

#[test]
fn nudge_makes_the_wake_readable() {
    let wake = SigchldWake::new().unwrap();
    wake.nudge();
    wait_readable(wake.fd());
    assert!(wake.take());
}

#[test]
fn dropped_children_are_reaped_by_the_orphan_reaper() {
    for mode in [WatchMode::Pidfd, WatchMode::Sigchld] {
        if mode == WatchMode::Pidfd && !pidfd_mode() {
            continue;
        }
        // Still running when dropped: the reaper thread waits for it.
        let pid = spawn("exec sleep 1000");
        let child = Child::new(pid, mode).unwrap();
        drop(child);
        assert_eq!(proc_state(pid).map(|s| s != 'Z'), Some(true));
        ferroloop_core::sys::process::kill(pid, libc::SIGKILL).unwrap();
        assert!(
            eventually(|| proc_state(pid).is_none()),
            "orphan {pid} ({mode:?}) left as a zombie"
        );
        // Exited before it was dropped: reaped at once.
        let pid = spawn("exit 0");
        let child = Child::new(pid, mode).unwrap();
        assert!(eventually(|| child.has_exited()));
        drop(child);
        assert_eq!(proc_state(pid), None);
    }
    assert!(eventually(|| orphans::pending() == 0));
}
