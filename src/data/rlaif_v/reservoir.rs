//! A seeded, bounded-memory uniform sample of a stream: reservoir sampling by random keys.
//!
//! Every offered item draws a uniform 64-bit key from the reservoir's own ChaCha8 stream; the
//! reservoir keeps the `capacity` items with the smallest keys (ties to the earlier item).
//! Since the keys are independent and identically distributed, the kept items are a uniform
//! random subset of the accepted items, of size `min(capacity, accepted)` — the same
//! distribution as Vitter's Algorithm R, with `O(capacity)` memory.
//!
//! Keys rather than Algorithm R's replacement index let the caller check an item lazily and
//! still sample exactly: [`Reservoir::offer`] says whether the item's key makes the current
//! sample *before* the item is checked, so only those items need the (expensive) check; an
//! item that fails it is never inserted and so never counts, while an item whose key does not
//! make the sample could not have made it whether it would pass or not (the sample already
//! holds `capacity` checked items with smaller keys). One key is drawn per offered item, so
//! the keys of later items do not depend on which items passed.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use rand::{Rng, SeedableRng, rngs::ChaCha8Rng};

/// The place an offered item would take in the sample, from [`Reservoir::offer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Ticket {
    /// The item's random key (smaller is kept first).
    key: u64,
    /// The item's offer index, to break key ties in favour of the earlier item.
    seq: u64,
}

/// One kept item, ordered by its ticket (the heap's maximum is the first to go).
#[derive(Debug)]
struct Entry<T> {
    ticket: Ticket,
    item: T,
}

impl<T> PartialEq for Entry<T> {
    fn eq(&self, other: &Self) -> bool {
        self.ticket == other.ticket
    }
}

impl<T> Eq for Entry<T> {}

impl<T> PartialOrd for Entry<T> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl<T> Ord for Entry<T> {
    fn cmp(&self, other: &Self) -> Ordering {
        self.ticket.cmp(&other.ticket)
    }
}

/// A uniform random sample of at most `capacity` items of a stream (see the module docs).
#[derive(Debug)]
pub(crate) struct Reservoir<T> {
    capacity: usize,
    rng: ChaCha8Rng,
    offered: u64,
    heap: BinaryHeap<Entry<T>>,
}

impl<T> Reservoir<T> {
    /// An empty reservoir keeping at most `capacity` items, its keys drawn from
    /// `ChaCha8Rng::seed_from_u64(seed)`.
    pub(crate) fn new(capacity: usize, seed: u64) -> Self {
        Self {
            capacity,
            rng: ChaCha8Rng::seed_from_u64(seed),
            offered: 0,
            heap: BinaryHeap::with_capacity(capacity.min(1024)),
        }
    }

    /// Draws the next item's key: `Some(ticket)` when the item would enter the sample (pass
    /// the ticket to [`Self::insert`] once the item is known to be acceptable, or drop it),
    /// `None` when it would not (the sample is full of items with smaller keys).
    pub(crate) fn offer(&mut self) -> Option<Ticket> {
        let ticket = Ticket {
            key: self.rng.next_u64(),
            seq: self.offered,
        };
        self.offered += 1;
        if self.heap.len() < self.capacity {
            return Some(ticket);
        }
        match self.heap.peek() {
            Some(largest) if ticket < largest.ticket => Some(ticket),
            _ => None,
        }
    }

    /// Inserts an accepted item with the ticket [`Self::offer`] gave it; returns the item it
    /// pushes out of a full sample, if any.
    ///
    /// The ticket must come from the latest [`Self::offer`] (no other item inserted since),
    /// so that it still makes the sample.
    pub(crate) fn insert(&mut self, ticket: Ticket, item: T) -> Option<T> {
        let evicted = if self.heap.len() < self.capacity {
            None
        } else {
            self.heap.pop().map(|entry| entry.item)
        };
        self.heap.push(Entry { ticket, item });
        evicted
    }

    /// Number of items in the sample.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.heap.len()
    }

    /// The sampled items, in no particular order.
    pub(crate) fn into_items(self) -> impl Iterator<Item = T> {
        self.heap.into_iter().map(|entry| entry.item)
    }
}

/// A seed for source `name` derived from `seed`: FNV-1a of the name's bytes mixed into the
/// seed with SplitMix64's finaliser, so that each source's stream depends only on the seed and
/// its own name (not on the order sources are met in), and is stable across platforms and
/// Rust versions (unlike `std`'s hashers).
pub(crate) fn source_seed(seed: u64, name: &str) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in name.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    splitmix64(seed ^ splitmix64(hash))
}

/// SplitMix64's output function.
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Offers `0..n` to a reservoir of `capacity`, accepting the items `accept` allows (checked
    /// only when the item would enter); returns the sorted sample and how many were checked.
    fn draw(
        n: usize,
        capacity: usize,
        seed: u64,
        accept: impl Fn(usize) -> bool,
    ) -> (Vec<usize>, usize) {
        let mut reservoir = Reservoir::new(capacity, seed);
        let mut checked = 0;
        for i in 0..n {
            if let Some(ticket) = reservoir.offer() {
                checked += 1;
                if accept(i) {
                    reservoir.insert(ticket, i);
                }
            }
        }
        assert!(reservoir.len() <= capacity);
        let mut items: Vec<usize> = reservoir.into_items().collect();
        items.sort_unstable();
        (items, checked)
    }

    #[test]
    fn keeps_everything_below_capacity_and_nothing_at_zero() {
        assert_eq!(draw(4, 5, 1, |_| true).0, [0, 1, 2, 3]);
        assert_eq!(draw(5, 5, 1, |_| true).0, [0, 1, 2, 3, 4]);
        assert_eq!(draw(4, 0, 1, |_| true), (vec![], 0));
        // Rejected items never count: the other three are all kept.
        assert_eq!(draw(4, 3, 1, |i| i != 2).0, [0, 1, 3]);
    }

    #[test]
    fn same_seed_same_sample_other_seed_other_sample() {
        let a = draw(40, 5, 7, |_| true).0;
        assert_eq!(a.len(), 5);
        assert_eq!(a, draw(40, 5, 7, |_| true).0);
        assert!((8..16).any(|seed| draw(40, 5, seed, |_| true).0 != a));
        assert!((0..16).any(|seed| draw(40, 5, seed, |_| true).0 != [0, 1, 2, 3, 4]));
    }

    /// Every item's inclusion frequency over 2000 seeds is near `capacity / accepted`: 250 of
    /// 2000 for 5 of 40 (standard deviation about 14.8); the bound is over 5 deviations.
    #[test]
    fn inclusion_is_uniform() {
        let (n, capacity, draws) = (40, 5, 2000u64);
        let mut counts = vec![0usize; n];
        let mut checked = 0;
        for seed in 0..draws {
            let (items, c) = draw(n, capacity, source_seed(seed, "uniform"), |_| true);
            assert_eq!(items.len(), capacity);
            checked += c;
            for i in items {
                counts[i] += 1;
            }
        }
        let expected = draws as f64 * capacity as f64 / n as f64;
        for (i, &count) in counts.iter().enumerate() {
            assert!(
                (count as f64 - expected).abs() < 80.0,
                "item {i} kept {count} times, expected about {expected}: {counts:?}"
            );
        }
        // Lazy checks: about k (1 + ln(n / k)) = 15.4 per draw, far fewer than n.
        let per_draw = checked as f64 / draws as f64;
        assert!(per_draw < 20.0, "{per_draw} checks per draw");
    }

    /// With every third item rejected on its (lazy) check, the sample is uniform over the
    /// 27 accepted items and never holds a rejected one.
    #[test]
    fn inclusion_is_uniform_over_accepted_items() {
        let (n, capacity, draws) = (40, 5, 2000u64);
        let rejected = |i: usize| i % 3 == 1;
        let accepted = (0..n).filter(|&i| !rejected(i)).count();
        let mut counts = vec![0usize; n];
        for seed in 0..draws {
            let (items, _) = draw(n, capacity, source_seed(seed, "lazy"), |i| !rejected(i));
            assert_eq!(items.len(), capacity);
            for i in items {
                counts[i] += 1;
            }
        }
        let expected = draws as f64 * capacity as f64 / accepted as f64;
        for (i, &count) in counts.iter().enumerate() {
            if rejected(i) {
                assert_eq!(count, 0, "rejected item {i} kept");
            } else {
                assert!(
                    (count as f64 - expected).abs() < 90.0,
                    "item {i} kept {count} times, expected about {expected}: {counts:?}"
                );
            }
        }
    }

    #[test]
    fn source_seeds_differ_by_name_and_seed() {
        assert_eq!(source_seed(3, "vqav2"), source_seed(3, "vqav2"));
        assert_ne!(source_seed(3, "vqav2"), source_seed(3, "vqav3"));
        assert_ne!(source_seed(3, "vqav2"), source_seed(4, "vqav2"));
        assert_ne!(source_seed(0, ""), source_seed(1, ""));
    }
}
