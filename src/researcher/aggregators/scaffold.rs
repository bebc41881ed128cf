//! [`Scaffold`]: stochastic controlled averaging (Karimireddy et al., 2020),
//! "option 2" with every control variate kept by the researcher, as in
//! Fed-BioMed.
//!
//! Before a round each node `i` receives its correction `δᵢ = cᵢ − c`, which
//! its optimizer subtracts from every gradient. After the round, with `x` the
//! global model, `yᵢ` node `i`'s parameters, `K` its updates and `ηᵢ` the
//! learning rate it reported, for the nodes `S` that trained:
//! - `cᵢ ← δᵢ + (x − yᵢ)/(ηᵢ·K)`
//! - `c ← mean of cᵢ over every node seen so far`
//! - `x ← x − (server_lr/|S|)·Σ_S (x − yᵢ)`
//!
//! Nodes not seen before start with `cᵢ = 0`. Control variates change only
//! when a round completes, so a failed round leaves them as they were.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{AggregationError, Aggregator};
use crate::sandbox::types::Tensor;
use crate::training::TrainingArgs;

/// Tensor name → values.
type Variates = BTreeMap<String, Vec<f32>>;

/// The Scaffold aggregator.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Scaffold {
    /// Server learning rate; 1 applies the mean update as is.
    pub server_lr: f32,
    /// The global control variate `c`.
    global_variate: Variates,
    /// Each node's control variate `cᵢ`.
    node_variates: BTreeMap<String, Variates>,
    #[serde(skip)]
    round: Option<Round>,
}

/// A round in progress.
#[derive(Debug, Clone, Default)]
struct Round {
    global: Vec<Tensor>,
    sum_dy: Vec<Vec<f32>>,
    replies: BTreeMap<String, (Option<f32>, u64)>,
    new_variates: BTreeMap<String, Variates>,
}

impl Scaffold {
    /// Scaffold with `server_lr` (must be positive).
    pub fn new(server_lr: f32) -> Result<Self, AggregationError> {
        if !(server_lr.is_finite() && server_lr > 0.0) {
            return Err(AggregationError::State(format!(
                "server_lr must be a positive number, not {server_lr}"
            )));
        }
        Ok(Scaffold {
            server_lr,
            global_variate: Variates::new(),
            node_variates: BTreeMap::new(),
            round: None,
        })
    }

    fn variate<'a>(map: &'a Variates, name: &str) -> Option<&'a Vec<f32>> {
        map.get(name)
    }
}

impl Aggregator for Scaffold {
    fn name(&self) -> String {
        "scaffold".into()
    }

    fn check_training_args(&self, args: &TrainingArgs) -> Result<Vec<String>, String> {
        if args.num_updates.is_none() {
            return Err(
                "the scaffold aggregator needs training_args.num_updates (epochs cannot be used with it)"
                    .into(),
            );
        }
        let momentum = args
            .optimizer_args
            .get("momentum")
            .and_then(Value::as_f64)
            .unwrap_or(0.0);
        let optimizer = args
            .optimizer_args
            .get("optimizer")
            .and_then(Value::as_str)
            .unwrap_or("sgd");
        Ok(if momentum != 0.0 || optimizer != "sgd" {
            vec![format!(
                "Scaffold assumes plain SGD on the nodes (optimizer `{optimizer}`, momentum {momentum} given): its control variates may overshoot"
            )]
        } else {
            Vec::new()
        })
    }

    fn correction(&self, node: &str, global: &[Tensor]) -> Option<Vec<Tensor>> {
        let empty = Variates::new();
        let ci = self.node_variates.get(node).unwrap_or(&empty);
        Some(
            global
                .iter()
                .map(|t| {
                    let n = t.data.len();
                    let c = Self::variate(&self.global_variate, &t.name);
                    let c_i = Self::variate(ci, &t.name);
                    Tensor {
                        name: t.name.clone(),
                        shape: t.shape.clone(),
                        data: (0..n)
                            .map(|k| c_i.map_or(0.0, |v| v[k]) - c.map_or(0.0, |v| v[k]))
                            .collect(),
                    }
                })
                .collect(),
        )
    }

    fn note_reply(&mut self, node: &str, learning_rate: Option<f32>, updates: u64) {
        if let Some(round) = self.round.as_mut() {
            round
                .replies
                .insert(node.to_string(), (learning_rate, updates));
        }
    }

    fn start_round(&mut self, global: &[Tensor]) -> Result<(), AggregationError> {
        self.round = Some(Round {
            global: global.to_vec(),
            sum_dy: global.iter().map(|t| vec![0.0; t.data.len()]).collect(),
            ..Round::default()
        });
        Ok(())
    }

    fn fold(
        &mut self,
        node: &str,
        _samples: u64,
        params: &[Tensor],
    ) -> Result<(), AggregationError> {
        let correction = self.correction(node, params).unwrap_or_default();
        let round = self
            .round
            .as_mut()
            .ok_or_else(|| AggregationError::State("fold before start_round".into()))?;
        let mismatch = |reason: String| AggregationError::Mismatch {
            node: node.into(),
            reason,
        };
        let (lr, updates) = round.replies.get(node).copied().unwrap_or((None, 0));
        let lr = lr.ok_or_else(|| {
            mismatch("reported no learning rate; Scaffold needs the plan's learning rate".into())
        })?;
        if updates == 0 || lr.is_nan() || lr <= 0.0 {
            return Err(mismatch(format!(
                "reported {updates} updates at learning rate {lr}; Scaffold needs both positive"
            )));
        }
        let scale = 1.0 / (lr * updates as f32);
        let mut variates = Variates::new();
        for ((x, y), (sum, delta)) in round
            .global
            .iter()
            .zip(params)
            .zip(round.sum_dy.iter_mut().zip(&correction))
        {
            let mut c_i = Vec::with_capacity(x.data.len());
            for (((&x, &y), s), &d) in x
                .data
                .iter()
                .zip(&y.data)
                .zip(sum.iter_mut())
                .zip(&delta.data)
            {
                let dy = x - y;
                *s += dy;
                c_i.push(d + dy * scale);
            }
            variates.insert(x.name.clone(), c_i);
        }
        round.new_variates.insert(node.to_string(), variates);
        Ok(())
    }

    fn finish(&mut self) -> Result<Vec<Tensor>, AggregationError> {
        let round = self
            .round
            .take()
            .ok_or_else(|| AggregationError::State("finish before start_round".into()))?;
        let trained = round.new_variates.len();
        if trained == 0 {
            return Err(AggregationError::Empty);
        }
        let step = self.server_lr / trained as f32;
        let new_global: Vec<Tensor> = round
            .global
            .iter()
            .zip(&round.sum_dy)
            .map(|(x, sum)| Tensor {
                name: x.name.clone(),
                shape: x.shape.clone(),
                data: x.data.iter().zip(sum).map(|(x, s)| x - step * s).collect(),
            })
            .collect();
        self.node_variates.extend(round.new_variates);
        let known = self.node_variates.len() as f32;
        let mut mean = Variates::new();
        for variates in self.node_variates.values() {
            for (name, values) in variates {
                let acc = mean
                    .entry(name.clone())
                    .or_insert_with(|| vec![0.0; values.len()]);
                for (a, v) in acc.iter_mut().zip(values) {
                    *a += v;
                }
            }
        }
        for values in mean.values_mut() {
            values.iter_mut().for_each(|v| *v /= known);
        }
        self.global_variate = mean;
        Ok(new_global)
    }

    fn state(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }

    fn load_state(&mut self, state: &Value) -> Result<(), AggregationError> {
        *self = serde_json::from_value(state.clone())
            .map_err(|e| AggregationError::State(format!("scaffold state: {e}")))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(data: &[f32]) -> Vec<Tensor> {
        vec![Tensor {
            name: "w".into(),
            shape: vec![data.len() as u32],
            data: data.to_vec(),
        }]
    }

    fn close(a: &[f32], b: &[f32]) {
        assert!(
            a.iter().zip(b).all(|(a, b)| (a - b).abs() < 1e-6),
            "{a:?} vs {b:?}"
        );
    }

    /// Two nodes, two parameters, two rounds, every value computed by hand.
    #[test]
    fn two_nodes_two_parameters_two_rounds_by_hand() {
        let mut s = Scaffold::new(1.0).unwrap();
        let x0 = t(&[1.0, 2.0]);
        // Round 1: no variates yet, corrections are zero.
        assert_eq!(s.correction("a", &x0).unwrap()[0].data, [0.0, 0.0]);
        s.start_round(&x0).unwrap();
        // a: K = 2, η = 0.5 → ηK = 1; y_a = [0, 2] → Δy_a = [1, 0], c_a = [1, 0].
        s.note_reply("a", Some(0.5), 2);
        s.fold("a", 10, &t(&[0.0, 2.0])).unwrap();
        // b: K = 4, η = 0.25 → ηK = 1; y_b = [1, 0] → Δy_b = [0, 2], c_b = [0, 2].
        s.note_reply("b", Some(0.25), 4);
        s.fold("b", 10, &t(&[1.0, 0.0])).unwrap();
        let x1 = s.finish().unwrap();
        // x1 = x0 − (1/2)(Δy_a + Δy_b) = [1, 2] − [0.5, 1] = [0.5, 1].
        close(&x1[0].data, &[0.5, 1.0]);
        // c = mean(c_a, c_b) = [0.5, 1]; δ_a = c_a − c = [0.5, −1]; δ_b = [−0.5, 1].
        close(&s.correction("a", &x1).unwrap()[0].data, &[0.5, -1.0]);
        close(&s.correction("b", &x1).unwrap()[0].data, &[-0.5, 1.0]);

        // Round 2, server_lr 0.5 from now on: only a trains.
        s.server_lr = 0.5;
        s.start_round(&x1).unwrap();
        // a: ηK = 2 (η 1, K 2); y_a = [0.5, 0] → Δy_a = [0, 1];
        // c_a = δ_a + Δy/(ηK) = [0.5, −1] + [0, 0.5] = [0.5, −0.5].
        s.note_reply("a", Some(1.0), 2);
        s.fold("a", 10, &t(&[0.5, 0.0])).unwrap();
        let x2 = s.finish().unwrap();
        // x2 = x1 − (0.5/1)·[0, 1] = [0.5, 0.5].
        close(&x2[0].data, &[0.5, 0.5]);
        // c = mean(c_a, c_b) over both known nodes = mean([0.5, −0.5], [0, 2]) = [0.25, 0.75].
        close(&s.global_variate["w"], &[0.25, 0.75]);
        close(&s.correction("b", &x2).unwrap()[0].data, &[-0.25, 1.25]);

        // State survives a breakpoint.
        let mut back = Scaffold::new(1.0).unwrap();
        back.load_state(&s.state()).unwrap();
        assert_eq!(back.state(), s.state());
    }

    #[test]
    fn a_node_without_learning_rate_or_updates_is_refused() {
        let mut s = Scaffold::new(1.0).unwrap();
        s.start_round(&t(&[1.0])).unwrap();
        s.note_reply("a", None, 3);
        let err = s.fold("a", 1, &t(&[0.0])).unwrap_err().to_string();
        assert!(err.contains("no learning rate"), "{err}");
        assert!(Scaffold::new(0.0).is_err());
    }
}
