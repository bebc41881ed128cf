//! Named tensors in and out of a model: every parameter and buffer under its
//! `state_dict` name, checked by name and shape.

use std::collections::BTreeMap;

use crate::error::{PlanResult, invalid_data};
use crate::nn::Named;
use crate::tensor::no_grad;
use crate::types::Tensor as WitTensor;

/// Every named tensor as a WIT tensor, in model order.
pub fn to_tensors(named: &[Named]) -> Vec<WitTensor> {
    named
        .iter()
        .map(|n| WitTensor {
            name: n.name.clone(),
            shape: n.tensor.shape().iter().map(|&d| d as u32).collect(),
            data: n.tensor.to_vec(),
        })
        .collect()
}

/// Check that `tensors` name each of `named` exactly once with the right
/// shape and finite values, and return their data in model order. `what`
/// names the list in messages ("parameters", "gradient correction").
pub fn match_tensors(
    named: &[Named],
    tensors: Vec<WitTensor>,
    what: &str,
) -> PlanResult<Vec<Vec<f32>>> {
    let mut by_name: BTreeMap<String, WitTensor> = BTreeMap::new();
    for t in tensors {
        let expected: usize = t.shape.iter().map(|&d| d as usize).product();
        if expected != t.data.len() {
            return Err(invalid_data(format!(
                "{what}: tensor `{}` has shape {:?} ({expected} values) but {} values",
                t.name,
                t.shape,
                t.data.len()
            )));
        }
        if let Some(i) = t.data.iter().position(|v| !v.is_finite()) {
            return Err(invalid_data(format!(
                "{what}: tensor `{}` holds a non-finite value at index {i}",
                t.name
            )));
        }
        let name = t.name.clone();
        if by_name.insert(name.clone(), t).is_some() {
            return Err(invalid_data(format!(
                "{what}: tensor `{name}` appears twice"
            )));
        }
    }
    let mut out = Vec::with_capacity(named.len());
    for n in named {
        let shape = n.tensor.shape();
        let t = by_name.remove(&n.name).ok_or_else(|| {
            invalid_data(format!(
                "{what}: missing tensor `{}` of shape {shape:?}",
                n.name
            ))
        })?;
        let got: Vec<usize> = t.shape.iter().map(|&d| d as usize).collect();
        if got != shape {
            return Err(invalid_data(format!(
                "{what}: tensor `{}` has shape {got:?}, the model needs {shape:?}",
                n.name
            )));
        }
        out.push(t.data);
    }
    if let Some(extra) = by_name.keys().next() {
        let known: Vec<&str> = named.iter().map(|n| n.name.as_str()).collect();
        return Err(invalid_data(format!(
            "{what}: unknown tensor `{extra}`; the model has {}",
            known.join(", ")
        )));
    }
    Ok(out)
}

/// Replace every named tensor's values by the matching WIT tensor's.
pub fn load_tensors(named: &[Named], tensors: Vec<WitTensor>) -> PlanResult<()> {
    let values = match_tensors(named, tensors, "parameters")?;
    no_grad(|| {
        for (n, v) in named.iter().zip(values) {
            n.tensor.values_mut().copy_from_slice(&v);
        }
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::{Linear, Module, named_tensors};

    fn model() -> Linear {
        Linear::zeros(2, 1).unwrap()
    }

    #[test]
    fn round_trip_by_name_in_any_order() {
        let m = model();
        let named = named_tensors(&m as &dyn Module);
        let mut tensors = to_tensors(&named);
        tensors.reverse();
        tensors[0].data = vec![5.0]; // bias
        tensors[1].data = vec![1.0, 2.0]; // weight
        load_tensors(&named, tensors).unwrap();
        let back = to_tensors(&named);
        assert_eq!(back[0].name, "weight");
        assert_eq!(back[0].data, vec![1.0, 2.0]);
        assert_eq!(back[1].data, vec![5.0]);
    }

    #[test]
    fn mismatches_are_named() {
        let m = model();
        let named = named_tensors(&m as &dyn Module);
        let mut t = to_tensors(&named);
        t[0].shape = vec![2, 1];
        let err = load_tensors(&named, t).unwrap_err();
        assert!(err.message.contains("`weight` has shape [2, 1]"), "{err}");
        let mut t = to_tensors(&named);
        t.pop();
        assert!(
            load_tensors(&named, t)
                .unwrap_err()
                .message
                .contains("missing tensor `bias`")
        );
        let mut t = to_tensors(&named);
        t.push(WitTensor {
            name: "fc2.bias".into(),
            shape: vec![1],
            data: vec![0.0],
        });
        assert!(
            load_tensors(&named, t)
                .unwrap_err()
                .message
                .contains("unknown tensor `fc2.bias`")
        );
        let mut t = to_tensors(&named);
        t[1].data[0] = f32::NAN;
        assert!(
            load_tensors(&named, t)
                .unwrap_err()
                .message
                .contains("non-finite")
        );
    }
}
