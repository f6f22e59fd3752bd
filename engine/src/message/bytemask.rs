//! Where the bytes that shape a message's lines are, 64 at a time: CR,
//! LF, `.`, and the bytes `7bit` text cannot hold. A message's checks
//! (its line ends, its line lengths, lines that start with a dot) become
//! one pass of vector compares and bit tests, instead of a `memchr` pass
//! per byte of interest with a call per line (a ~20 KB body has some 300
//! lines). SSE2 on x86_64, where every CPU has it; a plain loop
//! elsewhere. Pure.

/// Bytes a block covers.
pub const BLOCK: usize = 64;

/// One block's masks: bit `i` stands for the block's byte `i`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Masks {
    pub cr: u64,
    pub lf: u64,
    pub dot: u64,
    /// Bytes clean text cannot hold: a control character other than TAB,
    /// CR and LF, DEL, or 8-bit.
    pub unusual: u64,
}

/// Whether clean text cannot hold `c` (see [`Masks::unusual`]).
#[inline(always)]
pub fn unusual(c: u8) -> bool {
    c >= 0x7F || (c < 0x20 && c != b'\t' && c != b'\n' && c != b'\r')
}

/// The masks of `b`'s blocks, each with its offset. A last block of
/// fewer than 64 bytes is padded with spaces (which set no bit).
pub fn blocks(b: &[u8]) -> impl Iterator<Item = (usize, Masks)> + '_ {
    let (whole, tail) = b.as_chunks::<BLOCK>();
    let tail = (!tail.is_empty()).then(|| {
        let mut padded = [b' '; BLOCK];
        padded[..tail.len()].copy_from_slice(tail);
        (b.len() - tail.len(), masks(&padded))
    });
    whole
        .iter()
        .enumerate()
        .map(|(i, block)| (i * BLOCK, masks(block)))
        .chain(tail)
}

/// The masks of one block.
#[cfg(target_arch = "x86_64")]
#[inline]
pub fn masks(block: &[u8; BLOCK]) -> Masks {
    // SAFETY: SSE2 is part of the x86_64 baseline: every x86_64 CPU has it.
    unsafe { sse2(block) }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sse2")]
#[inline]
fn sse2(block: &[u8; BLOCK]) -> Masks {
    use std::arch::x86_64::{
        __m128i, _mm_andnot_si128, _mm_cmpeq_epi8, _mm_cmplt_epi8, _mm_loadu_si128,
        _mm_movemask_epi8, _mm_or_si128, _mm_set1_epi8,
    };
    let splat = |c: u8| _mm_set1_epi8(c as i8);
    let (cr, lf, dot, tab, del, space) = (
        splat(b'\r'),
        splat(b'\n'),
        splat(b'.'),
        splat(b'\t'),
        splat(0x7F),
        splat(b' '),
    );
    let bits = |v: __m128i| u64::from(_mm_movemask_epi8(v) as u16);
    let mut m = Masks::default();
    for (i, lane) in block.chunks_exact(16).enumerate() {
        // SAFETY: `lane` is 16 readable bytes, and an unaligned load reads
        // exactly those.
        let v = unsafe { _mm_loadu_si128(lane.as_ptr().cast()) };
        let (is_cr, is_lf) = (_mm_cmpeq_epi8(v, cr), _mm_cmpeq_epi8(v, lf));
        // signed: 8-bit bytes are negative, so below a space too
        let control = _mm_andnot_si128(
            _mm_or_si128(_mm_or_si128(is_cr, is_lf), _mm_cmpeq_epi8(v, tab)),
            _mm_cmplt_epi8(v, space),
        );
        let shift = 16 * i;
        m.cr |= bits(is_cr) << shift;
        m.lf |= bits(is_lf) << shift;
        m.dot |= bits(_mm_cmpeq_epi8(v, dot)) << shift;
        m.unusual |= bits(_mm_or_si128(control, _mm_cmpeq_epi8(v, del))) << shift;
    }
    m
}

/// The masks of one block.
#[cfg(not(target_arch = "x86_64"))]
pub fn masks(block: &[u8; BLOCK]) -> Masks {
    scalar(block)
}

/// The masks of one block, a byte at a time (the reference the vector
/// form is tested against).
#[cfg_attr(target_arch = "x86_64", allow(dead_code))]
fn scalar(block: &[u8; BLOCK]) -> Masks {
    let mut m = Masks::default();
    for (i, &c) in block.iter().enumerate() {
        let bit = 1u64 << i;
        m.cr |= if c == b'\r' { bit } else { 0 };
        m.lf |= if c == b'\n' { bit } else { 0 };
        m.dot |= if c == b'.' { bit } else { 0 };
        m.unusual |= if unusual(c) { bit } else { 0 };
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_byte_in_every_lane() {
        for at in 0..BLOCK {
            for c in 0..=255u8 {
                let mut block = [b'a'; BLOCK];
                block[at] = c;
                assert_eq!(masks(&block), scalar(&block), "{c:#04x} at {at}");
            }
        }
    }

    #[test]
    fn mixed_blocks_match_the_reference() {
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        for _ in 0..2_000 {
            let mut block = [0u8; BLOCK];
            for c in block.iter_mut() {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                *c = b"\r\n.\t\0 a~\x7F\x80\xFF\x1F"[(x % 12) as usize];
            }
            assert_eq!(masks(&block), scalar(&block));
        }
    }

    #[test]
    fn blocks_cover_the_text_once_and_pad_the_last() {
        for len in [0, 1, 63, 64, 65, 128, 130] {
            let b: Vec<u8> = (0..len)
                .map(|i| if i % 5 == 4 { b'\n' } else { b'x' })
                .collect();
            let seen: Vec<usize> = blocks(&b)
                .flat_map(|(at, m)| {
                    let mut lf = m.lf;
                    std::iter::from_fn(move || {
                        (lf != 0).then(|| {
                            let i = at + lf.trailing_zeros() as usize;
                            lf &= lf - 1;
                            i
                        })
                    })
                })
                .collect();
            let want: Vec<usize> = (0..len).filter(|i| i % 5 == 4).collect();
            assert_eq!(seen, want, "{len} bytes");
            assert_eq!(blocks(&b).count(), len.div_ceil(BLOCK));
        }
    }
}
