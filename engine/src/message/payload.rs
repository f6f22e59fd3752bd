//! The DATA payload of a message: its DKIM signature headers and the
//! message, dot-stuffed and ended by `CRLF.CRLF`, kept as the two buffers
//! production made whenever they can go out as they are.
//!
//! A message built by `message::mime` is already in wire form (CRLF line
//! ends only, 7bit or quoted-printable bodies), so the common case is one
//! scan of each buffer, the end marker appended in place, and no copy of
//! the ~20 KB message; the session writes both parts in one `writev`.
//! Anything else (a line starting with `.`, a bare CR or LF, no final
//! CRLF) goes through [`dot_stuff_parts`], which copies and canonicalizes
//! it: the wire form is the same either way (the tests compare them).
//! Pure.

use super::bytemask;
use crate::smtp::session::dot_stuff_parts;

/// A dot-stuffed payload ending in `CRLF.CRLF`, in parts sent back to back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payload {
    head: Vec<u8>,
    body: Vec<u8>,
}

/// Whether `b` can go out as it is: empty, or starting a line with no `.`,
/// every line end a CRLF (no bare CR or LF), no line starting with `.`,
/// and ending in CRLF. One pass of [`bytemask`] blocks: each LF must
/// follow a CR and each CR precede an LF (the bit after a CR is an LF's),
/// and no `.` may follow an LF; a block's last CR or LF carries into the
/// next.
fn wire_ready(b: &[u8]) -> bool {
    if b.is_empty() {
        return true;
    }
    if b[0] == b'.' || !b.ends_with(b"\r\n") {
        return false;
    }
    let (mut cr_in, mut lf_in) = (0u64, 0u64);
    for (_, m) in bytemask::blocks(b) {
        let after_cr = (m.cr << 1) | cr_in;
        let after_lf = (m.lf << 1) | lf_in;
        if (m.lf ^ after_cr) | (m.dot & after_lf) != 0 {
            return false;
        }
        cr_in = m.cr >> 63;
        lf_in = m.lf >> 63;
    }
    // the text ends in CRLF, so no CR waits for its LF
    true
}

impl Payload {
    /// The payload of `head` (the signature headers) followed by `body`
    /// (the message).
    pub fn new(head: Vec<u8>, mut body: Vec<u8>) -> Payload {
        if wire_ready(&head) && wire_ready(&body) {
            body.extend_from_slice(b".\r\n");
            return Payload { head, body };
        }
        let mut out = Vec::with_capacity(head.len() + body.len() + 64);
        dot_stuff_parts(&[&head, &body], &mut out);
        Payload {
            head: out,
            body: Vec::new(),
        }
    }

    /// The parts, to be written in this order.
    pub fn parts(&self) -> [&[u8]; 2] {
        [&self.head, &self.body]
    }

    /// Length in octets.
    pub fn len(&self) -> usize {
        self.head.len() + self.body.len()
    }

    /// Never empty (it holds at least the end marker).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The payload in one buffer.
    pub fn to_vec(&self) -> Vec<u8> {
        [self.head.as_slice(), &self.body].concat()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stuffed(head: &[u8], body: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        dot_stuff_parts(&[head, body], &mut out);
        out
    }

    #[test]
    fn same_wire_form_as_dot_stuffing() {
        let cases: &[(&[u8], &[u8])] = &[
            (b"DKIM-Signature: a;\r\n\tb\r\n", b"From: x\r\n\r\nbody\r\n"),
            (b"", b"From: x\r\n\r\nbody\r\n"),
            (b"", b""),
            (b"S: 1\r\n", b""),
            (b"S: 1\r\n", b"From: x\r\n\r\n.leading dot\r\n"),
            (b"S: 1\r\n", b"From: x\r\n\r\nno final line end"),
            (b"S: 1\r\n", b"From: x\r\n\r\nbare\nLF\r\n"),
            (b"S: 1\r\n", b"From: x\r\n\r\nbare\rCR\r\n"),
            (b"S: 1\r\n", b"From: x\r\n\r\nends in CR\r"),
            (b"S: 1\r", b"\nFrom: x\r\n\r\nsplit CRLF\r\n"),
            (b"S: 1\r\n", b".From: x\r\n\r\n"),
            (b"S: 1\r\n", b"From: x\r\n\r\n..\r\n.\r\n"),
            (b"\n", b"From: x\r\n\r\nb\r\n"),
        ];
        for (head, body) in cases {
            let p = Payload::new(head.to_vec(), body.to_vec());
            assert_eq!(
                p.to_vec(),
                stuffed(head, body),
                "{:?} + {:?}",
                String::from_utf8_lossy(head),
                String::from_utf8_lossy(body)
            );
            assert_eq!(p.len(), p.to_vec().len());
        }
    }

    /// `wire_ready` by its definition, a byte at a time.
    fn wire_ready_by_definition(b: &[u8]) -> bool {
        b.is_empty()
            || (b[0] != b'.'
                && b.ends_with(b"\r\n")
                && b.iter().enumerate().all(|(i, &c)| match c {
                    b'\r' => b.get(i + 1) == Some(&b'\n'),
                    b'\n' => i > 0 && b[i - 1] == b'\r' && b.get(i + 1) != Some(&b'.'),
                    _ => true,
                }))
    }

    #[test]
    fn wire_ready_across_block_boundaries() {
        let mut x = 0x2545_F491_4F6C_DD1Du64;
        let mut ready = [0usize; 2];
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let len = (x % 200) as usize;
            let mut b: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    // mostly well-formed lines, with the odd stray byte
                    match x % 16 {
                        0 => b'\r',
                        1 => b'\n',
                        2 => b'.',
                        _ => b'a',
                    }
                })
                .collect();
            // and as often, CRLF lines with the odd dot after them
            if x.is_multiple_of(2) {
                b = b
                    .split(|&c| c == b'\n' || c == b'\r')
                    .flat_map(|l| [l, b"\r\n"].concat())
                    .collect();
            }
            let want = wire_ready_by_definition(&b);
            ready[usize::from(want)] += 1;
            assert_eq!(wire_ready(&b), want, "{:?}", String::from_utf8_lossy(&b));
            let p = Payload::new(b"S: 1\r\n".to_vec(), b.clone());
            assert_eq!(p.to_vec(), stuffed(b"S: 1\r\n", &b));
        }
        // both answers, many times over
        assert!(ready.iter().all(|&n| n > 2_000), "{ready:?}");
    }

    #[test]
    fn a_stray_byte_anywhere_in_clean_lines_is_seen() {
        // CRLF lines of every length around the block size, then one
        // byte made a bare CR, a bare LF or a dot at a line start, at
        // every place (block edges included)
        for len in [1, 62, 63, 64, 65, 127, 128, 129] {
            let mut clean: Vec<u8> = (0..200)
                .flat_map(|i| {
                    let mut l = vec![b'a'; (i % 3) + len % 7];
                    l.extend_from_slice(b"\r\n");
                    l
                })
                .take(len * 3)
                .collect();
            while !clean.ends_with(b"\r\n") {
                clean.pop();
            }
            assert!(wire_ready(&clean));
            for at in 0..clean.len() {
                for c in [b'\r', b'\n', b'.', b'x'] {
                    let mut b = clean.clone();
                    b[at] = c;
                    assert_eq!(
                        wire_ready(&b),
                        wire_ready_by_definition(&b),
                        "{:?} at {at} of {:?}",
                        c as char,
                        String::from_utf8_lossy(&b)
                    );
                }
            }
        }
    }

    #[test]
    fn wire_ready_messages_are_not_copied() {
        let body = b"From: x\r\n\r\nline\r\n".to_vec();
        let p = Payload::new(b"S: 1\r\n".to_vec(), body);
        assert_eq!(p.parts()[0], b"S: 1\r\n");
        assert_eq!(p.parts()[1], b"From: x\r\n\r\nline\r\n.\r\n");
    }
}
