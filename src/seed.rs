//! Seed mixing: every random stream of the crate (client sampling, shuffling, dropout, adapter
//! initialisation, synthetic data) is seeded from a tuple such as `(seed, round, client, purpose)`
//! through [`mix_seed`], so runs are reproducible and streams independent.

/// Mixes seed components into one 64-bit seed (SplitMix64 finaliser). The same parts always give
/// the same seed, on every platform.
pub fn mix_seed(parts: &[u64]) -> u64 {
    parts.iter().fold(0x9E37_79B9_7F4A_7C15u64, |acc, &p| {
        let mut z = acc ^ p.wrapping_add(0x9E37_79B9_7F4A_7C15).wrapping_add(acc << 6);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    })
}
