//! SMTP replies and a buffered reply reader for pipelined sessions.
//!
//! The reader keeps its own buffer: bytes that arrive after one reply (the
//! next pipelined replies) are kept for the next read, which a lock-step
//! reader would throw away. Parsing is smtp-proto's `ResponseReceiver`;
//! replies over 4 KiB or malformed replies are protocol errors. Exposure: the
//! bytes come from a remote server and may be hostile.

use std::time::Duration;

use smtp_proto::response::parser::ResponseReceiver;
use tokio::io::{AsyncRead, AsyncReadExt};

/// One SMTP reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    /// Enhanced status code (RFC 3463), `[0, 0, 0]` when absent.
    pub esc: [u8; 3],
    /// Text (multi-line replies joined), without the codes.
    pub text: String,
}

impl Reply {
    pub fn new(code: u16, esc: [u8; 3], text: impl Into<String>) -> Reply {
        Reply {
            code,
            esc,
            text: text.into(),
        }
    }

    /// 2 (success), 3 (intermediate), 4 (transient), 5 (permanent).
    pub fn class(&self) -> u16 {
        self.code / 100
    }

    pub fn is_positive(&self) -> bool {
        self.class() == 2
    }

    /// `x.y.z` when the reply carried an enhanced status code.
    pub fn enhanced(&self) -> Option<String> {
        (self.esc[0] != 0).then(|| format!("{}.{}.{}", self.esc[0], self.esc[1], self.esc[2]))
    }
}

impl std::fmt::Display for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let text: String = self
            .text
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        match self.enhanced() {
            Some(e) => write!(f, "{} {} {}", self.code, e, text.trim()),
            None => write!(f, "{} {}", self.code, text.trim()),
        }
    }
}

/// Why reading a reply failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadError {
    Timeout,
    Closed,
    Io(String),
    Protocol(String),
}

/// Free room made in the reply buffer before each read (a reply's lines
/// are short; a long one takes several reads).
const READ_ROOM: usize = 512;

/// Reads replies from a stream, keeping bytes that belong to later replies.
#[derive(Default)]
pub struct ReplyReader {
    buf: Vec<u8>,
    parser: ResponseReceiver,
}

impl ReplyReader {
    /// Reads the next reply, waiting at most `limit` for it.
    pub async fn read<S: AsyncRead + Unpin>(
        &mut self,
        stream: &mut S,
        limit: Duration,
    ) -> Result<Reply, ReadError> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if !self.buf.is_empty() {
                let mut it = self.buf.iter();
                match self.parser.parse(&mut it) {
                    Ok(r) => {
                        let used = self.buf.len() - it.as_slice().len();
                        self.buf.drain(..used);
                        self.parser.reset();
                        return Ok(Reply {
                            code: r.code,
                            esc: r.esc,
                            text: r.message,
                        });
                    }
                    Err(smtp_proto::Error::NeedsMoreData { .. }) => self.buf.clear(),
                    Err(e) => {
                        self.buf.clear();
                        self.parser.reset();
                        return Err(ReadError::Protocol(format!("unparseable reply: {e:?}")));
                    }
                }
            }
            // read into the buffer's spare room: no read buffer lives in
            // the waiting connection's future (thousands of them wait)
            self.buf.reserve(READ_ROOM);
            match tokio::time::timeout_at(deadline, stream.read_buf(&mut self.buf)).await {
                Err(_) => return Err(ReadError::Timeout),
                Ok(Err(e)) => return Err(ReadError::Io(e.to_string())),
                Ok(Ok(0)) => return Err(ReadError::Closed),
                Ok(Ok(_)) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn keeps_pipelined_replies() {
        let wire: &[u8] = b"250 2.1.0 Ok\r\n550 5.1.1 <a@b> unknown\r\n451-4.3.0 try\r\n451 4.3.0 later\r\n354 go\r\n";
        let mut s = wire;
        let mut r = ReplyReader::default();
        let t = Duration::from_secs(1);
        assert_eq!(r.read(&mut s, t).await.unwrap().code, 250);
        let b = r.read(&mut s, t).await.unwrap();
        assert_eq!((b.code, b.enhanced().as_deref()), (550, Some("5.1.1")));
        let m = r.read(&mut s, t).await.unwrap();
        assert_eq!(m.code, 451);
        assert!(m.text.contains("try") && m.text.contains("later"));
        assert_eq!(r.read(&mut s, t).await.unwrap().code, 354);
        assert_eq!(r.read(&mut s, t).await, Err(ReadError::Closed));
    }

    #[tokio::test]
    async fn hostile_replies_are_errors() {
        let t = Duration::from_secs(1);
        for wire in [&b"hello there\r\n"[..], b"99 x\r\n", b"250"] {
            let mut s = wire;
            let mut r = ReplyReader::default();
            assert!(r.read(&mut s, t).await.is_err());
        }
        let long = format!("250-{}\r\n", "x".repeat(10_000)).repeat(3);
        let mut s = long.as_bytes();
        assert!(ReplyReader::default().read(&mut s, t).await.is_err());
    }
}
