//! Size-based rotation of a JSONL event file, kept exactly once across
//! crashes. Once the file has reached `rotate_bytes` (checked before each
//! batch), it is renamed to `FILE.N` (N = its generation: 0, 1, 2, …; the
//! highest is the newest) and a new `FILE` begins; only the newest `keep`
//! rotated files stay.
//!
//! The sink's state stored with its cursor is the live file's generation
//! and length ([`State`]). A rotation happens only at a batch boundary, so
//! at most one rotation can lie between the stored cursor and a crash:
//! then the rotated file ends exactly at the stored length, and the new
//! live file holds only events published again after the restart (cut to
//! empty). The live file's generation is one more than the newest rotated
//! file's (0 when none), so it is known from the directory alone.
//! Exposure: file names in the event file's directory (any other name is
//! left alone).

use std::path::{Path, PathBuf};

/// Bits of the state holding the length (16 TiB).
const LEN_BITS: u32 = 44;

/// A live file's generation and length, as one `u64`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct State {
    pub generation: u64,
    pub len: u64,
}

impl State {
    pub fn encode(self) -> u64 {
        (self.generation << LEN_BITS) | (self.len & ((1 << LEN_BITS) - 1))
    }

    pub fn decode(v: u64) -> State {
        State {
            generation: v >> LEN_BITS,
            len: v & ((1 << LEN_BITS) - 1),
        }
    }
}

/// Rotation settings (`rotate_bytes` 0: never).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rotation {
    pub rotate_bytes: u64,
    pub keep: u32,
}

impl Rotation {
    pub const OFF: Rotation = Rotation {
        rotate_bytes: 0,
        keep: 1,
    };
}

/// The name of `path`'s rotated file of `generation`.
pub fn rotated(path: &Path, generation: u64) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".{generation}"));
    path.with_file_name(name)
}

/// The generations of `path`'s rotated files, ascending.
pub fn generations(path: &Path) -> Vec<u64> {
    let (Some(dir), Some(base)) = (path.parent(), path.file_name()) else {
        return Vec::new();
    };
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let base = base.to_string_lossy().to_string();
    let mut out: Vec<u64> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().to_string();
            let n = name.strip_prefix(&base)?.strip_prefix('.')?;
            (!n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
                .then(|| n.parse().ok())
                .flatten()
        })
        .collect();
    out.sort_unstable();
    out
}

/// The live file's generation: one more than the newest rotated file's.
pub fn live_generation(path: &Path) -> u64 {
    generations(path).last().map_or(0, |g| g + 1)
}

/// What to do with the live file (generation `live`, `len` bytes) to go
/// back to the stored `state`: the length to cut it to, or `None` when the
/// files do not match the state (appending is all that is safe).
pub fn resume_len(state: State, live: u64, len: u64) -> Option<u64> {
    if state.generation == live {
        Some(len.min(state.len))
    } else if state.generation + 1 == live {
        // rotated after the cursor: everything in the new file comes again
        Some(0)
    } else {
        None
    }
}

/// Removes rotated files beyond the newest `keep`.
pub fn prune(path: &Path, keep: u32) {
    let gens = generations(path);
    let excess = gens.len().saturating_sub(keep as usize);
    for g in &gens[..excess] {
        let p = rotated(path, *g);
        if let Err(e) = std::fs::remove_file(&p) {
            tracing::warn!(file = %p.display(), error = %e, "cannot remove an old rotated event file");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_round_trip() {
        for s in [
            State {
                generation: 0,
                len: 0,
            },
            State {
                generation: 3,
                len: 12_345,
            },
            State {
                generation: 1 << 19,
                len: (1 << 44) - 1,
            },
        ] {
            assert_eq!(State::decode(s.encode()), s);
        }
        // a state from before rotation existed is generation 0
        assert_eq!(
            State::decode(777),
            State {
                generation: 0,
                len: 777
            }
        );
    }

    #[test]
    fn generations_come_from_the_rotated_names() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("events.jsonl");
        assert_eq!(live_generation(&p), 0);
        for name in [
            "events.jsonl",
            "events.jsonl.0",
            "events.jsonl.2",
            "events.jsonl.x",
            "events.jsonl.",
            "other.jsonl.9",
        ] {
            std::fs::write(d.path().join(name), "").unwrap();
        }
        assert_eq!(generations(&p), vec![0, 2]);
        assert_eq!(live_generation(&p), 3);
        prune(&p, 1);
        assert_eq!(generations(&p), vec![2]);
        assert!(d.path().join("events.jsonl.x").exists());
    }

    #[test]
    fn resuming_cuts_back_to_the_stored_state() {
        let st = |generation, len| State { generation, len };
        assert_eq!(resume_len(st(2, 100), 2, 150), Some(100));
        assert_eq!(resume_len(st(2, 100), 2, 80), Some(80));
        assert_eq!(resume_len(st(1, 100), 2, 40), Some(0));
        assert_eq!(resume_len(st(0, 100), 2, 40), None);
        assert_eq!(resume_len(st(5, 100), 2, 40), None);
    }
}
