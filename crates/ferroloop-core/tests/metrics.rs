//! Loop metrics: histogram buckets, the slowest callbacks, timing.

use ferroloop_core::metrics::{Histogram, Slowest, Timing, BUCKET_BOUNDS_US};

#[test]
fn buckets_are_powers_of_two_microseconds() {
    assert_eq!(BUCKET_BOUNDS_US[0], 1);
    assert_eq!(BUCKET_BOUNDS_US[20], 1 << 20);
    assert_eq!(Histogram::bucket(0.0), 0);
    assert_eq!(Histogram::bucket(0.5e-6), 0);
    assert_eq!(Histogram::bucket(1e-6), 0);
    assert_eq!(Histogram::bucket(1.5e-6), 1);
    assert_eq!(Histogram::bucket(2e-6), 1);
    assert_eq!(Histogram::bucket(3e-6), 2);
    assert_eq!(Histogram::bucket(1e-3), 10, "1000 us is at most 1024");
    assert_eq!(Histogram::bucket(1.0), 20, "1 s is at most 2^20 us");
    assert_eq!(Histogram::bucket(2.0), 21, "beyond the last bound");
    let mut h = Histogram::default();
    for s in [1e-6, 3e-6, 3e-6, 5.0] {
        h.record(s);
    }
    assert_eq!(h.counts[0], 1);
    assert_eq!(h.counts[2], 2);
    assert_eq!(h.counts[21], 1);
    assert_eq!(h.total(), 4);
}

#[test]
fn slowest_keeps_the_largest_in_order() {
    let mut top: Slowest<u32, 3> = Slowest::default();
    for (i, s) in [5.0, 1.0, 7.0, 3.0, 9.0, 0.5].into_iter().enumerate() {
        top.offer(s, i as u32);
    }
    let kept: Vec<_> = top.iter().map(|(s, i)| (*s, *i)).collect();
    assert_eq!(kept, vec![(9.0, 4), (7.0, 2), (5.0, 0)]);
    assert!(!top.qualifies(4.0));
    assert!(top.qualifies(6.0));
    assert_eq!(top.offer(6.0, 9), Some(0), "pushes out the smallest");
    assert_eq!(top.clear().len(), 3);
    assert!(top.qualifies(0.0));
}

#[test]
fn timing_describes_only_the_slowest() {
    let mut timing: Timing<String> = Timing::default();
    let mut described = 0;
    // Slowest first: once ten are kept, the faster ones are not described.
    for i in (0..100).rev() {
        timing.callback(i as f64 * 1e-6, || {
            described += 1;
            format!("cb{i}")
        });
    }
    assert_eq!(described, 10);
    assert_eq!(timing.histogram.total(), 100);
    let top: Vec<_> = timing.slowest.iter().map(|(_, n)| n.clone()).collect();
    assert_eq!(top[0], "cb99");
    assert_eq!(top.len(), 10);
    assert!(
        (timing.callback_seconds - (0..100).map(|i| i as f64 * 1e-6).sum::<f64>()).abs() < 1e-12
    );
}
