//! The free-list policy: bounded, and cut back after a burst.

use ferroloop_core::reactor::free_list::FreeList;

#[test]
fn full_list_hands_items_back() {
    let mut list = FreeList::new(2, 1, 1.0);
    assert_eq!(list.push(1), None);
    assert_eq!(list.push(2), None);
    assert_eq!(list.push(3), Some(3));
    assert_eq!(list.len(), 2);
    assert_eq!(list.pop(), Some(2));
    assert_eq!(list.pop(), Some(1));
    assert_eq!(list.pop(), None);
    assert!(list.is_empty());
}

#[test]
fn trimmed_only_after_a_whole_interval_above_resting() {
    let mut list = FreeList::new(100, 2, 1.0);
    for i in 0..10 {
        list.push(i);
    }
    assert!(list.trim(5.0).is_empty(), "the interval starts now");
    assert!(list.trim(5.5).is_empty());
    let excess = list.trim(6.0);
    assert_eq!(excess, (2..10).collect::<Vec<_>>());
    assert_eq!(list.len(), 2);
    // Back at the resting size: nothing more, and the clock is reset.
    assert!(list.trim(100.0).is_empty());
    for i in 0..5 {
        list.push(i);
    }
    assert!(list.trim(101.0).is_empty());
    assert_eq!(list.trim(102.0).len(), 5);
}

#[test]
fn dropping_to_resting_restarts_the_interval() {
    let mut list = FreeList::new(100, 2, 1.0);
    for i in 0..5 {
        list.push(i);
    }
    assert!(list.trim(0.0).is_empty());
    while list.len() > 2 {
        list.pop();
    }
    assert!(list.trim(0.5).is_empty());
    for i in 0..5 {
        list.push(i);
    }
    assert!(list.trim(1.2).is_empty(), "a new interval started at 1.2");
    assert!(!list.trim(2.2).is_empty());
}

#[test]
fn drain_and_iter() {
    let mut list = FreeList::new(10, 1, 1.0);
    list.push('a');
    list.push('b');
    assert_eq!(list.iter().copied().collect::<String>(), "ab");
    assert_eq!(list.drain(), vec!['a', 'b']);
    assert!(list.is_empty());
}
