//! Where the first global model comes from: the plan's own `init-model`
//! values, or a file the researcher gives (a pretrained model), with the
//! tensors the researcher names taken from the plan instead — a
//! classification head of another size, when torchvision's ImageNet
//! weights (1000 classes) start a study of two.

use crate::researcher::aggregators::{AggregationError, align_parameters};
use crate::sandbox::types::Tensor;

/// The first global parameters, in the plan's order: `given`'s tensors,
/// except those `reinitialize` names, which are the plan's own (`own`).
/// Also says, for each re-initialised tensor, what the file had instead.
/// An error names the tensor that does not fit and how to fix it.
pub(super) fn starting_parameters(
    own: &[Tensor],
    given: &[Tensor],
    reinitialize: &[String],
) -> Result<(Vec<Tensor>, Vec<String>), String> {
    let mut notes = Vec::new();
    for name in reinitialize {
        let Some(mine) = own.iter().find(|t| t.name == *name) else {
            let names: Vec<&str> = own.iter().map(|t| t.name.as_str()).collect();
            return Err(format!(
                "reinitialize names `{name}`, which the plan's model does not have (its tensors: {})",
                shortened(&names)
            ));
        };
        let theirs = match given.iter().find(|t| t.name == *name) {
            Some(t) => format!("the file's is {:?}", t.shape),
            None => "the file has none".to_string(),
        };
        notes.push(format!(
            "initial_parameters: `{name}` is the plan's own initialisation, of shape {:?} ({theirs})",
            mine.shape
        ));
    }
    let kept: Vec<Tensor> = given
        .iter()
        .filter(|t| !reinitialize.contains(&t.name))
        .cloned()
        .chain(
            own.iter()
                .filter(|t| reinitialize.contains(&t.name))
                .cloned(),
        )
        .collect();
    let aligned = align_parameters("initial_parameters", own, kept).map_err(|e| match e {
        AggregationError::Mismatch { reason, .. } => format!(
            "it {reason}; a tensor meant to differ (a head for another n_classes) can be listed in `reinitialize` to start from the plan's own"
        ),
        other => other.to_string(),
    })?;
    Ok((aligned, notes))
}

/// At most eight names, then how many more.
fn shortened(names: &[&str]) -> String {
    let shown = names.iter().take(8).copied().collect::<Vec<_>>().join(", ");
    match names.len().saturating_sub(8) {
        0 => shown,
        more => format!("{shown}, … and {more} more"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Name, shape and values: what a tensor is.
    fn parts(tensors: &[Tensor]) -> Vec<(&str, &[u32], &[f32])> {
        tensors
            .iter()
            .map(|t| (t.name.as_str(), t.shape.as_slice(), t.data.as_slice()))
            .collect()
    }

    fn tensor(name: &str, shape: &[u32], value: f32) -> Tensor {
        let len = shape.iter().product::<u32>() as usize;
        Tensor {
            name: name.into(),
            shape: shape.to_vec(),
            data: vec![value; len],
        }
    }

    #[test]
    fn a_head_of_another_size_is_the_plans_when_named_and_refused_otherwise() {
        let own = [tensor("body", &[3], 0.0), tensor("fc.weight", &[2, 3], 0.5)];
        let imagenet = [
            tensor("fc.weight", &[1000, 3], 9.0),
            tensor("body", &[3], 1.0),
        ];
        let err = starting_parameters(&own, &imagenet, &[]).unwrap_err();
        assert!(
            err.contains("tensor `fc.weight` has shape [1000, 3]")
                && err.contains("`reinitialize`"),
            "{err}"
        );
        let (start, notes) =
            starting_parameters(&own, &imagenet, &["fc.weight".to_string()]).unwrap();
        let want = [tensor("body", &[3], 1.0), tensor("fc.weight", &[2, 3], 0.5)];
        assert_eq!(parts(&start), parts(&want));
        assert_eq!(
            notes,
            [
                "initial_parameters: `fc.weight` is the plan's own initialisation, of shape [2, 3] (the file's is [1000, 3])"
            ]
        );
        // A file without the head, the same.
        let (start, notes) =
            starting_parameters(&own, &imagenet[1..], &["fc.weight".to_string()]).unwrap();
        assert_eq!(parts(&start[1..]), parts(&own[1..]));
        assert!(notes[0].ends_with("(the file has none)"), "{notes:?}");
        let err = starting_parameters(&own, &imagenet, &["fc.wieght".to_string()]).unwrap_err();
        assert!(
            err.contains(
                "`fc.wieght`, which the plan's model does not have (its tensors: body, fc.weight)"
            ),
            "{err}"
        );
    }
}
