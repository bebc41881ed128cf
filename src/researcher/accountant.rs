//! An RDP accountant: how much differential privacy each node has spent.
//!
//! Every round a node reports the mechanisms it ran ([`PrivacySpent`]:
//! `steps` Gaussian mechanisms with a noise multiplier, on rows sampled at a
//! rate). The Rényi DP of the sampled Gaussian mechanism at integer orders α
//! is (Mironov, Talwar & Zhang 2019, "Rényi Differential Privacy of the
//! Sampled Gaussian Mechanism", §3.3)
//!
//! ```text
//! RDP(α) = log A_α / (α − 1),  A_α = Σ_{k=0..α} C(α,k) (1−q)^(α−k) q^k exp((k²−k) / 2σ²)
//! ```
//!
//! RDP composes by addition, and ε for a given δ is the best over orders of
//! `RDP(α) + log(1 − 1/α) − log(δ·α) / (α − 1)` (Balle et al. 2020,
//! Proposition 12) — the conversion Google's `dp_accounting` and Opacus use.
//! Only integer orders 2..=255 are used, which can only overstate ε slightly
//! compared with adding fractional orders; the tests match `dp_accounting`
//! run with the same orders.

use std::collections::BTreeMap;

use crate::wire::PrivacySpent;

/// The Rényi orders the accountant evaluates.
const ORDERS: std::ops::RangeInclusive<u32> = 2..=255;

/// log(exp(a) + exp(b)) without overflow.
fn log_add(a: f64, b: f64) -> f64 {
    let (hi, lo) = if a > b { (a, b) } else { (b, a) };
    if lo == f64::NEG_INFINITY {
        hi
    } else {
        hi + (lo - hi).exp().ln_1p()
    }
}

/// RDP at integer order `alpha` of one sampled Gaussian mechanism with
/// sampling rate `q` and noise multiplier `sigma`.
fn rdp_sampled_gaussian(q: f64, sigma: f64, alpha: u32) -> f64 {
    if q <= 0.0 {
        return 0.0;
    }
    let a = f64::from(alpha);
    if q >= 1.0 {
        return a / (2.0 * sigma * sigma);
    }
    let (log_q, log_1q) = (q.ln(), (-q).ln_1p());
    let mut log_binomial = 0.0;
    let mut log_a = f64::NEG_INFINITY;
    for k in 0..=alpha {
        if k > 0 {
            log_binomial += (f64::from(alpha - k + 1) / f64::from(k)).ln();
        }
        let k = f64::from(k);
        let term =
            log_binomial + (a - k) * log_1q + k * log_q + (k * k - k) / (2.0 * sigma * sigma);
        log_a = log_add(log_a, term);
    }
    log_a / (a - 1.0)
}

/// The privacy one node has spent: how many times it ran each distinct
/// mechanism (sampling rate, noise multiplier). Identical mechanisms compose
/// by multiplying their RDP, so a long history costs one RDP curve per
/// distinct mechanism, not one per round.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Accountant {
    /// (sampling rate bits, noise multiplier bits) → steps.
    steps: BTreeMap<(u64, u64), u64>,
}

impl Accountant {
    /// Add one round's mechanisms.
    pub fn add(&mut self, spent: &PrivacySpent) {
        *self
            .steps
            .entry((
                spent.sampling_rate.to_bits(),
                spent.noise_multiplier.to_bits(),
            ))
            .or_default() += spent.steps;
    }

    /// The smallest ε such that everything added so far is (ε, δ)-DP.
    pub fn epsilon(&self, delta: f64) -> f64 {
        let best = ORDERS
            .map(|alpha| {
                let r: f64 = self
                    .steps
                    .iter()
                    .map(|(&(q, sigma), &steps)| {
                        steps as f64
                            * rdp_sampled_gaussian(f64::from_bits(q), f64::from_bits(sigma), alpha)
                    })
                    .sum();
                let a = f64::from(alpha);
                if delta * delta + (-r).exp_m1() > 0.0 {
                    // δ already covers the whole divergence.
                    0.0
                } else {
                    r + (-1.0 / a).ln_1p() - (delta * a).ln() / (a - 1.0)
                }
            })
            .fold(f64::INFINITY, f64::min);
        best.max(0.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn epsilon(q: f64, sigma: f64, steps: u64, delta: f64) -> f64 {
        let mut a = Accountant::default();
        a.add(&PrivacySpent {
            mode: "local".into(),
            noise_multiplier: sigma,
            sampling_rate: q,
            steps,
        });
        a.epsilon(delta)
    }

    /// Reference values from `dp_accounting` 0.6.0 (`RdpAccountant(range(2, 256))`,
    /// `SelfComposedDpEvent(PoissonSampledDpEvent(q, GaussianDpEvent(σ)), steps)`).
    #[test]
    fn matches_dp_accounting() {
        let cases = [
            // Abadi et al.'s MNIST setting: 60 epochs of batches of 256.
            ((256.0 / 60000.0, 1.1, 14062, 1e-5), 2.5969811785948815),
            ((0.1, 1.1, 50, 1e-5), 4.916454105061327),
            ((1.0, 0.5, 10, 1e-5), 50.126631103850336),
            ((0.01, 4.0, 1000, 1e-6), 0.3470365087619491),
        ];
        for ((q, sigma, steps, delta), expected) in cases {
            let got = epsilon(q, sigma, steps, delta);
            assert!(
                (got - expected).abs() < 1e-9 * expected.max(1.0),
                "q {q} σ {sigma} steps {steps}: {got} vs {expected}"
            );
        }
    }

    #[test]
    fn composition_adds_up_and_more_noise_costs_less() {
        let spent = |steps| PrivacySpent {
            mode: "local".into(),
            noise_multiplier: 1.0,
            sampling_rate: 0.05,
            steps,
        };
        let mut twice = Accountant::default();
        twice.add(&spent(10));
        twice.add(&spent(10));
        let mut once = Accountant::default();
        once.add(&spent(20));
        assert_eq!(twice.epsilon(1e-5), once.epsilon(1e-5));
        assert!(epsilon(0.05, 2.0, 20, 1e-5) < once.epsilon(1e-5));
        assert_eq!(Accountant::default().epsilon(1e-5), 0.0);
    }

    #[test]
    fn full_sampling_is_the_plain_gaussian_mechanism() {
        for alpha in [2, 7, 100] {
            let series = {
                // q just below 1 goes through the series.
                rdp_sampled_gaussian(1.0 - 1e-12, 2.0, alpha)
            };
            let closed = f64::from(alpha) / 8.0;
            assert!(
                (series - closed).abs() < 1e-6,
                "α {alpha}: {series} vs {closed}"
            );
        }
    }
}
