//! Which well-formed rows a read keeps: the first rows of each source up to a cap, or a
//! seeded uniform sample per source.

use std::collections::BTreeMap;

use super::reservoir::{Reservoir, Ticket, source_seed};
use super::sample::{RlaifVOptions, RlaifVSample, RlaifVSummary};

/// A sampled row with its shard's index in the read, for putting samples back in file order.
pub(super) type Placed = (usize, RlaifVSample);

/// Where well-formed rows go: straight to the callback up to the per-source cap (the first
/// rows), or into per-source reservoirs (a seeded uniform sample).
pub(super) enum Keeper {
    /// The first `cap` rows of each source (no cap: every row).
    First {
        /// [`RlaifVOptions::max_samples_per_source`].
        cap: Option<usize>,
    },
    /// A uniform sample of at most `cap` rows per source.
    Sample {
        /// [`RlaifVOptions::max_samples_per_source`].
        cap: usize,
        /// [`RlaifVOptions::sample_seed`].
        seed: u64,
        /// Each source's reservoir, created when the source is first met.
        reservoirs: BTreeMap<String, Reservoir<Placed>>,
    },
}

/// What [`Keeper::admit`] decided for a well-formed row, before its image is checked.
pub(super) enum Admission {
    /// The row would be kept: check its image, then [`Keeper::keep`] it.
    Check(Option<Ticket>),
    /// The source's sample is full without it.
    Capped,
}

impl Keeper {
    pub(super) fn new(options: &RlaifVOptions) -> Self {
        match (options.max_samples_per_source, options.sample_seed) {
            (Some(cap), Some(seed)) => Self::Sample {
                cap,
                seed,
                reservoirs: BTreeMap::new(),
            },
            (cap, _) => Self::First { cap },
        }
    }

    /// Whether a well-formed row of `source` would be kept (drawing its random key when
    /// sampling).
    pub(super) fn admit(&mut self, source: &str, summary: &RlaifVSummary) -> Admission {
        match self {
            Self::First { cap } => {
                let full = cap.is_some_and(|max| {
                    summary
                        .kept_per_source
                        .get(source)
                        .is_some_and(|&n| n >= max)
                });
                if full {
                    Admission::Capped
                } else {
                    Admission::Check(None)
                }
            }
            Self::Sample {
                cap,
                seed,
                reservoirs,
            } => {
                let reservoir = match reservoirs.get_mut(source) {
                    Some(reservoir) => reservoir,
                    None => reservoirs
                        .entry(source.to_string())
                        .or_insert_with(|| Reservoir::new(*cap, source_seed(*seed, source))),
                };
                match reservoir.offer() {
                    Some(ticket) => Admission::Check(Some(ticket)),
                    None => Admission::Capped,
                }
            }
        }
    }

    /// Keeps a checked row that [`Self::admit`] let in: passes it on, or puts it in its
    /// source's sample (a row it pushes out counts as capped).
    pub(super) fn keep(
        &mut self,
        ticket: Option<Ticket>,
        file_index: usize,
        sample: RlaifVSample,
        summary: &mut RlaifVSummary,
        on_sample: &mut impl FnMut(RlaifVSample),
    ) {
        match (self, ticket) {
            (Self::Sample { reservoirs, .. }, Some(ticket)) => {
                let reservoir = reservoirs
                    .get_mut(&sample.origin_dataset)
                    .expect("admit created the source's reservoir");
                let source = sample.origin_dataset.clone();
                if reservoir.insert(ticket, (file_index, sample)).is_some() {
                    summary.capped += 1;
                } else {
                    *summary.kept_per_source.entry(source).or_insert(0) += 1;
                }
            }
            (_, _) => {
                *summary
                    .kept_per_source
                    .entry(sample.origin_dataset.clone())
                    .or_insert(0) += 1;
                on_sample(sample);
            }
        }
    }

    /// Passes the sampled rows on, in file order (nothing to do for first rows).
    pub(super) fn finish(self, on_sample: &mut impl FnMut(RlaifVSample)) {
        if let Self::Sample { reservoirs, .. } = self {
            let mut kept: Vec<Placed> = reservoirs
                .into_values()
                .flat_map(Reservoir::into_items)
                .collect();
            kept.sort_unstable_by_key(|(file_index, sample)| (*file_index, sample.row));
            for (_, sample) in kept {
                on_sample(sample);
            }
        }
    }
}
