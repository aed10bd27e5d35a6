//! Differential-privacy accounting: Renyi DP of the sampled Gaussian mechanism, as Opacus 1.6
//! computes it.
//!
//! * [`RdpAccountant`]: records `(noise_multiplier, sample_rate, steps)` phases and reports the
//!   `(epsilon, delta)` spent (Opacus's `RDPAccountant`, same default orders
//!   [`DEFAULT_ORDERS`], same history merging, same conversion).
//! * [`noise_multiplier_for`]: the noise multiplier meeting a budget (Opacus's
//!   `get_noise_multiplier` with accountant `"rdp"`).
//! * [`compute_rdp`], [`rdp_at_order`], [`privacy_spent`]: the analysis functions underneath
//!   (Opacus's `opacus.accountants.analysis.rdp`).
//!
//! The numbers agree with Opacus 1.6.0 (numpy/scipy float64) to about 1e-12 relative, checked
//! against vectors that `scripts/generate_privacy_vectors.py` made with Opacus itself.
//!
//! Invalid inputs: the plain functions, like Opacus, check nothing and return NaN where Opacus
//! would raise; the `try_` variants ([`RdpAccountant::try_step`], [`RdpAccountant::try_epsilon`],
//! [`RdpAccountant::try_privacy_spent`], [`try_noise_multiplier_for`]) return
//! [`crate::FedError::InvalidConfig`] for a negative or non-finite noise multiplier, a sample
//! rate outside `[0, 1]`, a delta outside `(0, 1)` and so on.
//!
//! In federated learning with client sampling (DP-FedAvg with user-level clipping), the
//! "sample rate" is the fraction of clients sampled per round and a "step" is a round.
//!
//! ```
//! use fedvlm::privacy::{noise_multiplier_for, RdpAccountant};
//!
//! // 1000 rounds, each sampling 1% of the clients: which noise gives epsilon <= 3 at delta 1e-5?
//! let sigma = noise_multiplier_for(3.0, 1e-5, 0.01, 1000, 0.01);
//! assert_eq!(sigma, 0.865478515625); // Opacus 1.6 returns the same
//!
//! let mut accountant = RdpAccountant::new();
//! accountant.step(sigma, 0.01, 1000);
//! let eps = accountant.epsilon(1e-5);
//! assert!(eps <= 3.0 && eps > 2.99);
//! ```

mod accountant;
mod check;
mod noise;
mod rdp;
mod special;

pub use accountant::{DEFAULT_ORDER_COUNT, DEFAULT_ORDERS, RdpAccountant};
pub use noise::{MAX_NOISE_MULTIPLIER, noise_multiplier_for, try_noise_multiplier_for};
pub use rdp::{compute_rdp, privacy_spent, rdp_at_order};
