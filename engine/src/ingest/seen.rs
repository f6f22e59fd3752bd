//! The addresses a campaign's list has had so far, for skipping duplicates:
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
//! arena), at most 3/4 full: about 40 bytes per address in all.
//!
//! Fast, for as many: waiting for memory is what an insert costs. A batch
//! of addresses is hashed first and each slot fetched ahead of its turn
//! ([`AddressSet::insert_all`]); the set can be sized once for the expected
//! count ([`AddressSet::reserve`]) rather than grown through every size;
//! growing moves slots without reading the arena or hashing again (a
//! slot's index is the top bits of its fragment); large allocations ask
//! for huge pages. No I/O (beyond that advice to the kernel); the hash is
//! seeded per set.

use std::hash::BuildHasher;

/// Longest address stored (the address check allows 254 bytes).
const MAX_LEN: usize = 255;
/// Slots of a new set (a power of two).
const FIRST_SLOTS: usize = 1 << 12;
/// How many addresses ahead of the one being inserted its slot is fetched.
const AHEAD: usize = 16;
/// The fragment of an address too long to store (fragments have 32 bits).
const TOO_LONG: u64 = u64::MAX;

/// A zeroed table of `n` slots (see [`huge_pages`]).
fn table(n: usize) -> Vec<u64> {
    let t = vec![0u64; n];
    huge_pages(t.as_ptr().cast(), n * 8);
    t
}

/// Asks for huge pages under a large allocation (at least 4 MiB; also the
/// suppression list's key arrays): the table is read at random, and with 4 KiB pages nearly every read would
/// also miss the TLB; and each page is one fault when first touched (much
/// dearer in a virtual machine).
pub(crate) fn huge_pages(ptr: *const u8, bytes: usize) {
    #[cfg(target_os = "linux")]
    if bytes >= 4 << 20 {
        let start = (ptr as usize).next_multiple_of(4096);
        let end = ptr as usize + bytes;
        // SAFETY: advice about pages inside an allocation of ours;
        // MADV_HUGEPAGE changes how they are backed, never their contents
        // (on failure, e.g. without transparent huge pages, nothing
        // changes).
        unsafe {
            libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE);
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (ptr, bytes);
}

/// Asks the CPU to fetch the cache line at `p` (a hint; nothing where the
/// CPU has no such instruction).
fn prefetch(p: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is a hint: it reads nothing into the program and
    // never faults, whatever `p` points at.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p.cast())
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

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
    /// The batch being inserted: its addresses lower-cased, one after the
    /// other, and each one's fragment and start there.
    keys: Vec<u8>,
    batch: Vec<(u64, usize)>,
    /// For [`AddressSet::insert`].
    new: Vec<bool>,
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
            keys: Vec::new(),
            batch: Vec::new(),
            new: Vec::new(),
        }
    }

    /// Addresses in the set.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes in use: the table and the filled part of the arena.
    pub fn heap_bytes(&self) -> usize {
        self.slots.len() * 8 + self.arena.len()
    }

    /// Adds `email`; false when an address equal to it ignoring ASCII case
    /// is already in the set. An address over 255 bytes (never accepted by
    /// the address check) is never a duplicate and is not stored.
    pub fn insert(&mut self, email: &str) -> bool {
        let mut new = std::mem::take(&mut self.new);
        self.insert_all(&[email], &mut new);
        let r = new[0];
        self.new = new;
        r
    }

    /// Adds `emails` in order; `new` receives, for each, what [`insert`]
    /// returns.
    ///
    /// [`insert`]: AddressSet::insert
    pub fn insert_all(&mut self, emails: &[&str], new: &mut Vec<bool>) {
        new.clear();
        // lower-case and hash them all first (their bytes, too, are fetched
        // ahead: they were just written by another thread)
        let mut keys = std::mem::take(&mut self.keys);
        let mut batch = std::mem::take(&mut self.batch);
        keys.clear();
        batch.clear();
        for (k, e) in emails.iter().enumerate() {
            if let Some(ahead) = emails.get(k + AHEAD) {
                prefetch(ahead.as_ptr());
            }
            let start = keys.len();
            if e.len() > MAX_LEN {
                batch.push((TOO_LONG, start));
                continue;
            }
            keys.extend_from_slice(e.as_bytes());
            keys[start..].make_ascii_lowercase();
            batch.push((self.hasher.hash_one(&keys[start..]) >> 32, start));
        }
        // room for all of them now, so that no slot moves during the batch
        while (self.len + batch.len()) * 4 > self.slots.len() * 3 {
            self.grow();
        }
        for (k, &(fragment, start)) in batch.iter().enumerate() {
            if let Some(&(f, _)) = batch.get(k + AHEAD) {
                self.prefetch(f);
            }
            let end = batch.get(k + 1).map_or(keys.len(), |&(_, s)| s);
            new.push(fragment == TOO_LONG || self.insert_key(&keys[start..end], fragment));
        }
        self.keys = keys;
        self.batch = batch;
    }

    /// Inserts a lower-cased address with its fragment (room is made).
    fn insert_key(&mut self, key: &[u8], fragment: u64) -> bool {
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

    /// Asks the CPU to fetch the slot where `fragment`'s search starts.
    fn prefetch(&self, fragment: u64) {
        prefetch(self.slots[self.home(fragment)..].as_ptr().cast());
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

    /// Makes room for `more` addresses of about `len` bytes each at once
    /// (growing step by step would allocate, touch and fill every size on
    /// the way).
    pub fn reserve(&mut self, more: usize, len: usize) {
        let want = ((self.len + more) * 4 / 3 + 1).next_power_of_two();
        if want > self.slots.len() {
            self.grow_to(want);
        }
        let entry = (1 + len.min(MAX_LEN)).next_multiple_of(4);
        let before = self.arena.capacity();
        self.arena.reserve(more.saturating_mul(entry));
        if self.arena.capacity() != before {
            huge_pages(self.arena.as_ptr(), self.arena.capacity());
        }
    }

    /// Doubles the table.
    fn grow(&mut self) {
        self.grow_to(self.slots.len() * 2);
    }

    /// Moves the slots into a table of `n` (a larger power of two); each
    /// finds its new home from its fragment.
    fn grow_to(&mut self, n: usize) {
        let old = std::mem::replace(&mut self.slots, table(n));
        self.bits = n.trailing_zeros();
        let mask = n - 1;
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
        // and through a reservation
        s.reserve(3 * n, 20);
        assert!(s.slots.len() >= (4 * n + 1) * 4 / 3);
        for i in (0..n).step_by(5) {
            assert!(!s.insert(&format!("user{i}@D{}.test", i % 97)), "{i}");
        }
        assert!(s.insert("new@d1.test"));
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
