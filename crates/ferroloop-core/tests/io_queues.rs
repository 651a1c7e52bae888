//! The outgoing datagram queue and the read-size policy.

use ferroloop_core::io::datagram_queue::DatagramQueue;
use ferroloop_core::io::read_policy::{fits, ReadPlan, ReadSizer, DIRECT_READ};

#[test]
fn datagrams_are_counted_with_their_overhead_and_kept_whole() {
    let mut q: DatagramQueue<Vec<u8>, &str> = DatagramQueue::new(8);
    assert!(q.is_empty());
    q.push(vec![1; 10], "a");
    q.push(Vec::new(), "b");
    assert_eq!(q.count(), 2);
    assert_eq!(q.size(), 10 + 8 + 8, "an empty datagram still counts");
    assert_eq!(q.front().map(|(p, a)| (p.len(), *a)), Some((10, "a")));
    let (payload, addr) = q.pop_front().unwrap();
    assert_eq!((payload.len(), addr), (10, "a"));
    assert_eq!(q.size(), 8);
    q.push_front(payload, addr);
    assert_eq!(q.size(), 26);
    let all = q.clear();
    assert_eq!(
        all.iter().map(|(_, a)| *a).collect::<Vec<_>>(),
        vec!["a", "b"]
    );
    assert_eq!((q.size(), q.count()), (0, 0));
}

#[test]
fn datagram_queue_without_overhead_counts_payload_bytes() {
    let mut q: DatagramQueue<Vec<u8>, ()> = DatagramQueue::new(0);
    q.push(vec![0; 3], ());
    q.push(Vec::new(), ());
    assert_eq!(q.size(), 3);
    assert_eq!(q.count(), 2);
}

#[test]
fn reads_go_direct_after_a_large_one_and_shared_after_a_full_one() {
    const MAX: usize = 1 << 18;
    let mut sizer = ReadSizer::default();
    assert_eq!(sizer.plan(MAX), ReadPlan::Shared);
    sizer.record(DIRECT_READ - 1, MAX);
    assert_eq!(sizer.plan(MAX), ReadPlan::Shared, "small reads are copied");
    sizer.record(1024, MAX);
    assert_eq!(sizer.plan(MAX), ReadPlan::Direct(1152), "an eighth more");
    sizer.record(1024, 1152);
    assert_eq!(sizer.plan(MAX), ReadPlan::Direct(1152), "steady");
    sizer.record(1152, 1152);
    assert_eq!(
        sizer.plan(MAX),
        ReadPlan::Shared,
        "filled: more may be queued"
    );
    sizer.record(1 << 20, 1 << 20);
    assert_eq!(sizer.plan(MAX), ReadPlan::Shared);
    sizer.record(MAX - 1, MAX);
    assert_eq!(sizer.plan(MAX), ReadPlan::Direct(MAX), "capped");
}

#[test]
fn the_guess_keeps_the_largest_recent_read_and_forgets_it_slowly() {
    const MAX: usize = 1 << 18;
    let mut sizer = ReadSizer::default();
    sizer.record(8000, MAX);
    sizer.record(600, 10_000);
    assert_eq!(
        sizer.plan(MAX),
        ReadPlan::Direct(7875),
        "7000 plus an eighth"
    );
    sizer.record(7000, 7875);
    assert_eq!(
        sizer.plan(MAX),
        ReadPlan::Direct(7875),
        "the large one still fits"
    );
    for _ in 0..40 {
        sizer.record(600, 7875);
    }
    assert_eq!(
        sizer.plan(MAX),
        ReadPlan::Direct(675),
        "down to the small ones"
    );
    for _ in 0..40 {
        sizer.record(0, 675);
    }
    assert_eq!(
        sizer.plan(MAX),
        ReadPlan::Shared,
        "nothing read for a while"
    );
}

#[test]
fn a_burst_larger_than_the_guess_is_learned_whole() {
    // A peer sends 100 KiB messages, each all queued by the time the
    // transport reads; the guess starts far too small.
    const MAX: usize = 1 << 18;
    const MESSAGE: usize = 100 * 1024;
    let mut sizer = ReadSizer::default();
    sizer.record(40_000, MAX);
    let mut reads_per_message = Vec::new();
    for _ in 0..6 {
        let (mut left, mut reads) = (MESSAGE, 0);
        while left > 0 {
            let room = match sizer.plan(MAX) {
                ReadPlan::Direct(size) => size,
                ReadPlan::Shared => MAX,
            };
            let n = left.min(room);
            sizer.record(n, room);
            left -= n;
            reads += 1;
        }
        reads_per_message.push(reads);
    }
    assert_eq!(reads_per_message, [2, 1, 1, 1, 1, 1]);
}

#[test]
fn a_reused_object_is_large_enough_and_not_much_larger() {
    assert!(fits(1024, 1024));
    assert!(fits(1024, 896), "an eighth unused");
    assert!(!fits(1024, 895), "more than an eighth unused");
    assert!(!fits(1024, 1025), "too small");
    assert!(fits(2, 2));
    assert!(!fits(0, 1));
}
