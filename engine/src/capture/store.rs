//! One message of `volley sink` on its way in: its DATA bytes are
//! unstuffed by smtp-proto's [`DataReceiver`], checked against
//! [`MAX_MESSAGE`] and streamed to a Maildir `tmp/` file as they arrive
//! (renamed into `new/` at the end of data), or only counted when there is
//! no Maildir.
//!
//! Invariant: whatever the message's size, it holds at most the bytes of
//! the read being fed (plus one carriage return, which the receiver takes
//! back when a line feed ends the data) in memory. A message over the cap is
//! read to its end without being stored; its `tmp/` file, and that of a
//! message whose connection ends mid-data, is removed. Exposure: the bytes
//! are hostile client input; they are only copied.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use smtp_proto::request::receiver::DataReceiver;

use super::MAX_MESSAGE;

/// How a message ended.
#[derive(Debug)]
pub enum Finished {
    /// Stored (or counted); its size in bytes.
    Stored(usize),
    /// Over [`MAX_MESSAGE`]: not stored.
    TooBig,
    /// Writing it to the Maildir failed: not stored.
    Failed(std::io::Error),
}

/// A message's `tmp/` file and where it goes when complete.
struct Tmp {
    file: File,
    tmp: PathBuf,
    new: PathBuf,
}

/// A message being received.
pub struct Incoming {
    rx: DataReceiver,
    /// Unstuffed bytes of the current read not yet written.
    buf: Vec<u8>,
    size: usize,
    too_big: bool,
    out: Option<Tmp>,
    failed: Option<std::io::Error>,
}

impl Incoming {
    /// Starts a message: with a Maildir, creates `tmp/<name>` and writes
    /// the `Return-Path` and `Delivered-To` lines; without, only counts.
    pub fn start(
        maildir: Option<&Path>,
        name: &str,
        from: &str,
        rcpts: &[String],
    ) -> std::io::Result<Incoming> {
        let out = match maildir {
            Some(dir) => {
                let tmp = dir.join("tmp").join(name);
                let mut file = File::options().write(true).create_new(true).open(&tmp)?;
                let mut head = format!("Return-Path: <{from}>\r\n");
                for r in rcpts {
                    head.push_str(&format!("Delivered-To: {r}\r\n"));
                }
                if let Err(e) = file.write_all(head.as_bytes()) {
                    let _ = std::fs::remove_file(&tmp);
                    return Err(e);
                }
                Some(Tmp {
                    file,
                    tmp,
                    new: dir.join("new").join(name),
                })
            }
            None => None,
        };
        Ok(Incoming {
            rx: DataReceiver::new(),
            buf: Vec::new(),
            size: 0,
            too_big: false,
            out,
            failed: None,
        })
    }

    /// Takes DATA bytes from `bytes` (up to the end of data); true when the
    /// end of data was reached.
    pub fn feed(&mut self, bytes: &mut std::slice::Iter<'_, u8>) -> bool {
        let done = self.rx.ingest(bytes, &mut self.buf);
        // a trailing CR stays: if a LF ends the data next, the receiver
        // takes it back out of `buf`
        let keep = usize::from(!done && self.buf.last() == Some(&b'\r'));
        let n = self.buf.len() - keep;
        self.size += n;
        if self.size > MAX_MESSAGE {
            self.too_big = true;
        }
        if !self.too_big
            && self.failed.is_none()
            && let Some(t) = &mut self.out
            && let Err(e) = t.file.write_all(&self.buf[..n])
        {
            self.failed = Some(e);
        }
        self.buf.drain(..n);
        done
    }

    /// Bytes held in memory now (the bound the module promises).
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Ends the message after [`Incoming::feed`] returned true: moves it
    /// into `new/` (Maildir) unless it was too big or could not be written.
    pub fn finish(mut self) -> Finished {
        let out = self.out.take();
        if self.too_big || self.failed.is_some() {
            if let Some(t) = out {
                let _ = std::fs::remove_file(&t.tmp);
            }
            return match self.failed.take() {
                Some(e) if !self.too_big => Finished::Failed(e),
                _ => Finished::TooBig,
            };
        }
        if let Some(t) = out
            && let Err(e) = std::fs::rename(&t.tmp, &t.new)
        {
            let _ = std::fs::remove_file(&t.tmp);
            return Finished::Failed(e);
        }
        Finished::Stored(self.size)
    }
}

impl Drop for Incoming {
    /// A message left unfinished (the connection ended) leaves no file.
    fn drop(&mut self) {
        if let Some(t) = self.out.take() {
            let _ = std::fs::remove_file(&t.tmp);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Dot-stuffed DATA of `body` (CRLF lines), with its terminator.
    fn stuffed(body: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        for line in body.split_inclusive(|&b| b == b'\n') {
            if line.first() == Some(&b'.') {
                out.push(b'.');
            }
            out.extend_from_slice(line);
        }
        out.extend_from_slice(b".\r\n");
        out
    }

    fn maildir() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for sub in ["tmp", "new", "cur"] {
            std::fs::create_dir(dir.path().join(sub)).unwrap();
        }
        dir
    }

    #[test]
    fn any_split_of_the_data_stores_the_same_message() {
        let body = b"Subject: x\r\n\r\n.leading dot\r\n..two\r\nend\r\n.\r\nnot the end\r\n";
        let data = stuffed(body);
        let dir = maildir();
        for size in 1..=data.len() {
            let name = format!("m{size}");
            let mut m =
                Incoming::start(Some(dir.path()), &name, "a@x.test", &["b@y.test".into()]).unwrap();
            let mut done = false;
            let chunks: Vec<&[u8]> = data.chunks(size).collect();
            for (i, c) in chunks.iter().enumerate() {
                let mut it = c.iter();
                done = m.feed(&mut it);
                assert!(m.buffered() <= 1, "holds no more than a CR between reads");
                if done {
                    assert!(it.as_slice().is_empty());
                    assert_eq!(i, chunks.len() - 1);
                }
            }
            assert!(done, "chunks of {size}");
            assert!(matches!(m.finish(), Finished::Stored(n) if n == body.len()));
            let stored = std::fs::read(dir.path().join("new").join(&name)).unwrap();
            let mut want = b"Return-Path: <a@x.test>\r\nDelivered-To: b@y.test\r\n".to_vec();
            want.extend_from_slice(body);
            assert_eq!(
                String::from_utf8_lossy(&stored),
                String::from_utf8_lossy(&want),
                "chunks of {size}"
            );
        }
        assert_eq!(
            std::fs::read_dir(dir.path().join("tmp")).unwrap().count(),
            0
        );
    }

    #[test]
    fn a_message_over_the_cap_is_read_to_its_end_and_not_stored() {
        let dir = maildir();
        let mut m = Incoming::start(Some(dir.path()), "big", "", &["b@y.test".into()]).unwrap();
        let line = vec![b'a'; 1 << 20];
        let mut line = line;
        line.extend_from_slice(b"\r\n");
        for _ in 0..(MAX_MESSAGE >> 20) + 1 {
            let mut it = line.iter();
            assert!(!m.feed(&mut it));
            assert!(m.buffered() <= 1);
        }
        let mut it = b".\r\n".iter();
        assert!(m.feed(&mut it));
        assert!(matches!(m.finish(), Finished::TooBig));
        assert_eq!(
            std::fs::read_dir(dir.path().join("new")).unwrap().count(),
            0
        );
        assert_eq!(
            std::fs::read_dir(dir.path().join("tmp")).unwrap().count(),
            0
        );
    }

    #[test]
    fn an_unfinished_message_leaves_no_file() {
        let dir = maildir();
        let mut m = Incoming::start(Some(dir.path()), "cut", "", &["b@y.test".into()]).unwrap();
        let mut it = b"half a message\r\n".iter();
        assert!(!m.feed(&mut it));
        drop(m);
        assert_eq!(
            std::fs::read_dir(dir.path().join("tmp")).unwrap().count(),
            0
        );
        assert_eq!(
            std::fs::read_dir(dir.path().join("new")).unwrap().count(),
            0
        );
    }

    #[test]
    fn without_a_maildir_messages_are_counted() {
        let mut m = Incoming::start(None, "-", "", &[]).unwrap();
        let mut it = b"hello\r\n.\r\n".iter();
        assert!(m.feed(&mut it));
        assert!(matches!(m.finish(), Finished::Stored(7)));
    }
}
