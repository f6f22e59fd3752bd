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

use crate::smtp::session::dot_stuff_parts;

/// A dot-stuffed payload ending in `CRLF.CRLF`, in parts sent back to back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payload {
    head: Vec<u8>,
    body: Vec<u8>,
}

/// Whether `b` can go out as it is: empty, or starting a line with no `.`,
/// every line end a CRLF (no bare CR or LF), no line starting with `.`,
/// and ending in CRLF.
fn wire_ready(b: &[u8]) -> bool {
    if b.is_empty() {
        return true;
    }
    if b[0] == b'.' || !b.ends_with(b"\r\n") {
        return false;
    }
    let mut lfs = 0usize;
    for i in memchr::memchr_iter(b'\n', b) {
        if i == 0 || b[i - 1] != b'\r' || b.get(i + 1) == Some(&b'.') {
            return false;
        }
        lfs += 1;
    }
    // every LF has its CR: any other CR is a bare one
    memchr::memchr_iter(b'\r', b).count() == lfs
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

    #[test]
    fn wire_ready_messages_are_not_copied() {
        let body = b"From: x\r\n\r\nline\r\n".to_vec();
        let p = Payload::new(b"S: 1\r\n".to_vec(), body);
        assert_eq!(p.parts()[0], b"S: 1\r\n");
        assert_eq!(p.parts()[1], b"From: x\r\n\r\nline\r\n.\r\n");
    }
}
