//! The keyed 64-bit hash that names an entry in memory: SipHash-1-3 of the
//! normalized address (then a 0 byte and the topic, for a topic entry),
//! under a 128-bit key kept in the store's `hash.key` file.
//!
//! The key is drawn from the operating system's random source when the
//! store is first created and never changes, so the sorted base file stays
//! valid across restarts; its secrecy keeps the hash unpredictable to
//! whoever chooses the addresses (imports are hostile). SipHash is written
//! out here rather than borrowed from `std` because its output is part of
//! the file format and `std` does not promise a stable hash.
//!
//! Two different keys collide with probability 2^-64: with n entries, a
//! lookup of an absent address is wrongly reported present with
//! probability about n / 2^64 (5e-13 at ten million entries).

use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::Path;

use super::error::SuppressionError;
use super::files::sync_dir;

const KEY_FILE: &str = "hash.key";
const KEY_MAGIC: &[u8; 8] = b"VOLSUPK1";

/// SipHash-1-3 key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HashKey {
    k0: u64,
    k1: u64,
}

/// SipHash-1-3 state, fed a byte stream.
struct Sip {
    v: [u64; 4],
    tail: u64,
    ntail: u32,
    len: u64,
}

impl Sip {
    fn new(key: HashKey) -> Sip {
        Sip {
            v: [
                key.k0 ^ 0x736f_6d65_7073_6575,
                key.k1 ^ 0x646f_7261_6e64_6f6d,
                key.k0 ^ 0x6c79_6765_6e65_7261,
                key.k1 ^ 0x7465_6462_7974_6573,
            ],
            tail: 0,
            ntail: 0,
            len: 0,
        }
    }

    #[inline]
    fn round(v: &mut [u64; 4]) {
        v[0] = v[0].wrapping_add(v[1]);
        v[1] = v[1].rotate_left(13) ^ v[0];
        v[0] = v[0].rotate_left(32);
        v[2] = v[2].wrapping_add(v[3]);
        v[3] = v[3].rotate_left(16) ^ v[2];
        v[0] = v[0].wrapping_add(v[3]);
        v[3] = v[3].rotate_left(21) ^ v[0];
        v[2] = v[2].wrapping_add(v[1]);
        v[1] = v[1].rotate_left(17) ^ v[2];
        v[2] = v[2].rotate_left(32);
    }

    #[inline]
    fn compress(&mut self, m: u64) {
        self.v[3] ^= m;
        Sip::round(&mut self.v);
        self.v[0] ^= m;
    }

    #[inline]
    fn write(&mut self, mut bytes: &[u8]) {
        self.len += bytes.len() as u64;
        while self.ntail != 0 && !bytes.is_empty() {
            self.push(bytes[0]);
            bytes = &bytes[1..];
        }
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.compress(u64::from_le_bytes(w));
        }
        for &b in chunks.remainder() {
            self.push(b);
        }
    }

    #[inline]
    fn push(&mut self, b: u8) {
        self.tail |= u64::from(b) << (8 * self.ntail);
        self.ntail += 1;
        if self.ntail == 8 {
            let m = self.tail;
            self.compress(m);
            self.tail = 0;
            self.ntail = 0;
        }
    }

    fn finish(mut self) -> u64 {
        let b = ((self.len & 0xff) << 56) | self.tail;
        self.compress(b);
        self.v[2] ^= 0xff;
        for _ in 0..3 {
            Sip::round(&mut self.v);
        }
        self.v[0] ^ self.v[1] ^ self.v[2] ^ self.v[3]
    }
}

impl HashKey {
    #[cfg(test)]
    pub(crate) fn fixed(k0: u64, k1: u64) -> HashKey {
        HashKey { k0, k1 }
    }

    /// The hash of `bytes` alone.
    pub fn hash(&self, bytes: &[u8]) -> u64 {
        let mut s = Sip::new(*self);
        s.write(bytes);
        s.finish()
    }

    /// The key of an entry: normalized address, and topic if any.
    pub fn entry_key(&self, email: &[u8], topic: Option<&str>) -> u64 {
        let mut s = Sip::new(*self);
        s.write(email);
        if let Some(t) = topic {
            s.write(&[0]);
            s.write(t.as_bytes());
        }
        s.finish()
    }

    /// A value stored in each base file so a file written under another
    /// key is recognised.
    pub fn check_value(&self) -> u64 {
        self.hash(b"volley suppression key check")
    }

    /// Loads `dir/hash.key`, creating it (durably) on first use.
    pub fn load_or_create(dir: &Path) -> Result<HashKey, SuppressionError> {
        let path = dir.join(KEY_FILE);
        match fs::read(&path) {
            Ok(bytes) => parse_key_file(&bytes)
                .ok_or_else(|| SuppressionError::corrupt(&path, 0, "not a valid hash key file")),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => create_key_file(dir),
            Err(e) => Err(SuppressionError::io(&path, e)),
        }
    }
}

fn parse_key_file(b: &[u8]) -> Option<HashKey> {
    if b.len() != 28 || &b[..8] != KEY_MAGIC {
        return None;
    }
    let crc = u32::from_le_bytes(b[24..28].try_into().ok()?);
    if crc32fast::hash(&b[..24]) != crc {
        return None;
    }
    Some(HashKey {
        k0: u64::from_le_bytes(b[8..16].try_into().ok()?),
        k1: u64::from_le_bytes(b[16..24].try_into().ok()?),
    })
}

fn create_key_file(dir: &Path) -> Result<HashKey, SuppressionError> {
    let mut raw = [0u8; 16];
    File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut raw))
        .map_err(|e| SuppressionError::io("/dev/urandom", e))?;
    let mut b = Vec::with_capacity(28);
    b.extend_from_slice(KEY_MAGIC);
    b.extend_from_slice(&raw);
    b.extend_from_slice(&crc32fast::hash(&b).to_le_bytes());
    let tmp = dir.join("hash.key.tmp");
    let path = dir.join(KEY_FILE);
    let mut f = File::create(&tmp).map_err(|e| SuppressionError::io(&tmp, e))?;
    f.write_all(&b)
        .and_then(|_| f.sync_all())
        .map_err(|e| SuppressionError::io(&tmp, e))?;
    fs::rename(&tmp, &path).map_err(|e| SuppressionError::io(&path, e))?;
    sync_dir(dir)?;
    parse_key_file(&b).ok_or_else(|| SuppressionError::corrupt(&path, 0, "key encoding"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::Hasher;

    #[test]
    #[allow(deprecated)]
    fn matches_std_siphash13_with_zero_key() {
        let k = HashKey::fixed(0, 0);
        for n in 0..40 {
            let data: Vec<u8> = (0..n as u8).collect();
            let mut h = std::collections::hash_map::DefaultHasher::new();
            h.write(&data);
            assert_eq!(k.hash(&data), h.finish(), "length {n}");
        }
        // Streaming in pieces gives the same hash as one write.
        let mut s = Sip::new(k);
        s.write(b"abc");
        s.write(b"defghijk");
        s.write(b"l");
        assert_eq!(s.finish(), k.hash(b"abcdefghijkl"));
    }
}
