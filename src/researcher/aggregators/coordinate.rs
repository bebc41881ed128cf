//! [`CoordinateWise`]: robust aggregation, coordinate by coordinate — the
//! median, or the mean of what is left after trimming the largest and
//! smallest values. Each coordinate of the global model becomes a statistic
//! of the nodes' values for it, unweighted: a node's claimed sample count
//! buys it nothing, and one node sending a huge update moves no coordinate
//! past the range of the others' values.
//!
//! Unlike FedAvg these rules cannot stream: every node's parameters are
//! kept until the round ends (memory O(nodes × model)). Each coordinate's
//! values are sorted before they are combined, so the result does not
//! depend on the order replies were folded in nor on the thread count.

use rayon::prelude::*;
use serde_json::{Value, json};

use super::{AggregationError, Aggregator, same_sizes};
use crate::sandbox::types::Tensor;

/// Output coordinates per rayon task.
const CHUNK: usize = 1 << 14;

/// Which statistic of a coordinate's values is kept.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum CoordinateRule {
    /// The median (the mean of the two middle values for an even count).
    Median,
    /// The mean after dropping `⌊fraction · n⌋` of the largest values and
    /// as many of the smallest; `fraction` in [0, 0.5).
    TrimmedMean {
        /// Share of the nodes dropped at each end.
        fraction: f64,
    },
}

impl CoordinateRule {
    /// Its name in settings, history and breakpoints.
    pub fn name(&self) -> &'static str {
        match self {
            CoordinateRule::Median => "median",
            CoordinateRule::TrimmedMean { .. } => "trimmed_mean",
        }
    }

    /// Values dropped at each end when `n` nodes answered.
    fn trimmed(&self, n: usize) -> usize {
        match *self {
            CoordinateRule::Median => 0,
            CoordinateRule::TrimmedMean { fraction } => (fraction * n as f64).floor() as usize,
        }
    }

    /// The statistic of `sorted` (ascending, not empty, fewer than `2 · trimmed` dropped).
    fn combine(&self, sorted: &[f32]) -> f32 {
        match self {
            CoordinateRule::Median => {
                let n = sorted.len();
                if n % 2 == 1 {
                    sorted[n / 2]
                } else {
                    ((f64::from(sorted[n / 2 - 1]) + f64::from(sorted[n / 2])) / 2.0) as f32
                }
            }
            CoordinateRule::TrimmedMean { .. } => {
                let k = self.trimmed(sorted.len());
                let kept = &sorted[k..sorted.len() - k];
                let sum: f64 = kept.iter().map(|&v| f64::from(v)).sum();
                (sum / kept.len() as f64) as f32
            }
        }
    }
}

/// Robust aggregation by a [`CoordinateRule`].
#[derive(Debug)]
pub struct CoordinateWise {
    rule: CoordinateRule,
    template: Vec<Tensor>,
    /// Each folded node's tensors, in fold order.
    kept: Vec<Vec<Vec<f32>>>,
}

impl CoordinateWise {
    /// An aggregator keeping `rule`'s statistic of every coordinate.
    pub fn new(rule: CoordinateRule) -> Result<Self, AggregationError> {
        if let CoordinateRule::TrimmedMean { fraction } = rule
            && !(0.0..0.5).contains(&fraction)
        {
            return Err(AggregationError::State(format!(
                "trim_fraction must be at least 0 and less than 0.5, not {fraction}"
            )));
        }
        Ok(CoordinateWise {
            rule,
            template: Vec::new(),
            kept: Vec::new(),
        })
    }

    /// One output tensor: each coordinate the rule's statistic of the
    /// nodes' values for it.
    fn combine_tensor(&self, index: usize) -> Vec<f32> {
        let len = self.template[index].data.len();
        let mut out = vec![0.0f32; len];
        out.par_chunks_mut(CHUNK)
            .enumerate()
            .for_each(|(chunk, out)| {
                let start = chunk * CHUNK;
                let mut values = Vec::with_capacity(self.kept.len());
                for (offset, slot) in out.iter_mut().enumerate() {
                    values.clear();
                    values.extend(self.kept.iter().map(|node| node[index][start + offset]));
                    values.sort_unstable_by(f32::total_cmp);
                    *slot = self.rule.combine(&values);
                }
            });
        out
    }
}

impl Aggregator for CoordinateWise {
    fn name(&self) -> String {
        self.rule.name().into()
    }

    fn start_round(&mut self, global: &[Tensor]) -> Result<(), AggregationError> {
        self.template = global
            .iter()
            .map(|t| Tensor {
                name: t.name.clone(),
                shape: t.shape.clone(),
                data: vec![0.0; t.data.len()],
            })
            .collect();
        self.kept.clear();
        Ok(())
    }

    fn fold(
        &mut self,
        node: &str,
        _samples: u64,
        params: &[Tensor],
    ) -> Result<(), AggregationError> {
        same_sizes(node, params, &self.template)?;
        self.kept
            .push(params.iter().map(|t| t.data.clone()).collect());
        Ok(())
    }

    fn finish(&mut self) -> Result<Vec<Tensor>, AggregationError> {
        let n = self.kept.len();
        if n == 0 {
            return Err(AggregationError::Empty);
        }
        let k = self.rule.trimmed(n);
        if 2 * k >= n {
            return Err(AggregationError::State(format!(
                "trimming {k} value(s) at each end of {n} leaves none; lower trim_fraction"
            )));
        }
        let out = (0..self.template.len())
            .map(|i| Tensor {
                name: self.template[i].name.clone(),
                shape: self.template[i].shape.clone(),
                data: self.combine_tensor(i),
            })
            .collect();
        self.kept.clear();
        Ok(out)
    }

    fn state(&self) -> Value {
        match self.rule {
            CoordinateRule::Median => json!({}),
            CoordinateRule::TrimmedMean { fraction } => json!({ "trim_fraction": fraction }),
        }
    }

    fn load_state(&mut self, state: &Value) -> Result<(), AggregationError> {
        if let CoordinateRule::TrimmedMean { fraction } = &mut self.rule {
            if let Some(saved) = state.get("trim_fraction").and_then(Value::as_f64) {
                *fraction = saved;
            }
            *self = CoordinateWise::new(self.rule)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::vector as params;
    use super::*;

    /// Four honest nodes within ±0.01 of the global model and one sending
    /// a huge update, in any fold order.
    fn round(rule: CoordinateRule, order: &[usize]) -> Vec<f32> {
        let global = params(&[1.0, -2.0, 0.5]);
        let nodes = [
            params(&[1.01, -2.0, 0.49]),
            params(&[0.99, -1.99, 0.5]),
            params(&[1.0, -2.01, 0.51]),
            params(&[1.005, -2.005, 0.5]),
            params(&[1e9, -1e9, f32::MAX]),
        ];
        let mut agg = CoordinateWise::new(rule).unwrap();
        agg.start_round(&global).unwrap();
        for &i in order {
            agg.fold(
                &format!("n{i}"),
                if i == 4 { 1 << 40 } else { 10 },
                &nodes[i],
            )
            .unwrap();
        }
        agg.finish().unwrap().remove(0).data
    }

    #[test]
    fn one_huge_update_of_five_moves_no_coordinate_past_the_honest_ones() {
        let global = [1.0f32, -2.0, 0.5];
        // The bound: the honest nodes' largest distance from the global model.
        const BOUND: f32 = 0.01 + 1e-6;
        for rule in [
            CoordinateRule::Median,
            CoordinateRule::TrimmedMean { fraction: 0.2 },
        ] {
            let out = round(rule, &[0, 1, 2, 3, 4]);
            for (o, g) in out.iter().zip(global) {
                assert!((o - g).abs() <= BOUND, "{rule:?}: {out:?}");
            }
            assert_eq!(
                out.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                round(rule, &[4, 2, 0, 3, 1])
                    .iter()
                    .map(|v| v.to_bits())
                    .collect::<Vec<_>>(),
                "the fold order changes nothing"
            );
        }
    }

    #[test]
    fn the_median_of_an_even_count_is_the_mean_of_the_middle_two() {
        let mut agg = CoordinateWise::new(CoordinateRule::Median).unwrap();
        agg.start_round(&params(&[0.0])).unwrap();
        for (i, v) in [4.0, 1.0, 3.0, 2.0].into_iter().enumerate() {
            agg.fold(&i.to_string(), 1, &params(&[v])).unwrap();
        }
        assert_eq!(agg.finish().unwrap()[0].data, [2.5]);
    }

    #[test]
    fn a_trim_that_leaves_nothing_is_refused_by_name() {
        assert!(CoordinateWise::new(CoordinateRule::TrimmedMean { fraction: 0.5 }).is_err());
        let mut agg = CoordinateWise::new(CoordinateRule::TrimmedMean { fraction: 0.49 }).unwrap();
        agg.start_round(&params(&[0.0])).unwrap();
        agg.fold("a", 1, &params(&[1.0])).unwrap();
        agg.fold("b", 1, &params(&[2.0])).unwrap();
        assert_eq!(
            agg.finish().unwrap()[0].data,
            [1.5],
            "⌊0.49 · 2⌋ = 0 trimmed"
        );
        let mut agg = CoordinateWise::new(CoordinateRule::TrimmedMean { fraction: 0.4 }).unwrap();
        agg.start_round(&params(&[0.0])).unwrap();
        for n in ["a", "b", "c", "d", "e"] {
            agg.fold(n, 1, &params(&[1.0])).unwrap();
        }
        assert!(agg.finish().is_ok(), "2 of 5 trimmed at each end leaves 1");
    }

    #[test]
    fn the_trim_fraction_survives_a_breakpoint() {
        let saved = CoordinateWise::new(CoordinateRule::TrimmedMean { fraction: 0.3 })
            .unwrap()
            .state();
        let mut restored =
            CoordinateWise::new(CoordinateRule::TrimmedMean { fraction: 0.1 }).unwrap();
        restored.load_state(&saved).unwrap();
        assert_eq!(restored.rule, CoordinateRule::TrimmedMean { fraction: 0.3 });
    }
}
