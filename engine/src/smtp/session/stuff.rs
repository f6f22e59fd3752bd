//! The DATA wire form of a message: dot-stuffed (RFC 5321 §4.5.2), every
//! line end CRLF (§2.3.8), terminated by `CRLF.CRLF`. Input: the message
//! bytes, whole or in consecutive parts; output appended to a buffer.
//! Pure; any bytes are accepted (a bare CR or LF can never end the data
//! early: SMTP smuggling).

/// Dot-stuffs a message for DATA and appends the terminating `CRLF.CRLF`
/// (see [`dot_stuff_parts`]).
pub fn dot_stuff(message: &[u8], out: &mut Vec<u8>) {
    dot_stuff_parts(&[message], out);
}

/// Dot-stuffs a message given in consecutive parts (e.g. signature headers
/// and the message) without joining them first, and appends the
/// terminating `CRLF.CRLF`.
///
/// The wire form is canonical whatever the message holds: every line end
/// (CRLF, a bare LF or a bare CR) goes out as CRLF (RFC 5321 §2.3.8), and a
/// `.` that starts any line is doubled (§4.5.2). Messages built by
/// `message::mime` have CRLF line ends only, so for them this copies and
/// stuffs; the conversion keeps a stray CR or LF from ever reaching a server
/// as one, where it could end the data early (SMTP smuggling).
pub fn dot_stuff_parts(parts: &[&[u8]], out: &mut Vec<u8>) {
    out.reserve(parts.iter().map(|p| p.len()).sum::<usize>() + 64);
    let mut at_line_start = true;
    // the last part ended in CR: an LF starting the next one belongs to it
    let mut after_cr = false;
    for part in parts {
        let mut rest = *part;
        if after_cr && !rest.is_empty() {
            if rest[0] == b'\n' {
                rest = &rest[1..];
            }
            after_cr = false;
        }
        while let Some(&first) = rest.first() {
            if at_line_start && first == b'.' {
                out.push(b'.');
            }
            match memchr::memchr2(b'\r', b'\n', rest) {
                Some(i) if rest[i] == b'\r' && rest.get(i + 1) == Some(&b'\n') => {
                    out.extend_from_slice(&rest[..i + 2]);
                    rest = &rest[i + 2..];
                    at_line_start = true;
                }
                Some(i) => {
                    // a bare CR or LF
                    out.extend_from_slice(&rest[..i]);
                    out.extend_from_slice(b"\r\n");
                    after_cr = rest[i] == b'\r' && i + 1 == rest.len();
                    rest = &rest[i + 1..];
                    at_line_start = true;
                }
                None => {
                    out.extend_from_slice(rest);
                    at_line_start = false;
                    break;
                }
            }
        }
    }
    if !at_line_start {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
}
