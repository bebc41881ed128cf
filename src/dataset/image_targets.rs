//! What an image dataset's items are labelled with, checked against the
//! plan's task before anything is fitted: a class per image, yes/no labels,
//! or a mask (segmentation); a mismatch says what to change.

use super::DatasetError;
use super::images::{ImageSet, ImageTarget, TargetKind};
use crate::sandbox::types::Task;

fn invalid(reason: impl Into<String>) -> DatasetError {
    DatasetError::Invalid(reason.into())
}

/// How each item's target is given to the plan, checked against its task.
pub(super) enum Targets {
    /// One value per item (a class index), or (multi-label) one 0/1 per
    /// label: the values back to back and the shape of one item's.
    PerImage(Vec<f32>, Vec<u32>),
    /// The items' masks, fitted with their images.
    Masks,
}

/// Every item's target, checked against the plan's task.
pub(super) fn targets(set: &ImageSet, task: &Task) -> Result<Targets, DatasetError> {
    let classes = set.classes.len();
    let listed = || set.classes.join(", ");
    match (set.kind, *task) {
        (TargetKind::Mask, Task::Segmentation(n)) if n as usize == classes && n >= 2 => {
            Ok(Targets::Masks)
        }
        (TargetKind::Mask, Task::Segmentation(n)) if classes < 2 => Err(invalid(format!(
            "the plan asks for segmentation into {n} classes, but every mask of the dataset holds the one value {}; a mask needs a background and at least one class",
            listed()
        ))),
        (TargetKind::Mask, Task::Segmentation(n)) => Err(invalid(format!(
            "the plan's task has {n} classes, but the dataset's masks hold {classes} values ({}); set the plan's number of classes to {classes}",
            listed()
        ))),
        (TargetKind::Mask, _) => Err(invalid(format!(
            "the dataset's images carry masks of {classes} values ({}); ask for segmentation into {classes} classes",
            listed()
        ))),
        (_, Task::Segmentation(_)) => Err(invalid(format!(
            "the plan asks for segmentation, but the images carry {}; segmentation trains on a manifest with a mask column",
            set.kind.name()
        ))),
        (TargetKind::Class, Task::BinaryClassification) if classes == 2 => {
            Ok(Targets::PerImage(class_indices(set), Vec::new()))
        }
        (TargetKind::Class, Task::MulticlassClassification(n)) if n as usize == classes => {
            Ok(Targets::PerImage(class_indices(set), Vec::new()))
        }
        (TargetKind::MultiLabel, Task::MultiLabelClassification(n)) if n as usize == classes => {
            let flags = set
                .items
                .iter()
                .flat_map(|item| match &item.target {
                    ImageTarget::Labels(flags) => {
                        flags.iter().map(|&f| f32::from(u8::from(f))).collect()
                    }
                    _ => vec![0.0; classes],
                })
                .collect();
            Ok(Targets::PerImage(flags, vec![classes as u32]))
        }
        (_, Task::Regression) => Err(invalid(format!(
            "the plan asks for regression, but the images carry {}; ask for a classification task",
            set.kind.name()
        ))),
        (TargetKind::MultiLabel, Task::MultiLabelClassification(n)) => Err(invalid(format!(
            "the plan's task has {n} labels, but the dataset has {classes} ({}); set the plan's number of labels to {classes}",
            listed()
        ))),
        (TargetKind::MultiLabel, _) => Err(invalid(format!(
            "the dataset's images carry {classes} yes/no labels each ({}); ask for multi-label classification",
            listed()
        ))),
        (TargetKind::Class, Task::MultiLabelClassification(_)) => Err(invalid(format!(
            "the plan asks for multi-label targets, but the dataset's images carry one of {classes} classes each ({}); ask for classification",
            listed()
        ))),
        (TargetKind::Class, _) => Err(invalid(format!(
            "the plan's task is {task:?}, but the dataset has {classes} classes ({}); set the plan's number of classes to {classes}",
            listed()
        ))),
    }
}

fn class_indices(set: &ImageSet) -> Vec<f32> {
    set.items
        .iter()
        .map(|item| match item.target {
            ImageTarget::Class(c) => c as f32,
            _ => 0.0,
        })
        .collect()
}
