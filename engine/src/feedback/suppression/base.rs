//! The base file: every entry as of the last compaction, sorted by key.
//!
//! Layout: a 40-byte header (`VOLSUPB1`, entry count, the hash key's check
//! value, the offset of the key table, CRC32 of the header's first 32
//! bytes, the key table and the block table), the records (see `record`)
//! in key order, then the key table (one `u64` per entry, ascending) and
//! the block table (the offset of every 64th record). Opening reads only
//! the header and the two tables (8.1 bytes per entry); a record is found
//! by reading its block of 64 records. The file is written once, to a temp
//! name, fsync'd and renamed: it is never torn, but may be damaged, so
//! every table and record is checked and a bad one is an error naming the
//! file and offset.

use std::fs::File;
use std::io::{BufReader, BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::error::SuppressionError;
use super::files::read_exact_at;
use super::index::Keys;
use super::record::{self, HEADER, Next, Record};

const MAGIC: &[u8; 8] = b"VOLSUPB1";
const HEAD: u64 = 40;
/// Records per block of the block table.
pub const BLOCK: usize = 64;

/// A loaded base file (or the empty base of generation 0).
#[derive(Debug, Default)]
pub struct Base {
    pub path: PathBuf,
    file: Option<File>,
    pub keys: Keys,
    blocks: Vec<u64>,
    records_end: u64,
}

/// Reads `n` little-endian words at `offset` (in chunks, so only the
/// result is held), feeding their bytes to `crc`.
fn read_words(
    file: &File,
    path: &Path,
    offset: u64,
    n: usize,
    crc: &mut crc32fast::Hasher,
) -> Result<Vec<u64>, SuppressionError> {
    let mut words: Vec<u64> = Vec::with_capacity(n);
    super::index::huge_pages(words.as_ptr().cast(), n * 8);
    let mut chunk = vec![0u8; 1 << 20];
    let mut at = offset;
    while words.len() < n {
        let k = (n - words.len()).min(chunk.len() / 8);
        let buf = &mut chunk[..k * 8];
        read_exact_at(file, path, buf, at)?;
        crc.update(buf);
        words.extend(buf.chunks_exact(8).map(|w| u64_at(w, 0)));
        at += buf.len() as u64;
    }
    Ok(words)
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(w)
}

impl Base {
    pub fn open(path: &Path, key_check: u64) -> Result<Base, SuppressionError> {
        let bad = |off, why: &str| SuppressionError::corrupt(path, off, why);
        let file = File::open(path).map_err(|e| SuppressionError::io(path, e))?;
        let len = file
            .metadata()
            .map_err(|e| SuppressionError::io(path, e))?
            .len();
        let mut head = [0u8; HEAD as usize];
        read_exact_at(&file, path, &mut head, 0)?;
        if &head[..8] != MAGIC {
            return Err(bad(0, "not a suppression base file"));
        }
        let count = u64_at(&head, 8);
        if u64_at(&head, 16) != key_check {
            return Err(bad(
                16,
                "written under another hash key (hash.key replaced?)",
            ));
        }
        let keys_at = u64_at(&head, 24);
        let blocks = count.div_ceil(BLOCK as u64);
        count
            .checked_add(blocks)
            .and_then(|n| n.checked_mul(8))
            .filter(|_| count <= u32::MAX as u64 && keys_at >= HEAD)
            .filter(|&t| keys_at.checked_add(t) == Some(len))
            .ok_or_else(|| bad(8, "entry count does not match the file size"))?;
        let mut crc = crc32fast::Hasher::new();
        crc.update(&head[..32]);
        let keys = read_words(&file, path, keys_at, count as usize, &mut crc)?;
        let table = read_words(&file, path, keys_at + count * 8, blocks as usize, &mut crc)?;
        if crc.finalize() != u32::from_le_bytes([head[32], head[33], head[34], head[35]]) {
            return Err(bad(32, "table checksum mismatch"));
        }
        if keys.windows(2).any(|w| w[0] >= w[1]) {
            return Err(bad(keys_at, "keys not in ascending order"));
        }
        let ordered = table.windows(2).all(|w| w[0] < w[1]);
        if !ordered
            || table.first().is_some_and(|&b| b != HEAD)
            || table.last().is_some_and(|&b| b >= keys_at)
        {
            return Err(bad(keys_at + count * 8, "block table out of order"));
        }
        Ok(Base {
            path: path.to_path_buf(),
            file: Some(file),
            keys: Keys::new(keys),
            blocks: table,
            records_end: keys_at,
        })
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Bytes of memory held.
    pub fn bytes(&self) -> usize {
        self.keys.bytes() + self.blocks.capacity() * 8
    }

    /// The record at position `i` (in key order).
    pub fn get(&self, i: usize) -> Result<Record, SuppressionError> {
        let path = &self.path;
        let (Some(file), Some(&start)) = (&self.file, self.blocks.get(i / BLOCK)) else {
            return Err(SuppressionError::corrupt(
                path,
                0,
                "record position out of range",
            ));
        };
        let end = self
            .blocks
            .get(i / BLOCK + 1)
            .copied()
            .unwrap_or(self.records_end);
        let mut block = vec![0u8; (end - start) as usize];
        read_exact_at(file, path, &mut block, start)?;
        let mut r = &block[..];
        let mut buf = Vec::new();
        for k in 0..=i % BLOCK {
            let at = start + (block.len() - r.len()) as u64;
            match record::next_frame(&mut r, &mut buf).map_err(|e| SuppressionError::io(path, e))? {
                Next::Frame if k == i % BLOCK => {
                    return record::decode(&buf[HEADER..])
                        .map_err(|w| SuppressionError::corrupt(path, at, w));
                }
                Next::Frame => {}
                Next::End => return Err(SuppressionError::corrupt(path, at, "block too short")),
                Next::Bad(w) => return Err(SuppressionError::corrupt(path, at, w)),
            }
        }
        Err(SuppressionError::corrupt(
            path,
            start,
            "record not found in its block",
        ))
    }

    /// Every record's frame in key order: `visit(position, offset, frame)`.
    pub fn scan(
        &self,
        mut visit: impl FnMut(usize, u64, &[u8]) -> Result<(), SuppressionError>,
    ) -> Result<(), SuppressionError> {
        let Some(file) = &self.file else {
            return Ok(());
        };
        let path = &self.path;
        let mut r = BufReader::with_capacity(1 << 20, file);
        r.seek(SeekFrom::Start(HEAD))
            .map_err(|e| SuppressionError::io(path, e))?;
        let mut buf = Vec::new();
        let mut at = HEAD;
        for i in 0..self.len() {
            match record::next_frame(&mut r, &mut buf).map_err(|e| SuppressionError::io(path, e))? {
                Next::Frame => visit(i, at, &buf)?,
                Next::End => return Err(SuppressionError::corrupt(path, at, "records end early")),
                Next::Bad(w) => return Err(SuppressionError::corrupt(path, at, w)),
            }
            at += buf.len() as u64;
        }
        Ok(())
    }
}

/// Writes a new base file (records pushed in ascending key order).
pub struct Writer {
    path: PathBuf,
    out: BufWriter<File>,
    pos: u64,
    keys: Vec<u64>,
    blocks: Vec<u64>,
}

impl Writer {
    pub fn create(path: &Path) -> Result<Writer, SuppressionError> {
        let file = File::create(path).map_err(|e| SuppressionError::io(path, e))?;
        let mut out = BufWriter::with_capacity(1 << 20, file);
        out.write_all(&[0; HEAD as usize])
            .map_err(|e| SuppressionError::io(path, e))?;
        Ok(Writer {
            path: path.to_path_buf(),
            out,
            pos: HEAD,
            keys: Vec::new(),
            blocks: Vec::new(),
        })
    }

    /// Appends one framed record whose key is above every key pushed so far.
    pub fn push(&mut self, key: u64, frame: &[u8]) -> Result<(), SuppressionError> {
        if self.keys.len() >= u32::MAX as usize {
            return Err(SuppressionError::TooMany(self.keys.len() as u64 + 1));
        }
        if self.keys.len().is_multiple_of(BLOCK) {
            self.blocks.push(self.pos);
        }
        self.out
            .write_all(frame)
            .map_err(|e| SuppressionError::io(&self.path, e))?;
        self.pos += frame.len() as u64;
        self.keys.push(key);
        Ok(())
    }

    /// Writes the tables and header and makes the file durable; returns
    /// the number of entries written.
    pub fn finish(mut self, key_check: u64) -> Result<u64, SuppressionError> {
        let io = |e| SuppressionError::io(&self.path, e);
        let mut head = [0u8; HEAD as usize];
        head[..8].copy_from_slice(MAGIC);
        head[8..16].copy_from_slice(&(self.keys.len() as u64).to_le_bytes());
        head[16..24].copy_from_slice(&key_check.to_le_bytes());
        head[24..32].copy_from_slice(&self.pos.to_le_bytes());
        let mut crc = crc32fast::Hasher::new();
        crc.update(&head[..32]);
        for w in self.keys.iter().chain(&self.blocks) {
            let b = w.to_le_bytes();
            crc.update(&b);
            self.out.write_all(&b).map_err(io)?;
        }
        head[32..36].copy_from_slice(&crc.finalize().to_le_bytes());
        let mut file = self.out.into_inner().map_err(|e| io(e.into_error()))?;
        file.seek(SeekFrom::Start(0)).map_err(io)?;
        file.write_all(&head).map_err(io)?;
        file.sync_all().map_err(io)?;
        Ok(self.keys.len() as u64)
    }
}
