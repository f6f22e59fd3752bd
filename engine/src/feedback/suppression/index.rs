//! The in-memory index (pure): sorted arrays of 64-bit entry keys.
//!
//! [`Keys`] is a strictly ascending `Vec<u64>` plus a directory of bucket
//! starts: the top bits of a key pick a bucket (about 8 keys each), so a
//! lookup reads the directory and then one or two cache lines of keys,
//! instead of the ~24 scattered reads of a binary search over ten million.
//! Cost: 8 bytes per key plus 0.5 to 1 byte of directory.
//!
//! [`Run`] is the overlay of changes since the base file was written:
//! sorted keys and, for each, a [`Slot`] value (log offset, or removed):
//! 16.5 to 17 bytes per change. The newest changes wait in a small hash
//! map ([`Tail`]) and are merged into a new run (built aside, then swapped
//! in) when it fills. No I/O here.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// Bit set in a slot value when the key was removed.
pub const REMOVED: u64 = 1 << 63;

/// A slot value: the log offset of the key's latest record, with
/// [`REMOVED`] set when that record is a removal.
pub type Slot = u64;

/// Keys are already uniform hashes: use them as their own hash.
#[derive(Default, Clone, Copy)]
pub struct IdHasher(u64);

impl Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// The newest changes, by key.
pub type Tail = HashMap<u64, Slot, BuildHasherDefault<IdHasher>>;

/// Strictly ascending keys with a bucket directory.
#[derive(Debug, Default)]
pub struct Keys {
    keys: Vec<u64>,
    /// `dir[b]..dir[b + 1]` are the keys whose top `bits` bits are `b`.
    dir: Vec<u32>,
    bits: u32,
}

impl Keys {
    /// `keys` must be strictly ascending and fewer than 2^32.
    pub fn new(mut keys: Vec<u64>) -> Keys {
        keys.shrink_to_fit();
        let n = keys.len();
        let bits = if n < 16 {
            0
        } else {
            (usize::BITS - (n / 8).leading_zeros()).min(28)
        };
        let buckets = 1usize << bits;
        let mut dir: Vec<u32> = Vec::with_capacity(buckets + 1);
        huge_pages(dir.as_ptr().cast(), dir.capacity() * 4);
        let mut i = 0usize;
        for b in 0..buckets {
            while i < n && bucket(keys[i], bits) < b {
                i += 1;
            }
            dir.push(i as u32);
        }
        dir.push(n as u32);
        Keys { keys, dir, bits }
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn as_slice(&self) -> &[u64] {
        &self.keys
    }

    /// The range of positions where `key` would be (its bucket).
    #[inline]
    pub fn range(&self, key: u64) -> (u32, u32) {
        let b = bucket(key, self.bits);
        match (self.dir.get(b), self.dir.get(b + 1)) {
            (Some(&lo), Some(&hi)) => (lo, hi),
            _ => (0, 0),
        }
    }

    /// The position of `key` within `lo..hi` (from [`Keys::range`]).
    #[inline]
    pub fn find_in(&self, key: u64, lo: u32, hi: u32) -> Option<usize> {
        let (lo, hi) = (lo as usize, hi as usize);
        let run = self.keys.get(lo..hi)?;
        run.binary_search(&key).ok().map(|i| lo + i)
    }

    /// The position of `key`, if present.
    #[inline]
    pub fn find(&self, key: u64) -> Option<usize> {
        let b = bucket(key, self.bits);
        let lo = *self.dir.get(b)? as usize;
        let hi = *self.dir.get(b + 1)? as usize;
        let run = self.keys.get(lo..hi)?;
        run.binary_search(&key).ok().map(|i| lo + i)
    }

    /// Bytes held (allocated capacity).
    pub fn bytes(&self) -> usize {
        self.keys.capacity() * 8 + self.dir.capacity() * 4
    }
}

pub(crate) use crate::ingest::seen::huge_pages;

#[inline]
fn bucket(key: u64, bits: u32) -> usize {
    key.checked_shr(64 - bits).unwrap_or(0) as usize
}

/// Sorted changes: keys and their slots.
#[derive(Debug, Default)]
pub struct Run {
    pub keys: Keys,
    pub slots: Vec<Slot>,
}

impl Run {
    /// From (key, slot) pairs sorted by key, keys unique.
    pub fn from_sorted(pairs: &[(u64, Slot)]) -> Run {
        Run {
            keys: Keys::new(pairs.iter().map(|p| p.0).collect()),
            slots: pairs.iter().map(|p| p.1).collect(),
        }
    }

    #[inline]
    pub fn get(&self, key: u64) -> Option<Slot> {
        self.keys.find(key).and_then(|i| self.slots.get(i).copied())
    }

    pub fn pairs(&self) -> impl Iterator<Item = (u64, Slot)> + '_ {
        self.keys
            .as_slice()
            .iter()
            .copied()
            .zip(self.slots.iter().copied())
    }

    pub fn bytes(&self) -> usize {
        self.keys.bytes() + self.slots.capacity() * 8
    }
}

/// Sorts (key, slot) pairs given in log order and keeps the last slot of
/// each key.
pub fn sort_latest(mut pairs: Vec<(u64, Slot)>) -> Vec<(u64, Slot)> {
    // Stable: equal keys stay in log order, so the last one is the latest.
    pairs.sort_by_key(|p| p.0);
    let mut out: Vec<(u64, Slot)> = Vec::with_capacity(pairs.len());
    for p in pairs {
        match out.last_mut() {
            Some(last) if last.0 == p.0 => *last = p,
            _ => out.push(p),
        }
    }
    out
}

/// Merges two sorted unique lists; on equal keys `newer` wins.
pub fn merge(older: impl Iterator<Item = (u64, Slot)>, newer: &[(u64, Slot)]) -> Vec<(u64, Slot)> {
    let mut out = Vec::with_capacity(older.size_hint().0 + newer.len());
    let mut newer = newer.iter().copied().peekable();
    for (k, s) in older {
        while let Some(&(nk, ns)) = newer.peek() {
            if nk > k {
                break;
            }
            out.push((nk, ns));
            newer.next();
        }
        if out.last().is_none_or(|l| l.0 != k) {
            out.push((k, s));
        }
    }
    out.extend(newer);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_find_all_and_only_present() {
        let mut k: Vec<u64> = (0..10_000u64)
            .map(|i| i.wrapping_mul(0x9e37_79b9_7f4a_7c15))
            .collect();
        k.sort_unstable();
        let keys = Keys::new(k.clone());
        for (i, &x) in k.iter().enumerate() {
            assert_eq!(keys.find(x), Some(i));
            assert_eq!(keys.find(x ^ 1), None);
        }
        assert_eq!(Keys::new(vec![]).find(5), None);
        assert_eq!(Keys::new(vec![u64::MAX]).find(u64::MAX), Some(0));
    }

    #[test]
    fn merge_and_latest() {
        let m = merge(
            vec![(1, 10), (3, 30), (5, 50)].into_iter(),
            &[(3, 31), (4, 40), (9, 90)],
        );
        assert_eq!(m, vec![(1, 10), (3, 31), (4, 40), (5, 50), (9, 90)]);
        let l = sort_latest(vec![(5, 1), (2, 2), (5, 3)]);
        assert_eq!(l, vec![(2, 2), (5, 3)]);
    }
}
