//! A hash map keyed by the addresses of live objects.
//!
//! The standard map hashes its keys with SipHash, built to resist keys
//! chosen by an attacker. Object addresses are not chosen by anyone and are
//! already spread out, so one multiplication mixes them enough; where the
//! bindings key a record by an object's address on a hot path (an
//! asynchronous generator's first iteration), this is most of the cost of
//! the insertion saved.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// A map from addresses (`usize`) to `V`.
pub type AddressMap<V> = HashMap<usize, V, BuildHasherDefault<AddressHasher>>;

/// The hasher of [`AddressMap`]: Fibonacci hashing of the address, its high
/// bits folded into the low ones (the table takes its bucket index from the
/// low bits and its tag from the high ones).
#[derive(Default, Clone, Copy)]
pub struct AddressHasher(u64);

/// 2^64 / φ, odd: multiplying by it spreads every input bit upwards.
const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

impl Hasher for AddressHasher {
    fn write(&mut self, bytes: &[u8]) {
        // Not used by `usize` keys; any byte string still hashes correctly.
        for &byte in bytes {
            self.write_u64(self.0 ^ u64::from(byte));
        }
    }

    fn write_u64(&mut self, n: u64) {
        let h = (self.0 ^ n).wrapping_mul(GOLDEN);
        self.0 = h ^ (h >> 29);
    }

    fn write_usize(&mut self, n: usize) {
        self.write_u64(n as u64);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligned_addresses_spread_over_buckets() {
        // 16-byte-aligned addresses, as allocators give: the low bits of
        // the hash (the bucket index) must still differ.
        let buckets = 1024u64;
        let mut used = std::collections::HashSet::new();
        for i in 0..buckets {
            let mut h = AddressHasher::default();
            h.write_usize(0x7f00_0000_0000 + (i as usize) * 16);
            used.insert(h.finish() % buckets);
        }
        assert!(
            used.len() > buckets as usize / 2,
            "{} buckets used",
            used.len()
        );
    }

    #[test]
    fn behaves_as_a_map() {
        let mut map: AddressMap<&str> = AddressMap::default();
        map.insert(0x1000, "a");
        map.insert(0x1010, "b");
        assert_eq!(map.remove(&0x1000), Some("a"));
        assert_eq!(map.get(&0x1010), Some(&"b"));
        assert_eq!(map.get(&0x1000), None);
    }
}
