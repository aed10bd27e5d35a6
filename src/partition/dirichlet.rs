//! Label-skewed partitioning with per-class Dirichlet proportions.

use rand::Rng;
use rand::RngExt;
use rand::seq::SliceRandom;
use rand_distr::{Distribution, Gamma};

use super::{PartitionError, Result, indices_by_class, rng, sort_all};

/// Maximum number of complete Dirichlet draws [`dirichlet`] attempts before giving up with
/// [`PartitionError::MinSizeNotReached`].
pub const DIRICHLET_MAX_TRIES: usize = 100;

/// Label-skewed non-IID partition of Hsu, Qi & Brown 2019, *Measuring the Effects of
/// Non-Identical Data Distribution for Federated Visual Classification*, as implemented
/// by flwr-datasets' `DirichletPartitioner` (without self-balancing).
///
/// For every distinct label `k` (ascending), proportions `p ~ Dir(alpha · 1_N)` over the
/// `N = num_clients` clients are drawn (as normalised `Gamma(alpha, 1)` variates), the
/// class's indices are shuffled, and client `j` receives the slice between the cut points
/// `floor(n_k · Σ_{i<j} p_i)` and `floor(n_k · Σ_{i≤j} p_i)` (the last client takes the rest).
/// Small `alpha` concentrates each class on few clients; large `alpha` approaches an IID
/// split. If the Gamma variates of a class all underflow to zero (tiny `alpha`), the whole
/// class goes to one uniformly chosen client, the `alpha → 0` limit of the Dirichlet.
///
/// The whole draw (all classes) is repeated until every client holds at least
/// `min_partition_size` samples, at most [`DIRICHLET_MAX_TRIES`] times. Clients may be
/// empty when `min_partition_size == 0`. Each client's list is sorted ascending.
///
/// # Errors
/// [`PartitionError::ZeroClients`], [`PartitionError::EmptyInput`],
/// [`PartitionError::InvalidAlpha`] (non-finite or `<= 0`),
/// [`PartitionError::MinSizeInfeasible`] when `min_partition_size * num_clients` exceeds
/// the number of samples, and [`PartitionError::MinSizeNotReached`] when no draw within
/// the budget satisfies the minimum size.
pub fn dirichlet(
    labels: &[usize],
    num_clients: usize,
    alpha: f64,
    min_partition_size: usize,
    seed: u64,
) -> Result<Vec<Vec<usize>>> {
    if num_clients == 0 {
        return Err(PartitionError::ZeroClients);
    }
    let num_samples = labels.len();
    if num_samples == 0 {
        return Err(PartitionError::EmptyInput { argument: "labels" });
    }
    if !alpha.is_finite() || alpha <= 0.0 {
        return Err(PartitionError::InvalidAlpha { alpha });
    }
    if min_partition_size.saturating_mul(num_clients) > num_samples {
        return Err(PartitionError::MinSizeInfeasible {
            min_partition_size,
            num_clients,
            num_samples,
        });
    }
    let gamma = Gamma::new(alpha, 1.0).map_err(|_| PartitionError::InvalidAlpha { alpha })?;
    let classes = indices_by_class(labels);
    let mut rng = rng(seed);

    let mut smallest = 0;
    for _ in 0..DIRICHLET_MAX_TRIES {
        let mut parts: Vec<Vec<usize>> = vec![Vec::new(); num_clients];
        for indices in classes.values() {
            let mut indices = indices.clone();
            indices.shuffle(&mut rng);
            let proportions = draw_proportions(&gamma, num_clients, &mut rng);
            split_by_proportions(&indices, &proportions, &mut parts);
        }
        smallest = parts.iter().map(Vec::len).min().unwrap_or(0);
        if smallest >= min_partition_size {
            return Ok(sort_all(parts));
        }
    }
    Err(PartitionError::MinSizeNotReached {
        min_partition_size,
        tries: DIRICHLET_MAX_TRIES,
        smallest,
    })
}

/// One draw of `Dir(alpha · 1_n)` via normalised Gamma variates; one-hot on a uniformly
/// chosen client if every variate underflowed.
fn draw_proportions<R: Rng>(gamma: &Gamma<f64>, n: usize, rng: &mut R) -> Vec<f64> {
    let mut p: Vec<f64> = (0..n).map(|_| gamma.sample(rng)).collect();
    let total: f64 = p.iter().sum();
    if total > 0.0 && total.is_finite() {
        for x in &mut p {
            *x /= total;
        }
    } else {
        p.fill(0.0);
        p[rng.random_range(0..n)] = 1.0;
    }
    p
}

/// Appends to `parts[j]` the slice of `indices` between the cumulative cut points of
/// `proportions` (see [`dirichlet`]).
fn split_by_proportions(indices: &[usize], proportions: &[f64], parts: &mut [Vec<usize>]) {
    let n = indices.len();
    let mut cumulative = 0.0;
    let mut start = 0;
    let last = parts.len() - 1;
    for (j, (part, &p)) in parts.iter_mut().zip(proportions).enumerate() {
        cumulative += p;
        let end = if j == last {
            n
        } else {
            // Truncation is the intended floor; clamp guards float overshoot past 1.
            ((cumulative * n as f64) as usize).clamp(start, n)
        };
        part.extend_from_slice(&indices[start..end]);
        start = end;
    }
}
