//! The trait a training plan implements, and the usual heads for it.

use crate::args::{ArgSpec, Args};
use crate::error::PlanResult;
use crate::error::invalid_argument;
use crate::loss::{CrossEntropy, binary_cross_entropy_with_logits, cross_entropy, mse, soft_dice};
use crate::nn::Module;
use crate::optim::{OPTIMIZER_ARGS, Optimizer};
use crate::tensor::Tensor;
use crate::trainer::Step;
use crate::types::{Augmentation, DataSpec, DatasetInfo, ImageFit, ImageSpec, Task};

/// One mini-batch as tensors: features `[N, …]` and targets `[N, …]`.
#[derive(Debug, Clone)]
pub struct Minibatch {
    /// `[N, n_features]` for a table, `[N, C, H, W]` for images.
    pub features: Tensor,
    /// `[N]`: class index or regression value per sample; `[N, labels]`
    /// of 0/1 (multi-label); `[N, H, W]` class indices (segmentation).
    pub targets: Tensor,
}

/// A training plan: a model, its loss, what data it wants, and optionally
/// its own training step.
///
/// The SDK's [`crate::Trainer`] turns this into the WIT functions: it parses
/// arguments against [`TrainingPlan::MODEL_ARGS`], runs
/// [`TrainingPlan::training_step`] in training mode, applies DP-SGD,
/// Scaffold's correction, FedProx and the optimizer, and exchanges every
/// parameter and buffer by name.
pub trait TrainingPlan: Sized + 'static {
    /// Short stable name, matched against the experiment's plan name.
    const NAME: &'static str;
    /// The plan's own version.
    const VERSION: &'static str;
    /// One paragraph for the researcher and the node operator.
    const DESCRIPTION: &'static str;
    /// Keys accepted in model_args.
    const MODEL_ARGS: &'static [ArgSpec];
    /// Keys accepted in optimizer_args; the SDK's optimizers by default.
    const OPTIMIZER_ARGS: &'static [ArgSpec] = OPTIMIZER_ARGS;

    /// Build the model from checked model arguments. Random initial values
    /// must come from [`crate::random`] (the [`crate::nn`] layers do).
    fn init_model(model_args: &Args) -> PlanResult<Self>;

    /// Build the optimizer from checked optimizer arguments.
    fn init_optimizer(&self, optimizer_args: &Args) -> PlanResult<Optimizer> {
        Optimizer::from_args(optimizer_args)
    }

    /// Say which columns to train on, the task and the scaling.
    fn training_data(&self, info: &DatasetInfo) -> PlanResult<DataSpec>;

    /// The model: every parameter and buffer it visits is exchanged.
    fn model(&self) -> &dyn Module;

    /// The model's output for a batch of features.
    fn forward(&self, features: &Tensor) -> PlanResult<Tensor> {
        self.model().forward(features)
    }

    /// The training objective: the batch mean of per-sample losses.
    fn loss(&self, output: &Tensor, targets: &Tensor) -> PlanResult<Tensor>;

    /// What `predict` returns for a model output: class probabilities
    /// `[n, classes]` (binary: `[n, 1]`) or predictions `[n, 1]`.
    fn predict(&self, output: &Tensor) -> PlanResult<Tensor>;

    /// One update's worth of work, in training mode: compute the loss and
    /// call [`Step::backward`] on it (any number of times: several losses,
    /// micro-batches). Return the loss to report. The SDK then adds noise
    /// (DP-SGD), applies the correction and FedProx, and steps the
    /// optimizer. Override for custom objectives, like Fed-BioMed's
    /// `training_step`.
    fn training_step(&mut self, batch: &Minibatch, step: &mut Step<'_>) -> PlanResult<Tensor> {
        let output = self.forward(&batch.features)?;
        let loss = self.loss(&output, &batch.targets)?;
        step.backward(&loss)?;
        Ok(loss)
    }
}

/// A classifier over `n_classes`: one logit and binary cross-entropy for two
/// classes, one logit per class and softmax cross-entropy otherwise; or,
/// [`Classifier::multi_label`], one logit and binary cross-entropy per label.
#[derive(Debug, Clone)]
pub struct Classifier {
    /// Binary or multiclass classification.
    pub task: Task,
    /// Width of the model's output.
    pub outputs: usize,
    /// Class weights and label smoothing (multiclass).
    pub cross_entropy: CrossEntropy,
}

impl Classifier {
    /// The classifier for `n_classes` ≥ 2.
    pub fn new(n_classes: usize) -> Self {
        let (task, outputs) = if n_classes == 2 {
            (Task::BinaryClassification, 1)
        } else {
            (Task::MulticlassClassification(n_classes as u32), n_classes)
        };
        Classifier {
            task,
            outputs,
            cross_entropy: CrossEntropy::default(),
        }
    }

    /// A multi-label classifier over `n_labels` ≥ 1 yes/no labels.
    pub fn multi_label(n_labels: usize) -> Self {
        Classifier {
            task: Task::MultiLabelClassification(n_labels as u32),
            outputs: n_labels,
            cross_entropy: CrossEntropy::default(),
        }
    }

    fn is_multi_label(&self) -> bool {
        matches!(self.task, Task::MultiLabelClassification(_))
    }

    /// The loss of logits `[N, outputs]` against class indices `[N]`, or
    /// (multi-label) against 0/1 labels `[N, outputs]`: the mean over
    /// samples and labels.
    pub fn loss(&self, output: &Tensor, targets: &Tensor) -> PlanResult<Tensor> {
        if self.is_multi_label() {
            binary_cross_entropy_with_logits(output, targets, None)
        } else if self.outputs == 1 {
            let t = targets.reshape(output.shape())?;
            binary_cross_entropy_with_logits(output, &t, None)
        } else {
            cross_entropy(output, targets, &self.cross_entropy)
        }
    }

    /// Probabilities from logits: each label's own (multi-label), or over
    /// the classes.
    pub fn predict(&self, output: &Tensor) -> PlanResult<Tensor> {
        if self.outputs == 1 || self.is_multi_label() {
            Ok(output.sigmoid())
        } else {
            output.softmax(1)
        }
    }
}

/// A class per pixel (segmentation) over `n_classes` ≥ 2, class 0 the
/// background: the model outputs logits `[N, n_classes, H, W]`, trained
/// with softmax cross-entropy per pixel plus, with a `dice_weight`, soft
/// Dice over the foreground classes (which keeps small structures from
/// drowning in background pixels); `predict` gives each class's
/// probability per pixel.
#[derive(Debug, Clone)]
pub struct Segmenter {
    /// `segmentation(n_classes)`.
    pub task: Task,
    /// Classes per pixel, background included.
    pub classes: usize,
    /// Class weights and label smoothing of the per-pixel cross-entropy.
    pub cross_entropy: CrossEntropy,
    /// Weight of the soft Dice term (0: cross-entropy only).
    pub dice_weight: f32,
}

impl Segmenter {
    /// The segmenter over `n_classes` ≥ 2, cross-entropy only.
    pub fn new(n_classes: usize) -> PlanResult<Self> {
        if n_classes < 2 {
            return Err(invalid_argument(format!(
                "segmentation needs at least 2 classes (background and one), got {n_classes}"
            )));
        }
        Ok(Segmenter {
            task: Task::Segmentation(n_classes as u32),
            classes: n_classes,
            cross_entropy: CrossEntropy::default(),
            dice_weight: 0.0,
        })
    }

    /// Per-pixel cross-entropy of logits `[N, C, H, W]` against class
    /// indices `[N, H, W]`, plus `dice_weight` × soft Dice of the softmax
    /// against the one-hot masks, background left out.
    pub fn loss(&self, output: &Tensor, targets: &Tensor) -> PlanResult<Tensor> {
        let ce = cross_entropy(output, targets, &self.cross_entropy)?;
        if self.dice_weight == 0.0 {
            return Ok(ce);
        }
        let shape = output.shape().to_vec();
        let plane: usize = shape[2..].iter().product();
        let classes = self.classes;
        let mut one_hot = vec![0.0f32; output.numel()];
        for (p, &t) in targets.values().iter().enumerate() {
            let (sample, pixel) = (p / plane, p % plane);
            let k = t as usize;
            if k > 0 && k < classes {
                one_hot[(sample * classes + k) * plane + pixel] = 1.0;
            }
        }
        let foreground: Vec<f32> = (0..output.numel())
            .map(|i| {
                if (i / plane).is_multiple_of(classes) {
                    0.0
                } else {
                    1.0
                }
            })
            .collect();
        let foreground = Tensor::new(foreground, &shape)?;
        let probs = output.softmax(1)?.mul(&foreground)?;
        let dice = soft_dice(&probs, &Tensor::new(one_hot, &shape)?, 1.0)?;
        ce.add(&dice.scale(self.dice_weight))
    }

    /// Each class's probability per pixel, `[N, C, H, W]`.
    pub fn predict(&self, output: &Tensor) -> PlanResult<Tensor> {
        output.softmax(1)
    }
}

/// Regression on one output: mean squared error, predictions as they are.
#[derive(Debug, Clone, Copy, Default)]
pub struct Regressor;

impl Regressor {
    /// Mean squared error of `[N, 1]` outputs against `[N]` targets.
    pub fn loss(&self, output: &Tensor, targets: &Tensor) -> PlanResult<Tensor> {
        mse(output, &targets.reshape(output.shape())?)
    }

    /// The outputs themselves.
    pub fn predict(&self, output: &Tensor) -> PlanResult<Tensor> {
        Ok(output.detach())
    }
}

/// The usual answer to `training-data` for tabular data: every column but the
/// target as features, standardized with the node's training statistics.
pub fn standardized_tabular(task: Task) -> DataSpec {
    DataSpec {
        features: crate::types::FeatureSelection::AllExceptTarget,
        target: None,
        task,
        scaling: crate::types::Scaling::Standardize,
        images: None,
    }
}

/// The usual answer to `training-data` for images: `height` × `width` with
/// `channels` (1 or 3), resized, each channel's [0, 1] values normalized with
/// `mean` and `std`, augmented as `augmentation` says. Build the
/// augmentation with [`no_augmentation`] and change what you need.
pub fn image_data(
    task: Task,
    (channels, height, width): (u32, u32, u32),
    (mean, std): (f32, f32),
    augmentation: Augmentation,
) -> DataSpec {
    DataSpec {
        features: crate::types::FeatureSelection::AllExceptTarget,
        target: None,
        task,
        scaling: crate::types::Scaling::None,
        images: Some(ImageSpec {
            height,
            width,
            channels,
            fit: ImageFit::Resize,
            mean: vec![mean; channels as usize],
            std: vec![std; channels as usize],
            augmentation,
        }),
    }
}

/// How a plan wants its images prepared, read from the model arguments
/// image plans share (the `cnn` and `unet` plans declare them): `fit`
/// (`"resize"` or `"center-crop"`), `mean` and `std` (one value for every
/// channel, or one per channel), `horizontal_flip`, `vertical_flip`,
/// `crop_padding` and `rotation` (0 to 45 degrees).
#[derive(Debug, Clone)]
pub struct ImageArgs {
    /// How the node brings images to the plan's size.
    pub fit: ImageFit,
    /// Subtracted from each channel's [0, 1] values, one per channel.
    pub mean: Vec<f32>,
    /// Each channel divided by its value after the mean is subtracted; positive.
    pub std: Vec<f32>,
    /// Seeded augmentation of training batches.
    pub augmentation: Augmentation,
}

impl ImageArgs {
    /// Read and check the arguments for images of `channels` channels; an
    /// error names the one at fault.
    pub fn from_args(args: &Args, channels: usize) -> PlanResult<Self> {
        let mean = per_channel(args, "mean", channels)?;
        let std = per_channel(args, "std", channels)?;
        if let Some(bad) = std.iter().find(|s| **s <= 0.0 || !s.is_finite()) {
            return Err(invalid_argument(format!(
                "model_args.std must be positive, got {bad}"
            )));
        }
        let fit = match args.text("fit")? {
            "resize" => ImageFit::Resize,
            "center-crop" => ImageFit::CenterCrop,
            other => {
                return Err(invalid_argument(format!(
                    "model_args.fit must be resize or center-crop, got \"{other}\""
                )));
            }
        };
        let rotation = args.number("rotation")?;
        if !(0.0..=45.0).contains(&rotation) {
            return Err(invalid_argument(format!(
                "model_args.rotation must be 0 to 45 degrees, got {rotation}"
            )));
        }
        Ok(ImageArgs {
            fit,
            mean,
            std,
            augmentation: Augmentation {
                horizontal_flip: args.boolean("horizontal_flip")?,
                vertical_flip: args.boolean("vertical_flip")?,
                crop_padding: args.count("crop_padding")? as u32,
                max_rotation_degrees: rotation,
            },
        })
    }

    /// The answer to `training-data` for `task` on images of `(channels,
    /// height, width)` prepared as these arguments say.
    pub fn data_spec(&self, task: Task, shape: (u32, u32, u32)) -> DataSpec {
        let mut spec = image_data(task, shape, (0.0, 1.0), self.augmentation);
        if let Some(images) = spec.images.as_mut() {
            images.fit = self.fit;
            images.mean = self.mean.clone();
            images.std = self.std.clone();
        }
        spec
    }
}

/// The argument `name` as one value per channel: one number for every
/// channel, or a list of exactly `channels` numbers.
fn per_channel(args: &Args, name: &str, channels: usize) -> PlanResult<Vec<f32>> {
    let values = args.numbers(name)?;
    match values.len() {
        1 => Ok(vec![values[0]; channels]),
        n if n == channels => Ok(values),
        n => Err(invalid_argument(format!(
            "model_args.{name} has {n} values for images of {channels} channels; give one for every channel, or one per channel"
        ))),
    }
}

/// Augmentation switched off, to start from.
pub fn no_augmentation() -> Augmentation {
    Augmentation {
        horizontal_flip: false,
        vertical_flip: false,
        crop_padding: 0,
        max_rotation_degrees: 0.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::ArgType;

    const IMAGE_ARGS: &[ArgSpec] = &[
        ArgSpec::optional("fit", ArgType::Text, "\"resize\"", ""),
        ArgSpec::optional("mean", ArgType::NumberOrList, "0.5", ""),
        ArgSpec::optional("std", ArgType::NumberOrList, "0.25", ""),
        ArgSpec::optional("horizontal_flip", ArgType::Boolean, "false", ""),
        ArgSpec::optional("vertical_flip", ArgType::Boolean, "false", ""),
        ArgSpec::optional("crop_padding", ArgType::Count, "0", ""),
        ArgSpec::optional("rotation", ArgType::Number, "0", ""),
    ];

    fn image_args(json: &str, channels: usize) -> PlanResult<ImageArgs> {
        ImageArgs::from_args(&Args::parse("model_args", json, IMAGE_ARGS)?, channels)
    }

    #[test]
    fn mean_and_std_are_one_for_every_channel_or_one_per_channel() {
        let one = image_args(r#"{"mean": 0.2}"#, 3).unwrap();
        assert_eq!((one.mean, one.std), (vec![0.2; 3], vec![0.25; 3]));
        let imagenet = image_args(
            r#"{"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}"#,
            3,
        )
        .unwrap();
        let spec = imagenet.data_spec(Task::MulticlassClassification(10), (3, 8, 8));
        let images = spec.images.unwrap();
        assert_eq!(images.mean, [0.485, 0.456, 0.406]);
        assert_eq!(images.std, [0.229, 0.224, 0.225]);
        let err = image_args(r#"{"mean": [0.4, 0.5]}"#, 3).unwrap_err();
        assert!(
            err.message
                .contains("model_args.mean has 2 values for images of 3 channels"),
            "{}",
            err.message
        );
        let err = image_args(r#"{"std": [0.2, 0.0, 0.1]}"#, 3).unwrap_err();
        assert!(
            err.message.contains("std must be positive, got 0"),
            "{}",
            err.message
        );
        let err = image_args(r#"{"mean": []}"#, 1).unwrap_err();
        assert!(
            err.message.contains("number or list<number>"),
            "{}",
            err.message
        );
    }
}
