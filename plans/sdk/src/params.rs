//! Named parameter tensors in and out of a [`Sequential`] model.

use std::collections::BTreeMap;

use crate::error::{PlanResult, invalid_data};
use crate::layers::Sequential;
use crate::types::Tensor;

/// Every parameter of `model` as a WIT tensor, in model order.
pub fn to_tensors(model: &Sequential) -> Vec<Tensor> {
    model
        .parameters()
        .into_iter()
        .map(|(name, shape, data)| Tensor {
            name,
            shape: shape.iter().map(|&d| d as u32).collect(),
            data: data.to_vec(),
        })
        .collect()
}

/// Check that `tensors` name each parameter of `model` exactly once with the
/// right shape and finite values, and return their data in model order.
/// `what` names the list in messages ("parameters", "gradient correction").
pub fn match_tensors(
    model: &Sequential,
    tensors: Vec<Tensor>,
    what: &str,
) -> PlanResult<Vec<Vec<f32>>> {
    let mut by_name: BTreeMap<String, Tensor> = BTreeMap::new();
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
    let params = model.parameters();
    let mut out = Vec::with_capacity(params.len());
    for (name, shape, _) in &params {
        let t = by_name.remove(name).ok_or_else(|| {
            invalid_data(format!(
                "{what}: missing tensor `{name}` of shape {shape:?}"
            ))
        })?;
        let got: Vec<usize> = t.shape.iter().map(|&d| d as usize).collect();
        if &got != shape {
            return Err(invalid_data(format!(
                "{what}: tensor `{name}` has shape {got:?}, the model needs {shape:?}"
            )));
        }
        out.push(t.data);
    }
    if let Some(extra) = by_name.keys().next() {
        let known: Vec<String> = params.iter().map(|(n, _, _)| n.clone()).collect();
        return Err(invalid_data(format!(
            "{what}: unknown tensor `{extra}`; the model has {}",
            known.join(", ")
        )));
    }
    Ok(out)
}

/// Replace every parameter of `model` by the matching tensor.
pub fn load_tensors(model: &mut Sequential, tensors: Vec<Tensor>) -> PlanResult<()> {
    let values = match_tensors(model, tensors, "parameters")?;
    model.replace_parameters(values);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::Linear;

    fn model() -> Sequential {
        Sequential::new().linear(Linear::zeros("fc", 2, 1))
    }

    #[test]
    fn round_trip_by_name_in_any_order() {
        let mut m = model();
        let mut tensors = to_tensors(&m);
        tensors.reverse();
        tensors[0].data = vec![5.0]; // fc.bias
        tensors[1].data = vec![1.0, 2.0]; // fc.weight
        load_tensors(&mut m, tensors).unwrap();
        let back = to_tensors(&m);
        assert_eq!(back[0].name, "fc.weight");
        assert_eq!(back[0].data, vec![1.0, 2.0]);
        assert_eq!(back[1].data, vec![5.0]);
    }

    #[test]
    fn mismatches_are_named() {
        let mut m = model();
        let mut t = to_tensors(&m);
        t[0].shape = vec![2, 1];
        let err = load_tensors(&mut m, t).unwrap_err();
        assert!(
            err.message.contains("`fc.weight` has shape [2, 1]"),
            "{err}"
        );
        let mut t = to_tensors(&m);
        t.pop();
        assert!(
            load_tensors(&mut m, t)
                .unwrap_err()
                .message
                .contains("missing tensor `fc.bias`")
        );
        let mut t = to_tensors(&m);
        t.push(Tensor {
            name: "fc2.bias".into(),
            shape: vec![1],
            data: vec![0.0],
        });
        assert!(
            load_tensors(&mut m, t)
                .unwrap_err()
                .message
                .contains("unknown tensor `fc2.bias`")
        );
        let mut t = to_tensors(&m);
        t[1].data[0] = f32::NAN;
        assert!(
            load_tensors(&mut m, t)
                .unwrap_err()
                .message
                .contains("non-finite")
        );
    }
}
