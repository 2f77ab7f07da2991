//! A Bloom filter over every idempotency key in the database, so that the writer asks PostgreSQL
//! only about keys it may have seen: almost every key of a batch is new, and "definitely new"
//! needs no round trip. It answers "maybe" for about 1 % of new keys (then the database decides)
//! and never "no" for a stored key. Built at start-up from the table; the writer is the only one
//! who adds keys, after each commit.
//!
//! It grows by adding filters of doubling size (a scalable Bloom filter), so it never needs the
//! keys again; memory is about 1.2 bytes per key.

use std::hash::{BuildHasher, RandomState};

/// Bits per key at the designed capacity, and the number of probes: about 1 % false positives.
const BITS_PER_KEY: usize = 10;
const PROBES: u64 = 7;
const FIRST_CAPACITY: usize = 1 << 20;

pub struct KeyFilter {
    filters: Vec<Bloom>,
    hasher: RandomState,
}

struct Bloom {
    bits: Vec<u64>,
    capacity: usize,
    len: usize,
}

impl Bloom {
    fn new(capacity: usize) -> Self {
        let words = (capacity * BITS_PER_KEY).div_ceil(64);
        Self {
            bits: vec![0; words],
            capacity,
            len: 0,
        }
    }

    /// Bit indexes by double hashing: h1 + i·h2.
    fn probes(&self, hash: u64) -> impl Iterator<Item = usize> + '_ {
        let bit_count = (self.bits.len() * 64) as u64;
        let (h1, h2) = (hash, hash.rotate_left(32) | 1);
        (0..PROBES).map(move |i| (h1.wrapping_add(i.wrapping_mul(h2)) % bit_count) as usize)
    }

    fn insert(&mut self, hash: u64) {
        let probes: Vec<usize> = self.probes(hash).collect();
        for bit in probes {
            self.bits[bit / 64] |= 1 << (bit % 64);
        }
        self.len += 1;
    }

    fn may_contain(&self, hash: u64) -> bool {
        self.probes(hash)
            .all(|bit| self.bits[bit / 64] & (1 << (bit % 64)) != 0)
    }
}

impl Default for KeyFilter {
    fn default() -> Self {
        Self::with_first_capacity(FIRST_CAPACITY)
    }
}

impl KeyFilter {
    fn with_first_capacity(capacity: usize) -> Self {
        Self {
            filters: vec![Bloom::new(capacity)],
            hasher: RandomState::new(),
        }
    }

    pub fn insert(&mut self, key: &str) {
        let hash = self.hasher.hash_one(key);
        let full = self
            .filters
            .last()
            .is_none_or(|bloom| bloom.len >= bloom.capacity);
        if full {
            let capacity = self
                .filters
                .last()
                .map_or(FIRST_CAPACITY, |b| b.capacity * 2);
            self.filters.push(Bloom::new(capacity));
        }
        if let Some(bloom) = self.filters.last_mut() {
            bloom.insert(hash);
        }
    }

    /// False means the key was never inserted; true means it may have been.
    pub fn may_contain(&self, key: &str) -> bool {
        let hash = self.hasher.hash_one(key);
        self.filters.iter().any(|bloom| bloom.may_contain(hash))
    }

    pub fn memory_bytes(&self) -> usize {
        self.filters.iter().map(|b| b.bits.len() * 8).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_forgets_and_rarely_imagines() {
        let first = 10_000;
        let mut filter = KeyFilter::with_first_capacity(first);
        let inserted = 3 * first + 1; // fills 10,000 then 20,000, and starts a third
        for i in 0..inserted {
            filter.insert(&format!("key-{i}"));
        }
        assert!((0..inserted).all(|i| filter.may_contain(&format!("key-{i}"))));
        let trials = 100_000;
        let false_positives = (0..trials)
            .filter(|i| filter.may_contain(&format!("other-{i}")))
            .count();
        // Three filters at ~1 % each.
        assert!(
            false_positives < trials * 4 / 100,
            "{false_positives} of {trials}"
        );
        assert_eq!(filter.filters.len(), 3);
    }
}
