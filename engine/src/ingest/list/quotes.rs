//! Quotes in CSV, followed byte by byte as the parser reads them (`"` opens
//! a field only at its start, `""` inside is a quote, and a quote anywhere
//! else is text), to find the two shapes of a stray quote that the parser
//! accepts without an error when the field count still comes out right:
//!
//! - a quoted field still open at the end of the input: it took every line
//!   after it (`a@x.test,A,"note` and then the rest of the file);
//! - a quoted field that ran over a line end and whose closing quote is
//!   followed by text: a stray quote that ran on to a later field's opening
//!   quote (`a@x.test,A,"note` ... `b@x.test,B,"Oslo"`).
//!
//! A well-formed quoted field over several lines is neither. Pure.

use std::collections::VecDeque;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum State {
    #[default]
    FieldStart,
    Unquoted,
    Quoted,
    /// A quote in a quoted field: it closes the field unless another
    /// follows.
    AfterQuote,
}

/// What a stray quote did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stray {
    /// A quoted field was still open at the end of the list.
    Open,
    /// A quoted field over several lines was closed by a quote with text
    /// after it.
    TextAfterQuote,
}

impl Stray {
    pub fn reason(self) -> &'static str {
        match self {
            Stray::Open => {
                "a quoted field is never closed: it runs to the end of the list (a stray '\"'?)"
            }
            Stray::TextAfterQuote => {
                "a quoted field runs over several lines and is closed by a quote with text after it (a stray '\"' running on to a later quote?)"
            }
        }
    }
}

/// The quote state after the bytes fed so far.
#[derive(Debug, Default)]
pub struct Quotes {
    state: State,
    /// The quoted field now open has a line end in it.
    multiline: bool,
    /// Bytes fed so far.
    fed: u64,
}

impl Quotes {
    /// Follows `bytes`; calls `text_after_quote` with the offset (counted
    /// from the first byte ever fed) of each text byte that follows the
    /// closing quote of a field over several lines.
    pub fn feed(&mut self, bytes: &[u8], mut text_after_quote: impl FnMut(u64)) {
        let line_end = |b: u8| b == b'\n' || b == b'\r';
        for (i, &b) in bytes.iter().enumerate() {
            self.state = match self.state {
                State::FieldStart if b == b'"' => {
                    self.multiline = false;
                    State::Quoted
                }
                State::FieldStart | State::Unquoted if b == b',' || line_end(b) => {
                    State::FieldStart
                }
                State::FieldStart | State::Unquoted => State::Unquoted,
                State::Quoted if b == b'"' => State::AfterQuote,
                State::Quoted => {
                    self.multiline |= line_end(b);
                    State::Quoted
                }
                State::AfterQuote if b == b'"' => State::Quoted,
                State::AfterQuote if b == b',' || line_end(b) => State::FieldStart,
                State::AfterQuote => {
                    if self.multiline {
                        text_after_quote(self.fed + i as u64);
                    }
                    State::Unquoted
                }
            };
        }
        self.fed += bytes.len() as u64;
    }

    /// A quoted field is open (at the end of the input: never closed).
    pub fn open(&self) -> bool {
        matches!(self.state, State::Quoted)
    }

    /// Checks the bytes of one record, from where the parser began reading
    /// it to where it stopped.
    pub fn check_record(raw: &[u8]) -> Option<Stray> {
        let mut q = Quotes::default();
        let mut text_after = false;
        q.feed(raw, |_| text_after = true);
        if text_after {
            Some(Stray::TextAfterQuote)
        } else if q.open() {
            Some(Stray::Open)
        } else {
            None
        }
    }
}

/// Follows every byte of a list that cannot be read twice (a pipe), so
/// that the record a stray quote spoiled is known when it is parsed.
#[derive(Debug, Default)]
pub struct StreamQuotes {
    quotes: Quotes,
    /// Offsets of text after a closing quote, not yet matched to a record.
    events: VecDeque<u64>,
    /// The input ended.
    pub eof: bool,
}

impl StreamQuotes {
    pub fn feed(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            self.eof = true;
        }
        let events = &mut self.events;
        self.quotes.feed(bytes, |at| events.push_back(at));
    }

    /// What a stray quote did to the record parsed from bytes
    /// `start..end` (records are asked about in order).
    pub fn check_record(&mut self, start: u64, end: u64) -> Option<Stray> {
        while self.events.front().is_some_and(|&at| at < start) {
            self.events.pop_front();
        }
        if self.events.front().is_some_and(|&at| at < end) {
            return Some(Stray::TextAfterQuote);
        }
        (self.eof && end >= self.quotes.fed && self.quotes.open()).then_some(Stray::Open)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn well_formed_fields_pass() {
        for raw in [
            &b"a@x.test,A,note\n"[..],
            b"a@x.test,\"A, the first\",\"say \"\"hi\"\"\"\n",
            b"a@x.test,\"two\nlines\",x\r\n",
            b"\r\n\na@x.test,\"two\r\nlines\"",
            b"a@x.test,A,b\"c\n",
            // a quote closing a one-line field, then text: the parser's
            // business, not a stray quote swallowing lines
            b"a@x.test,\"A\"B,c\n",
        ] {
            assert_eq!(
                Quotes::check_record(raw),
                None,
                "{}",
                String::from_utf8_lossy(raw)
            );
        }
    }

    #[test]
    fn stray_quotes_are_found() {
        assert_eq!(
            Quotes::check_record(b"q3@a.test,Q3,\"unterminated\nq4@a.test,Q4,n\n"),
            Some(Stray::Open)
        );
        assert_eq!(Quotes::check_record(b"q3@a.test,Q3,\"x"), Some(Stray::Open));
        assert_eq!(
            Quotes::check_record(b"q3@a.test,Q3,\"x\nq4@a.test,Q4,\"Oslo\"\n"),
            Some(Stray::TextAfterQuote)
        );
    }

    #[test]
    fn a_stream_matches_strays_to_their_records() {
        let text = b"email,n\na@x.test,1\nb@x.test,\"2\nc@x.test,\"3\"\nd@x.test,4\ne@x.test,\"5\n";
        let mut s = StreamQuotes::default();
        s.feed(&text[..20]);
        s.feed(&text[20..]);
        s.feed(b"");
        let at = |needle: &[u8]| {
            text.windows(needle.len())
                .position(|w| w == needle)
                .unwrap() as u64
        };
        let (b, d, e) = (at(b"b@"), at(b"d@"), at(b"e@"));
        assert_eq!(s.check_record(at(b"a@"), b), None);
        assert_eq!(s.check_record(b, d), Some(Stray::TextAfterQuote));
        assert_eq!(s.check_record(d, e), None);
        assert_eq!(s.check_record(e, text.len() as u64), Some(Stray::Open));
    }
}
