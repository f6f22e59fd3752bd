//! Stable event ids: an event is the `index`th event of the journal entry
//! at `position`, so it always gets the same id, however often it is
//! published (consumers drop repeats by it). The id is a UUID (version 8,
//! RFC 9562) made from the spool's uid, the position and the index: unique
//! per spool, the same after a restart. Pure.

use std::fmt::Write;

/// Where an event comes from in the journal.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct EventKey {
    /// The journal position of its entry.
    pub position: u64,
    /// Its place among the entry's events (a `Send` comes first).
    pub index: u8,
}

impl EventKey {
    /// The event's id in the spool with uid `spool_uid`, as a UUID string.
    pub fn id(&self, spool_uid: u64) -> String {
        let mut input = [0u8; 17];
        input[..8].copy_from_slice(&spool_uid.to_le_bytes());
        input[8..16].copy_from_slice(&self.position.to_le_bytes());
        input[16] = self.index;
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &input);
        let mut b = [0u8; 16];
        b.copy_from_slice(&digest.as_ref()[..16]);
        b[6] = (b[6] & 0x0f) | 0x80; // version 8
        b[8] = (b[8] & 0x3f) | 0x80; // RFC 9562 variant
        let mut out = String::with_capacity(36);
        for (i, byte) in b.iter().enumerate() {
            if matches!(i, 4 | 6 | 8 | 10) {
                out.push('-');
            }
            let _ = write!(out, "{byte:02x}");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_stable_uuids_unique_per_event() {
        let k = |position, index| EventKey { position, index };
        let a = k(4096, 0).id(7);
        assert_eq!(a, k(4096, 0).id(7), "the same event, the same id");
        assert_eq!(a.len(), 36);
        let parts: Vec<&str> = a.split('-').collect();
        assert_eq!(
            parts.iter().map(|p| p.len()).collect::<Vec<_>>(),
            vec![8, 4, 4, 4, 12]
        );
        assert!(parts[2].starts_with('8'), "version 8: {a}");
        assert!(matches!(&parts[3][..1], "8" | "9" | "a" | "b"), "{a}");
        let others = [k(4096, 1).id(7), k(4097, 0).id(7), k(4096, 0).id(8)];
        for o in others {
            assert_ne!(a, o);
        }
    }
}
