//! The loop's clock: `CLOCK_MONOTONIC` in seconds, bit-for-bit the value
//! CPython's `time.monotonic()` returns at the same instant.
//!
//! CPython reads the clock as an integer number of nanoseconds and converts it
//! to a float in one specific way (integer division when the value is a whole
//! number of seconds, otherwise a float division by `1e9`); we do the same so
//! that `loop.time()` and `time.monotonic()` are interchangeable.

use std::io;

/// Resolution of `CLOCK_MONOTONIC` on Linux, as reported by
/// `time.get_clock_info('monotonic').resolution`.
pub const CLOCK_RESOLUTION: f64 = 1e-9;

const NS_PER_SEC: i64 = 1_000_000_000;

/// Current `CLOCK_MONOTONIC` reading in nanoseconds.
pub fn monotonic_ns() -> i64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the duration of the call.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    // CLOCK_MONOTONIC cannot fail on Linux with a valid pointer.
    assert_eq!(
        rc,
        0,
        "clock_gettime(CLOCK_MONOTONIC): {}",
        io::Error::last_os_error()
    );
    // `time_t`/`c_long` are not i64 on every target.
    #[allow(clippy::unnecessary_cast)]
    let ns = ts.tv_sec as i64 * NS_PER_SEC + ts.tv_nsec as i64;
    ns
}

/// Converts nanoseconds to seconds exactly as CPython's
/// `_PyTime_AsSecondsDouble` does.
pub fn ns_to_seconds(ns: i64) -> f64 {
    if ns % NS_PER_SEC == 0 {
        (ns / NS_PER_SEC) as f64
    } else {
        ns as f64 / 1e9
    }
}

/// Current monotonic time in seconds, identical to `time.monotonic()`.
pub fn monotonic() -> f64 {
    ns_to_seconds(monotonic_ns())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_seconds_convert_exactly() {
        assert_eq!(ns_to_seconds(3 * NS_PER_SEC), 3.0);
        assert_eq!(ns_to_seconds(0), 0.0);
    }

    #[test]
    fn fractions_use_float_division() {
        assert_eq!(ns_to_seconds(1_500_000_000), 1.5);
        assert_eq!(ns_to_seconds(123_456_789_012), 123_456_789_012f64 / 1e9);
    }

    #[test]
    fn monotonic_never_goes_back() {
        let mut last = monotonic_ns();
        for _ in 0..10_000 {
            let now = monotonic_ns();
            assert!(now >= last);
            last = now;
        }
    }
}
