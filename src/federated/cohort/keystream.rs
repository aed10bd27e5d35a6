//! The key stream of burn `Flex`'s generator (rand's `StdRng`: ChaCha with 12 rounds, a 64-bit
//! block counter and a zero stream id), drawn for dropout masks.
//!
//! Dropout needs one `u64` of that stream per masked element. rand's generator computes four
//! blocks per call with AVX2, and at the paper's CIFAR-10 scale it was 40 % of a cohort round.
//! Where the CPU has AVX-512, [`KeyStream`] computes sixteen blocks at once instead, one per
//! vector lane (so no shuffles between rounds), and compares each word with the Bernoulli
//! threshold while it is still in cache: 2.7x faster on the Intel machine of BENCHMARKS.md.
//! Elsewhere it draws from rand's generator itself. Both give the same words in the same
//! order; the tests check them word for word against `StdRng`.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// The `u64` draws of `StdRng::seed_from_u64(seed)`, in order.
#[derive(Debug)]
pub(super) struct KeyStream(Source);

/// Where a [`KeyStream`]'s words come from.
#[derive(Debug)]
enum Source {
    /// Sixteen blocks at a time with AVX-512.
    #[cfg(target_arch = "x86_64")]
    Lanes(Box<avx512::Lanes>),
    /// rand's generator, and the bytes of the current draw (8 a word).
    Rand { rng: Box<StdRng>, bytes: Vec<u8> },
}

impl KeyStream {
    /// The stream of `StdRng::seed_from_u64(seed)`, computed the fastest way this CPU allows.
    pub(super) fn new(seed: u64) -> Self {
        #[cfg(target_arch = "x86_64")]
        if let Some(lanes) = avx512::Lanes::new(seed) {
            return Self(Source::Lanes(Box::new(lanes)));
        }
        Self::from_rand(seed)
    }

    /// The same stream drawn from rand's generator.
    fn from_rand(seed: u64) -> Self {
        Self(Source::Rand {
            rng: Box::new(StdRng::seed_from_u64(seed)),
            bytes: Vec::new(),
        })
    }

    /// Draws `out.len()` words: `out[i]` is `hit` where the word is below `threshold`, else 0.
    pub(super) fn fill_below(&mut self, out: &mut [f32], threshold: u64, hit: f32) {
        match &mut self.0 {
            #[cfg(target_arch = "x86_64")]
            Source::Lanes(lanes) => lanes.fill_below(out, threshold, hit),
            Source::Rand { rng, bytes } => {
                // The generator's `u64`s are its little-endian key stream 8 bytes at a time:
                // one bulk draw and branch-free comparisons beat a draw per element.
                bytes.resize(out.len() * 8, 0);
                rng.fill_bytes(bytes);
                for (value, word) in out.iter_mut().zip(bytes.chunks_exact(8)) {
                    let mut le = [0u8; 8];
                    le.copy_from_slice(word);
                    *value = if u64::from_le_bytes(le) < threshold {
                        hit
                    } else {
                        0.0
                    };
                }
            }
        }
    }
}

/// The generator's 32-byte seed, taken from rand's own `seed_from_u64` so that the key is the
/// one `StdRng::seed_from_u64` uses.
#[cfg(target_arch = "x86_64")]
struct Seed([u8; 32]);

#[cfg(target_arch = "x86_64")]
impl SeedableRng for Seed {
    type Seed = [u8; 32];

    fn from_seed(seed: [u8; 32]) -> Self {
        Self(seed)
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::{
        __m512i, _mm512_add_epi32, _mm512_loadu_si512, _mm512_rol_epi32, _mm512_storeu_si512,
        _mm512_xor_si512,
    };

    use rand::SeedableRng;

    use super::Seed;

    /// Blocks computed together, one per lane.
    const LANES: usize = 16;
    /// `u64` words in one group of [`LANES`] blocks (8 per 64-byte block).
    pub(super) const GROUP_WORDS: usize = LANES * 8;
    /// ChaCha's constant row, "expand 32-byte k".
    const SIGMA: [u32; 4] = [0x6170_7865, 0x3320_646e, 0x7962_2d32, 0x6b20_6574];
    /// Double rounds of ChaCha12.
    const DOUBLE_ROUNDS: usize = 6;

    /// The stream's state: the key, the next block, and the current group's words.
    #[derive(Debug)]
    pub(in super::super) struct Lanes {
        key: [u32; 8],
        /// Counter of the first block of the next group.
        pub(super) next_block: u64,
        /// The current group's words, in stream order.
        words: [u64; GROUP_WORDS],
        /// Words of `words` already drawn.
        used: usize,
    }

    impl Lanes {
        /// The stream of `StdRng::seed_from_u64(seed)`, or `None` without AVX-512F.
        pub(super) fn new(seed: u64) -> Option<Self> {
            if !std::arch::is_x86_feature_detected!("avx512f") {
                return None;
            }
            let Seed(bytes) = Seed::seed_from_u64(seed);
            let mut key = [0u32; 8];
            for (word, chunk) in key.iter_mut().zip(bytes.chunks_exact(4)) {
                *word = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
            }
            Some(Self {
                key,
                next_block: 0,
                words: [0; GROUP_WORDS],
                used: GROUP_WORDS,
            })
        }

        /// [`super::KeyStream::fill_below`].
        pub(super) fn fill_below(&mut self, out: &mut [f32], threshold: u64, hit: f32) {
            // SAFETY: `new` built `self` only on a CPU with AVX-512F, the only feature
            // `fill_below_avx512` is compiled for.
            unsafe { self.fill_below_avx512(out, threshold, hit) }
        }

        /// The draws and comparisons, compiled for AVX-512 (the comparisons vectorise too).
        #[target_feature(enable = "avx512f")]
        fn fill_below_avx512(&mut self, out: &mut [f32], threshold: u64, hit: f32) {
            let mut done = 0;
            while done < out.len() {
                if self.used == GROUP_WORDS {
                    group(&self.key, self.next_block, &mut self.words);
                    self.next_block = self.next_block.wrapping_add(LANES as u64);
                    self.used = 0;
                }
                let take = (out.len() - done).min(GROUP_WORDS - self.used);
                let words = &self.words[self.used..self.used + take];
                for (value, &word) in out[done..done + take].iter_mut().zip(words) {
                    *value = if word < threshold { hit } else { 0.0 };
                }
                done += take;
                self.used += take;
            }
        }
    }

    /// Blocks `first .. first + 16` in stream order, as `u64` words: block after block, two
    /// little-endian words per `u64`.
    #[target_feature(enable = "avx512f")]
    fn group(key: &[u32; 8], first: u64, out: &mut [u64; GROUP_WORDS]) {
        // Row `i` holds word `i` of every block, block `lane` in lane `lane`.
        let mut rows = [[0u32; LANES]; 16];
        for (row, &sigma) in rows.iter_mut().zip(&SIGMA) {
            *row = [sigma; LANES];
        }
        for (row, &word) in rows[4..12].iter_mut().zip(key) {
            *row = [word; LANES];
        }
        let [.., low, high, _, _] = &mut rows;
        for (lane, (low, high)) in low.iter_mut().zip(high.iter_mut()).enumerate() {
            let block = first.wrapping_add(lane as u64);
            *low = block as u32;
            *high = (block >> 32) as u32;
        }
        // SAFETY: each row is 64 readable bytes; the load is unaligned.
        let init: [__m512i; 16] =
            std::array::from_fn(|i| unsafe { _mm512_loadu_si512(rows[i].as_ptr().cast()) });
        let mut x = init;
        for _ in 0..DOUBLE_ROUNDS {
            // Columns, then diagonals; written out so every row index is a constant and the
            // rows stay in registers.
            quarter(&mut x, 0, 4, 8, 12);
            quarter(&mut x, 1, 5, 9, 13);
            quarter(&mut x, 2, 6, 10, 14);
            quarter(&mut x, 3, 7, 11, 15);
            quarter(&mut x, 0, 5, 10, 15);
            quarter(&mut x, 1, 6, 11, 12);
            quarter(&mut x, 2, 7, 8, 13);
            quarter(&mut x, 3, 4, 9, 14);
        }
        for ((row, v), s) in rows.iter_mut().zip(x).zip(init) {
            // SAFETY: `row` is 64 writable bytes; the store is unaligned.
            unsafe { _mm512_storeu_si512(row.as_mut_ptr().cast(), _mm512_add_epi32(v, s)) };
        }
        for lane in 0..LANES {
            for pair in 0..8 {
                out[lane * 8 + pair] =
                    u64::from(rows[2 * pair][lane]) | (u64::from(rows[2 * pair + 1][lane]) << 32);
            }
        }
    }

    /// ChaCha's quarter round on rows `a, b, c, d`.
    #[inline(always)]
    fn quarter(x: &mut [__m512i; 16], a: usize, b: usize, c: usize, d: usize) {
        // SAFETY: only called from `group`, which is compiled for AVX-512F.
        unsafe {
            x[a] = _mm512_add_epi32(x[a], x[b]);
            x[d] = _mm512_rol_epi32::<16>(_mm512_xor_si512(x[d], x[a]));
            x[c] = _mm512_add_epi32(x[c], x[d]);
            x[b] = _mm512_rol_epi32::<12>(_mm512_xor_si512(x[b], x[c]));
            x[a] = _mm512_add_epi32(x[a], x[b]);
            x[d] = _mm512_rol_epi32::<8>(_mm512_xor_si512(x[d], x[a]));
            x[c] = _mm512_add_epi32(x[c], x[d]);
            x[b] = _mm512_rol_epi32::<7>(_mm512_xor_si512(x[b], x[c]));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every way this CPU can compute the stream of `seed`.
    fn streams(seed: u64) -> Vec<(&'static str, KeyStream)> {
        let mut streams = vec![("rand", KeyStream::from_rand(seed))];
        #[cfg(target_arch = "x86_64")]
        if let Some(lanes) = avx512::Lanes::new(seed) {
            streams.push(("avx512", KeyStream(Source::Lanes(Box::new(lanes)))));
        }
        streams
    }

    fn masks(words: impl Iterator<Item = u64>, threshold: u64, hit: f32) -> Vec<f32> {
        words
            .map(|w| if w < threshold { hit } else { 0.0 })
            .collect()
    }

    #[test]
    fn masks_equal_std_rng_draws_across_group_edges() {
        // Odd lengths leave a group part-used between calls; 5 groups and more in all.
        let lens = [3, 1001, 128, 7, 4096, 1, 255];
        let total: usize = lens.iter().sum();
        for seed in [0, 42, u64::MAX] {
            for threshold in [u64::MAX / 3, 1 << 63, u64::MAX - 1] {
                let mut rng = StdRng::seed_from_u64(seed);
                let expected = masks((0..total).map(|_| rng.next_u64()), threshold, 2.5);
                for (name, mut stream) in streams(seed) {
                    let mut got = Vec::new();
                    for len in lens {
                        let mut out = vec![-1.0; len];
                        stream.fill_below(&mut out, threshold, 2.5);
                        got.extend(out);
                    }
                    assert_eq!(got, expected, "{name}, seed {seed}, threshold {threshold}");
                }
            }
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn the_block_counter_carries_into_its_high_word() {
        // A group straddling block 2^32, against chacha20's generator moved there.
        let first = (1u64 << 32) - 8;
        let mut rng = chacha20::ChaCha12Rng::seed_from_u64(5);
        rng.set_block_pos(first);
        let words = avx512::GROUP_WORDS;
        let expected = masks((0..words).map(|_| rng.next_u64()), 1 << 63, 1.0);
        let Some(mut lanes) = avx512::Lanes::new(5) else {
            // Without AVX-512 the stream is rand's own, which this checks against.
            return;
        };
        lanes.next_block = first;
        let mut out = vec![-1.0; words];
        lanes.fill_below(&mut out, 1 << 63, 1.0);
        assert_eq!(out, expected);
    }
}
