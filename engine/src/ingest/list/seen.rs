//! The addresses a recipient list has had so far, for skipping duplicates:
//! two addresses are the same when they are equal ignoring ASCII case, in
//! the local part as in the domain (as the major mailbox providers treat
//! them; addresses are ASCII, see `crate::address`).
//!
//! Exact: a hash only finds candidates; an address is a duplicate only when
//! its bytes equal (ignoring case) those of an address stored before, so a
//! hash collision can never cost a recipient. Compact, for lists of tens of
//! millions: every address is stored once, lower-cased, in one byte arena
//! (a length byte, the address, padding to 4 bytes: about 30 bytes for a
//! typical address, no allocation per address), and the table is one
//! `u64` per slot (a 32-bit hash fragment and the address's place in the
//! arena), at most 3/4 full: about 40 bytes per address in all. Growing the
//! table moves slots without reading the arena or hashing again (a slot's
//! index is the top bits of its fragment). Pure; the hash is seeded per set.

use std::hash::BuildHasher;

/// Longest address stored (the address check allows 254 bytes).
const MAX_LEN: usize = 255;
/// Slots of a new set (a power of two).
const FIRST_SLOTS: usize = 1 << 12;

/// A set of addresses, compared ignoring ASCII case.
pub struct AddressSet<S = foldhash::fast::RandomState> {
    hasher: S,
    /// 0 = empty; else the top 32 bits of the address's hash, then its
    /// arena offset / 4 + 1.
    slots: Vec<u64>,
    /// `log2(slots.len())`: a slot's home is the top `bits` of its hash.
    bits: u32,
    /// Length-prefixed lower-cased addresses, each starting at a multiple
    /// of 4.
    arena: Vec<u8>,
    len: usize,
}

impl Default for AddressSet {
    fn default() -> Self {
        AddressSet::new()
    }
}

impl AddressSet {
    pub fn new() -> AddressSet {
        AddressSet::with_hasher(foldhash::fast::RandomState::default())
    }
}

impl<S: BuildHasher> AddressSet<S> {
    fn with_hasher(hasher: S) -> AddressSet<S> {
        AddressSet {
            hasher,
            slots: vec![0; FIRST_SLOTS],
            bits: FIRST_SLOTS.trailing_zeros(),
            arena: Vec::new(),
            len: 0,
        }
    }

    /// Addresses in the set.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Heap bytes in use (table and arena, as allocated).
    pub fn heap_bytes(&self) -> usize {
        self.slots.capacity() * 8 + self.arena.capacity()
    }

    /// Adds `email`; false when an address equal to it ignoring ASCII case
    /// is already in the set. An address over 255 bytes (never accepted by
    /// the address check) is never a duplicate and is not stored.
    pub fn insert(&mut self, email: &str) -> bool {
        let b = email.as_bytes();
        if b.len() > MAX_LEN {
            return true;
        }
        let mut buf = [0u8; MAX_LEN];
        let key = &mut buf[..b.len()];
        key.copy_from_slice(b);
        key.make_ascii_lowercase();
        let key = &*key;
        let fragment = self.hasher.hash_one(key) >> 32;
        if (self.len + 1) * 4 > self.slots.len() * 3 {
            self.grow();
        }
        let mask = self.slots.len() - 1;
        let mut i = self.home(fragment);
        loop {
            let slot = self.slots[i];
            if slot == 0 {
                break;
            }
            if slot >> 32 == fragment && self.stored(slot) == key {
                return false;
            }
            i = (i + 1) & mask;
        }
        // pad the arena so that the entry's offset / 4 fits the slot
        let off = self.arena.len().next_multiple_of(4);
        let Some(unit) = u32::try_from(off / 4 + 1).ok().filter(|&u| u != u32::MAX) else {
            // 16 GiB of addresses: past what a slot can point at; treated
            // as new (a duplicate sent, never a recipient lost)
            return true;
        };
        self.arena.resize(off, 0);
        self.arena.push(key.len() as u8);
        self.arena.extend_from_slice(key);
        self.slots[i] = fragment << 32 | u64::from(unit);
        self.len += 1;
        true
    }

    fn home(&self, fragment: u64) -> usize {
        (fragment >> (32 - self.bits)) as usize
    }

    /// The lower-cased address a slot points at.
    fn stored(&self, slot: u64) -> &[u8] {
        let off = ((slot & 0xffff_ffff) as usize - 1) * 4;
        let len = usize::from(self.arena[off]);
        &self.arena[off + 1..off + 1 + len]
    }

    /// Doubles the table; slots find their new home from their fragment.
    fn grow(&mut self) {
        let old = std::mem::take(&mut self.slots);
        self.bits += 1;
        self.slots = vec![0; old.len() * 2];
        let mask = self.slots.len() - 1;
        for slot in old.into_iter().filter(|&s| s != 0) {
            let mut i = self.home(slot >> 32);
            while self.slots[i] != 0 {
                i = (i + 1) & mask;
            }
            self.slots[i] = slot;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicates_ignore_case_in_both_parts() {
        let mut s = AddressSet::new();
        assert!(s.insert("dup@a.test"));
        assert!(!s.insert("dup@a.test"));
        assert!(!s.insert("DUP@A.TEST"));
        assert!(!s.insert("Dup@a.Test"));
        assert!(s.insert("dup2@a.test"));
        assert!(s.insert("dup@b.test"));
        assert_eq!(s.len(), 3);
    }

    #[test]
    fn stays_exact_through_growth() {
        let mut s = AddressSet::new();
        let n = 200_000;
        for i in 0..n {
            assert!(s.insert(&format!("user{i}@d{}.test", i % 97)), "{i}");
        }
        assert_eq!(s.len(), n);
        assert!(s.slots.len() >= n * 4 / 3);
        for i in (0..n).step_by(7) {
            assert!(!s.insert(&format!("USER{i}@D{}.TEST", i % 97)), "{i}");
        }
        assert!(s.insert("user0@d1.test"));
        assert_eq!(s.len(), n + 1);
    }

    /// Hashes everything to one value.
    struct Constant;

    impl BuildHasher for Constant {
        type Hasher = ConstantHasher;
        fn build_hasher(&self) -> ConstantHasher {
            ConstantHasher
        }
    }

    struct ConstantHasher;

    impl std::hash::Hasher for ConstantHasher {
        fn finish(&self) -> u64 {
            0xdead_beef_0000_0000
        }
        fn write(&mut self, _: &[u8]) {}
    }

    #[test]
    fn equal_hashes_are_told_apart_by_the_address() {
        let mut s = AddressSet::with_hasher(Constant);
        assert!(s.insert("a@x.test"));
        assert!(s.insert("b@x.test"));
        assert!(!s.insert("A@X.TEST"));
        assert!(!s.insert("b@x.test"));
        // past a growth too (every slot in one cluster)
        for i in 0..3500 {
            assert!(s.insert(&format!("u{i}@x.test")), "{i}");
        }
        assert!(!s.insert("U3499@x.test"));
        assert!(!s.insert("a@X.test"));
        assert_eq!(s.len(), 3502);
    }
}
