//! [`FedAvg`]: the global model is the sample-weighted mean of the nodes'.

use rayon::prelude::*;
use serde_json::{Value, json};

use super::{AggregationError, Aggregator};
use crate::sandbox::types::Tensor;

/// Parameters per rayon task: large enough to amortise scheduling, small
/// enough to spread a 10M-parameter tensor over every core.
const CHUNK: usize = 1 << 16;

/// Federated averaging: `w = Σ nᵢ·wᵢ / Σ nᵢ` with nᵢ each node's training
/// sample count. Sums are f32, like PyTorch's weighted sum in Fed-BioMed:
/// f64 sums measured 2× slower (`cargo bench --bench experiment`) for a
/// precision the f32 result cannot keep. Determinism does not depend on
/// the width: the fold order is fixed by [`super::OrderedFolder`].
#[derive(Debug, Default)]
pub struct FedAvg {
    template: Vec<Tensor>,
    sums: Vec<Vec<f32>>,
    samples: u64,
}

impl FedAvg {
    /// A FedAvg aggregator.
    pub fn new() -> Self {
        FedAvg::default()
    }
}

impl Aggregator for FedAvg {
    fn name(&self) -> String {
        "fedavg".into()
    }

    fn start_round(&mut self, global: &[Tensor]) -> Result<(), AggregationError> {
        self.template = global
            .iter()
            .map(|t| Tensor {
                name: t.name.clone(),
                shape: t.shape.clone(),
                data: Vec::new(),
            })
            .collect();
        self.sums = global.iter().map(|t| vec![0.0; t.data.len()]).collect();
        self.samples = 0;
        Ok(())
    }

    fn fold(
        &mut self,
        node: &str,
        samples: u64,
        params: &[Tensor],
    ) -> Result<(), AggregationError> {
        if params.len() != self.sums.len() {
            return Err(AggregationError::Mismatch {
                node: node.into(),
                reason: format!(
                    "sent {} tensors, expected {}",
                    params.len(),
                    self.sums.len()
                ),
            });
        }
        let weight = samples as f32;
        for (sum, tensor) in self.sums.iter_mut().zip(params) {
            if sum.len() != tensor.data.len() {
                return Err(AggregationError::Mismatch {
                    node: node.into(),
                    reason: format!("tensor `{}` has the wrong size", tensor.name),
                });
            }
            // Each element is independent: any split over threads gives the same sums.
            sum.par_chunks_mut(CHUNK)
                .zip(tensor.data.par_chunks(CHUNK))
                .for_each(|(s, x)| {
                    for (s, &x) in s.iter_mut().zip(x) {
                        *s += weight * x;
                    }
                });
        }
        self.samples = self.samples.saturating_add(samples);
        Ok(())
    }

    fn finish(&mut self) -> Result<Vec<Tensor>, AggregationError> {
        if self.samples == 0 {
            return Err(AggregationError::Empty);
        }
        let total = self.samples as f32;
        // Divide in place: the sums become the result without another copy.
        let out = self
            .template
            .iter()
            .zip(std::mem::take(&mut self.sums))
            .map(|(t, mut sum)| {
                sum.par_chunks_mut(CHUNK)
                    .for_each(|c| c.iter_mut().for_each(|s| *s /= total));
                Tensor {
                    name: t.name.clone(),
                    shape: t.shape.clone(),
                    data: sum,
                }
            })
            .collect();
        self.samples = 0;
        Ok(out)
    }

    fn state(&self) -> Value {
        json!({})
    }

    fn load_state(&mut self, _state: &Value) -> Result<(), AggregationError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tensor(data: &[f32]) -> Vec<Tensor> {
        vec![Tensor {
            name: "w".into(),
            shape: vec![data.len() as u32],
            data: data.to_vec(),
        }]
    }

    #[test]
    fn weights_by_samples() {
        let mut agg = FedAvg::new();
        agg.start_round(&tensor(&[0.0, 0.0])).unwrap();
        agg.fold("a", 1, &tensor(&[1.0, 4.0])).unwrap();
        agg.fold("b", 3, &tensor(&[5.0, 0.0])).unwrap();
        let out = agg.finish().unwrap();
        assert_eq!(out[0].data, [4.0, 1.0]);
        agg.start_round(&tensor(&[0.0])).unwrap();
        agg.fold("a", 0, &tensor(&[1.0])).unwrap();
        assert!(matches!(agg.finish(), Err(AggregationError::Empty)));
    }
}
