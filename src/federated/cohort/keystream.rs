//! The key stream of burn `Flex`'s generator (rand's `StdRng`: ChaCha with 12 rounds, a 64-bit
//! block counter and a zero stream id), sixteen blocks at a time.
//!
//! rand's generator computes four blocks per call with AVX2. Dropout masks need 8 bytes of
//! it per masked element, so at the paper's CIFAR-10 scale the generator was 40 % of a cohort
//! round. [`KeyStream`] gives the same words, in the same order: it lays sixteen blocks out
//! one per vector lane (no shuffles between rounds), uses AVX-512 where the CPU has it and
//! portable code elsewhere, and compares each word with the Bernoulli threshold while it is
//! still in cache. The tests check it word for word against `StdRng` on both paths.

use rand::SeedableRng;

/// Blocks computed together, one per lane.
const LANES: usize = 16;
/// `u64` words in one group of [`LANES`] blocks (8 per 64-byte block).
const GROUP_WORDS: usize = LANES * 8;
/// ChaCha's constant row, "expand 32-byte k".
const SIGMA: [u32; 4] = [0x6170_7865, 0x3320_646e, 0x7962_2d32, 0x6b20_6574];
/// Double rounds of ChaCha12.
const DOUBLE_ROUNDS: usize = 6;

/// The generator's 32-byte seed, taken from rand's own `seed_from_u64` so the key is the one
/// `StdRng::seed_from_u64` uses.
struct Seed([u8; 32]);

impl SeedableRng for Seed {
    type Seed = [u8; 32];

    fn from_seed(seed: [u8; 32]) -> Self {
        Self(seed)
    }
}

/// The `u64` draws of `StdRng::seed_from_u64(seed)`, in order.
#[derive(Debug, Clone)]
pub(super) struct KeyStream {
    key: [u32; 8],
    /// Counter of the first block of the next group.
    next_block: u64,
    /// The current group's words, in stream order.
    words: [u64; GROUP_WORDS],
    /// Words of `words` already drawn.
    used: usize,
    /// Whether the AVX-512 path may run (tests turn it off to check the portable one).
    vectors: bool,
}

impl KeyStream {
    /// The stream of `StdRng::seed_from_u64(seed)`.
    pub(super) fn new(seed: u64) -> Self {
        let Seed(bytes) = Seed::seed_from_u64(seed);
        let mut key = [0u32; 8];
        for (word, chunk) in key.iter_mut().zip(bytes.chunks_exact(4)) {
            *word = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        }
        Self {
            key,
            next_block: 0,
            words: [0; GROUP_WORDS],
            used: GROUP_WORDS,
            vectors: true,
        }
    }

    /// Draws `out.len()` words: `out[i]` is `hit` where the word is below `threshold`, else 0.
    pub(super) fn fill_below(&mut self, out: &mut [f32], threshold: u64, hit: f32) {
        #[cfg(target_arch = "x86_64")]
        if self.vectors && std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has AVX-512F, the only feature `fill_avx512` is compiled for.
            unsafe { avx512::fill_below(self, out, threshold, hit) };
            return;
        }
        fill_below_with(self, out, threshold, hit, portable_group);
    }

    /// The next `out.len()` words themselves (for the tests).
    #[cfg(test)]
    fn draw(&mut self, out: &mut [u64]) {
        for word in out {
            if self.used == GROUP_WORDS {
                self.refill(portable_group);
            }
            *word = self.words[self.used];
            self.used += 1;
        }
    }

    /// Computes the next group into `words` with `group`.
    #[inline(always)]
    fn refill(&mut self, group: impl Fn(&[u32; 8], u64, &mut [u64; GROUP_WORDS])) {
        group(&self.key, self.next_block, &mut self.words);
        self.next_block = self.next_block.wrapping_add(LANES as u64);
        self.used = 0;
    }
}

/// [`KeyStream::fill_below`] with `group` computing the blocks.
#[inline(always)]
fn fill_below_with(
    stream: &mut KeyStream,
    out: &mut [f32],
    threshold: u64,
    hit: f32,
    group: impl Fn(&[u32; 8], u64, &mut [u64; GROUP_WORDS]) + Copy,
) {
    let mut done = 0;
    while done < out.len() {
        if stream.used == GROUP_WORDS {
            stream.refill(group);
        }
        let take = (out.len() - done).min(GROUP_WORDS - stream.used);
        let words = &stream.words[stream.used..stream.used + take];
        for (value, &word) in out[done..done + take].iter_mut().zip(words) {
            *value = if word < threshold { hit } else { 0.0 };
        }
        done += take;
        stream.used += take;
    }
}

/// The initial state of the group starting at block `first`: row `i` across the lanes.
#[inline(always)]
fn initial_rows(key: &[u32; 8], first: u64) -> [[u32; LANES]; 16] {
    let mut rows = [[0u32; LANES]; 16];
    for (row, &sigma) in rows.iter_mut().zip(&SIGMA) {
        *row = [sigma; LANES];
    }
    for (row, &word) in rows[4..12].iter_mut().zip(key) {
        *row = [word; LANES];
    }
    for lane in 0..LANES {
        let block = first.wrapping_add(lane as u64);
        rows[12][lane] = block as u32;
        rows[13][lane] = (block >> 32) as u32;
    }
    rows
}

/// Writes the finished rows (`rows[i][lane]`, word `i` of block `lane`) as `u64` words in stream
/// order: block after block, two little-endian words per `u64`.
#[inline(always)]
fn store_in_stream_order(rows: &[[u32; LANES]; 16], out: &mut [u64; GROUP_WORDS]) {
    for lane in 0..LANES {
        for pair in 0..8 {
            out[lane * 8 + pair] =
                u64::from(rows[2 * pair][lane]) | (u64::from(rows[2 * pair + 1][lane]) << 32);
        }
    }
}

/// One double round of `quarter` (rows `a, b, c, d`): the columns, then the diagonals. The
/// calls are written out so every row index is a constant and the rows stay in registers.
#[inline(always)]
fn double_round<T>(x: &mut [T; 16], quarter: impl Fn(&mut [T; 16], usize, usize, usize, usize)) {
    quarter(x, 0, 4, 8, 12);
    quarter(x, 1, 5, 9, 13);
    quarter(x, 2, 6, 10, 14);
    quarter(x, 3, 7, 11, 15);
    quarter(x, 0, 5, 10, 15);
    quarter(x, 1, 6, 11, 12);
    quarter(x, 2, 7, 8, 13);
    quarter(x, 3, 4, 9, 14);
}

/// One group of blocks in plain Rust.
fn portable_group(key: &[u32; 8], first: u64, out: &mut [u64; GROUP_WORDS]) {
    let init = initial_rows(key, first);
    let mut x = init;
    for _ in 0..DOUBLE_ROUNDS {
        double_round(&mut x, |x, a, b, c, d| {
            for lane in 0..LANES {
                x[a][lane] = x[a][lane].wrapping_add(x[b][lane]);
                x[d][lane] = (x[d][lane] ^ x[a][lane]).rotate_left(16);
                x[c][lane] = x[c][lane].wrapping_add(x[d][lane]);
                x[b][lane] = (x[b][lane] ^ x[c][lane]).rotate_left(12);
                x[a][lane] = x[a][lane].wrapping_add(x[b][lane]);
                x[d][lane] = (x[d][lane] ^ x[a][lane]).rotate_left(8);
                x[c][lane] = x[c][lane].wrapping_add(x[d][lane]);
                x[b][lane] = (x[b][lane] ^ x[c][lane]).rotate_left(7);
            }
        });
    }
    for (row, start) in x.iter_mut().zip(&init) {
        for (word, &s) in row.iter_mut().zip(start) {
            *word = word.wrapping_add(s);
        }
    }
    store_in_stream_order(&x, out);
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::{
        __m512i, _mm512_add_epi32, _mm512_loadu_si512, _mm512_rol_epi32, _mm512_storeu_si512,
        _mm512_xor_si512,
    };

    use super::{DOUBLE_ROUNDS, GROUP_WORDS, KeyStream, LANES, double_round, initial_rows};

    /// [`KeyStream::fill_below`] compiled for AVX-512 (the comparisons vectorise too).
    #[target_feature(enable = "avx512f")]
    pub(super) fn fill_below(stream: &mut KeyStream, out: &mut [f32], threshold: u64, hit: f32) {
        // The closure inherits this function's target features, so `group` is safe to call.
        super::fill_below_with(stream, out, threshold, hit, |key, first, words| {
            group(key, first, words)
        });
    }

    /// Rows as vectors, one block per lane.
    #[target_feature(enable = "avx512f")]
    fn load(rows: &[[u32; LANES]; 16]) -> [__m512i; 16] {
        // SAFETY: each row is 64 readable bytes; the load is unaligned.
        std::array::from_fn(|i| unsafe { _mm512_loadu_si512(rows[i].as_ptr().cast()) })
    }

    /// One group of blocks with AVX-512.
    #[target_feature(enable = "avx512f")]
    fn group(key: &[u32; 8], first: u64, out: &mut [u64; GROUP_WORDS]) {
        let init = load(&initial_rows(key, first));
        let mut x = init;
        for _ in 0..DOUBLE_ROUNDS {
            double_round(&mut x, |x, a, b, c, d| {
                x[a] = _mm512_add_epi32(x[a], x[b]);
                x[d] = _mm512_rol_epi32::<16>(_mm512_xor_si512(x[d], x[a]));
                x[c] = _mm512_add_epi32(x[c], x[d]);
                x[b] = _mm512_rol_epi32::<12>(_mm512_xor_si512(x[b], x[c]));
                x[a] = _mm512_add_epi32(x[a], x[b]);
                x[d] = _mm512_rol_epi32::<8>(_mm512_xor_si512(x[d], x[a]));
                x[c] = _mm512_add_epi32(x[c], x[d]);
                x[b] = _mm512_rol_epi32::<7>(_mm512_xor_si512(x[b], x[c]));
            });
        }
        let mut rows = [[0u32; LANES]; 16];
        for ((row, v), s) in rows.iter_mut().zip(x).zip(init) {
            // SAFETY: `row` is 64 writable bytes; the store is unaligned.
            unsafe { _mm512_storeu_si512(row.as_mut_ptr().cast(), _mm512_add_epi32(v, s)) };
        }
        super::store_in_stream_order(&rows, out);
    }
}

#[cfg(test)]
mod tests {
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    use super::*;

    fn reference(seed: u64, len: usize) -> Vec<u64> {
        let mut rng = StdRng::seed_from_u64(seed);
        (0..len).map(|_| rng.next_u64()).collect()
    }

    #[test]
    fn words_equal_std_rng_draws() {
        for seed in [0, 7, u64::MAX] {
            let expected = reference(seed, 5 * GROUP_WORDS + 3);
            let mut words = vec![0; expected.len()];
            KeyStream::new(seed).draw(&mut words);
            assert_eq!(words, expected, "seed {seed}");
        }
    }

    #[test]
    fn both_paths_give_std_rng_masks_across_group_edges() {
        let threshold = u64::MAX / 3;
        // Odd lengths leave a group part-used between calls.
        let lens = [3, 1001, 128, 7, 4096, 1];
        let total: usize = lens.iter().sum();
        let expected: Vec<f32> = reference(42, total)
            .into_iter()
            .map(|w| if w < threshold { 2.5 } else { 0.0 })
            .collect();
        for vectors in [true, false] {
            let mut stream = KeyStream::new(42);
            stream.vectors = vectors;
            let mut masks = Vec::new();
            for len in lens {
                let mut out = vec![-1.0; len];
                stream.fill_below(&mut out, threshold, 2.5);
                masks.extend(out);
            }
            assert_eq!(masks, expected, "vectors: {vectors}");
        }
    }

    #[test]
    fn the_counter_carries_into_its_high_word() {
        // A group straddling block 2^32, against chacha20's generator moved there.
        let first = (1u64 << 32) - 8;
        let mut rng = chacha20::ChaCha12Rng::seed_from_u64(5);
        rng.set_block_pos(first);
        let expected: Vec<f32> = (0..GROUP_WORDS)
            .map(|_| {
                if rng.next_u64() < u64::MAX / 2 {
                    1.0
                } else {
                    0.0
                }
            })
            .collect();
        for vectors in [true, false] {
            let mut stream = KeyStream::new(5);
            stream.vectors = vectors;
            stream.next_block = first;
            let mut out = vec![-1.0; GROUP_WORDS];
            stream.fill_below(&mut out, u64::MAX / 2, 1.0);
            assert_eq!(out, expected, "vectors: {vectors}");
        }
    }
}
