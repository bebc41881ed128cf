//! [`ClippedFedAvg`]: FedAvg of updates whose L2 norm is clipped to a
//! bound, so no node — however many samples it claims — moves the global
//! model by more than the bound in one round: the new model is the global
//! one plus a weighted mean of updates each no longer than the bound.
//!
//! The bound is fixed (`clip_norm`), and then the rule streams like FedAvg;
//! or, without one, it is each round's median update norm, so at most half
//! the nodes are clipped and an outlier's pull is that of a typical node
//! (the updates are then kept until the round ends: memory O(nodes × model)).
//! Every round reports its bound and the nodes it clipped.

use rayon::prelude::*;
use serde_json::{Value, json};

use super::{AggregationError, Aggregator, same_sizes};
use crate::sandbox::types::Tensor;

/// Elements per rayon task.
const CHUNK: usize = 1 << 16;

/// Clipped federated averaging.
#[derive(Debug, Default)]
pub struct ClippedFedAvg {
    /// A fixed bound, or `None` for the round's median norm.
    clip_norm: Option<f32>,
    global: Vec<Tensor>,
    /// Σ wᵢ·sᵢ·Δᵢ with a fixed bound; Δᵢ kept per node without one.
    sums: Vec<Vec<f32>>,
    kept: Vec<(String, u64, Vec<Vec<f32>>, f64)>,
    weight: u64,
    /// Each node's update norm, in fold order.
    norms: Vec<(String, f64)>,
    notes: Vec<String>,
}

/// ‖a − b‖₂ over every tensor, summed in f64 chunk by chunk and the chunks
/// in order: the same bits on any number of threads.
fn distance(a: &[Tensor], b: &[Tensor]) -> f64 {
    let squares: f64 = a
        .iter()
        .zip(b)
        .map(|(a, b)| {
            let partial: Vec<f64> = a
                .data
                .par_chunks(CHUNK)
                .zip(b.data.par_chunks(CHUNK))
                .map(|(a, b)| {
                    a.iter()
                        .zip(b)
                        .map(|(&x, &y)| {
                            let d = f64::from(x) - f64::from(y);
                            d * d
                        })
                        .sum::<f64>()
                })
                .collect();
            partial.iter().sum::<f64>()
        })
        .sum();
    squares.sqrt()
}

/// The factor that brings an update of `norm` within `bound`.
fn scale(norm: f64, bound: f64) -> f32 {
    if norm > bound && norm > 0.0 {
        (bound / norm) as f32
    } else {
        1.0
    }
}

impl ClippedFedAvg {
    /// Clip to `clip_norm` (positive), or to each round's median norm.
    pub fn new(clip_norm: Option<f32>) -> Result<Self, AggregationError> {
        if let Some(bound) = clip_norm
            && !(bound.is_finite() && bound > 0.0)
        {
            return Err(AggregationError::State(format!(
                "clip_norm must be a positive number, not {bound}"
            )));
        }
        Ok(ClippedFedAvg {
            clip_norm,
            ..ClippedFedAvg::default()
        })
    }

    /// Add `weight · factor · (params − global)` to `sums`.
    fn accumulate(sums: &mut [Vec<f32>], global: &[Tensor], params: &[Vec<f32>], factor: f32) {
        for ((sum, g), p) in sums.iter_mut().zip(global).zip(params) {
            sum.par_chunks_mut(CHUNK)
                .zip(g.data.par_chunks(CHUNK).zip(p.par_chunks(CHUNK)))
                .for_each(|(s, (g, p))| {
                    for ((s, &g), &p) in s.iter_mut().zip(g).zip(p) {
                        *s += factor * (p - g);
                    }
                });
        }
    }

    /// The round's bound: the fixed one, or the median of the norms.
    fn bound(&self) -> f64 {
        match self.clip_norm {
            Some(bound) => f64::from(bound),
            None => {
                let mut norms: Vec<f64> = self.norms.iter().map(|(_, n)| *n).collect();
                norms.sort_unstable_by(f64::total_cmp);
                let n = norms.len();
                if n % 2 == 1 {
                    norms[n / 2]
                } else {
                    (norms[n / 2 - 1] + norms[n / 2]) / 2.0
                }
            }
        }
    }
}

impl Aggregator for ClippedFedAvg {
    fn name(&self) -> String {
        "clipped_fedavg".into()
    }

    fn start_round(&mut self, global: &[Tensor]) -> Result<(), AggregationError> {
        self.global = global.to_vec();
        self.sums = global.iter().map(|t| vec![0.0; t.data.len()]).collect();
        self.kept.clear();
        self.norms.clear();
        self.weight = 0;
        Ok(())
    }

    fn fold(
        &mut self,
        node: &str,
        samples: u64,
        params: &[Tensor],
    ) -> Result<(), AggregationError> {
        same_sizes(node, params, &self.global)?;
        let norm = distance(params, &self.global);
        self.norms.push((node.to_string(), norm));
        self.weight = self.weight.saturating_add(samples);
        let data: Vec<Vec<f32>> = params.iter().map(|t| t.data.clone()).collect();
        match self.clip_norm {
            Some(bound) => {
                let factor = samples as f32 * scale(norm, f64::from(bound));
                Self::accumulate(&mut self.sums, &self.global, &data, factor);
            }
            None => self.kept.push((node.to_string(), samples, data, norm)),
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<Vec<Tensor>, AggregationError> {
        if self.weight == 0 || self.norms.is_empty() {
            return Err(AggregationError::Empty);
        }
        let bound = self.bound();
        for (_, samples, data, norm) in std::mem::take(&mut self.kept) {
            let factor = samples as f32 * scale(norm, bound);
            Self::accumulate(&mut self.sums, &self.global, &data, factor);
        }
        let clipped: Vec<String> = self
            .norms
            .iter()
            .filter(|(_, norm)| *norm > bound)
            .map(|(node, norm)| format!("{node} ({norm:.4} → {bound:.4})"))
            .collect();
        let source = match self.clip_norm {
            Some(_) => "clip_norm",
            None => "the median update norm",
        };
        self.notes.push(if clipped.is_empty() {
            format!("update norm bound {bound:.4} ({source}); no update clipped")
        } else {
            format!(
                "update norm bound {bound:.4} ({source}); clipped {}",
                clipped.join(", ")
            )
        });
        let total = self.weight as f32;
        let out = self
            .global
            .iter()
            .zip(std::mem::take(&mut self.sums))
            .map(|(g, mut sum)| {
                sum.par_chunks_mut(CHUNK)
                    .zip(g.data.par_chunks(CHUNK))
                    .for_each(|(s, g)| {
                        for (s, &g) in s.iter_mut().zip(g) {
                            *s = g + *s / total;
                        }
                    });
                Tensor {
                    name: g.name.clone(),
                    shape: g.shape.clone(),
                    data: sum,
                }
            })
            .collect();
        self.weight = 0;
        Ok(out)
    }

    fn notes(&mut self) -> Vec<String> {
        std::mem::take(&mut self.notes)
    }

    fn state(&self) -> Value {
        json!({ "clip_norm": self.clip_norm })
    }

    fn load_state(&mut self, state: &Value) -> Result<(), AggregationError> {
        let clip_norm = state
            .get("clip_norm")
            .and_then(Value::as_f64)
            .map(|v| v as f32);
        *self = ClippedFedAvg::new(clip_norm)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::vector as params;
    use super::*;

    fn run(agg: &mut ClippedFedAvg, updates: &[(&str, u64, [f32; 2])]) -> Vec<f32> {
        agg.start_round(&params(&[0.0, 0.0])).unwrap();
        for (node, samples, p) in updates {
            agg.fold(node, *samples, &params(p)).unwrap();
        }
        agg.finish().unwrap().remove(0).data
    }

    #[test]
    fn a_huge_update_with_a_huge_weight_moves_the_model_at_most_the_bound() {
        let updates = [
            ("a", 10, [0.3, 0.4]),
            ("b", 10, [0.0, 0.5]),
            ("c", 10, [0.5, 0.0]),
            ("x", 1 << 40, [3e6, 4e6]),
        ];
        let mut fixed = ClippedFedAvg::new(Some(1.0)).unwrap();
        let out = run(&mut fixed, &updates);
        let moved = f64::from(out[0]).hypot(f64::from(out[1]));
        assert!(moved <= 1.0 + 1e-6, "{out:?}");
        let notes = fixed.notes();
        assert!(
            notes[0].contains("clipped x (5000000.0000 → 1.0000)"),
            "{notes:?}"
        );

        let mut adaptive = ClippedFedAvg::new(None).unwrap();
        let out = run(&mut adaptive, &updates);
        let moved = f64::from(out[0]).hypot(f64::from(out[1]));
        // The median of the norms 0.5, 0.5, 0.5, 5e6 is 0.5.
        assert!(moved <= 0.5 + 1e-6, "{out:?}");
        assert!(adaptive.notes()[0].contains("0.5000 (the median update norm)"));
    }

    #[test]
    fn updates_within_the_bound_average_as_fedavg() {
        let mut agg = ClippedFedAvg::new(Some(10.0)).unwrap();
        let out = run(&mut agg, &[("a", 1, [1.0, 4.0]), ("b", 3, [5.0, 0.0])]);
        assert_eq!(out, [4.0, 1.0]);
        assert!(agg.notes()[0].contains("no update clipped"));
        assert!(ClippedFedAvg::new(Some(0.0)).is_err());
        assert!(ClippedFedAvg::new(Some(f32::NAN)).is_err());
    }

    #[test]
    fn the_bound_survives_a_breakpoint() {
        let saved = ClippedFedAvg::new(Some(2.5)).unwrap().state();
        let mut restored = ClippedFedAvg::new(None).unwrap();
        restored.load_state(&saved).unwrap();
        assert_eq!(restored.clip_norm, Some(2.5));
    }
}
