//! The trait a training plan implements.

use crate::args::{ArgSpec, Args};
use crate::error::PlanResult;
use crate::layers::Sequential;
use crate::loss::Loss;
use crate::optim::{OPTIMIZER_ARGS, Optimizer};
use crate::types::{DataSpec, DatasetInfo};

/// A training plan: a model, its loss, and what data it wants.
///
/// The SDK's [`crate::Trainer`] turns this into the WIT functions: it parses
/// arguments against [`TrainingPlan::MODEL_ARGS`], runs forward, loss,
/// backward and the optimizer in `training-step`, and exchanges parameters by
/// name. A plan with a custom training loop can still implement everything
/// here and be driven the same way.
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

    /// Build the model from checked model arguments. Random initial values must
    /// come from [`crate::random`].
    fn init_model(model_args: &Args) -> PlanResult<Self>;

    /// Build the optimizer from checked optimizer arguments.
    fn init_optimizer(&self, optimizer_args: &Args) -> PlanResult<Optimizer> {
        Optimizer::from_args(optimizer_args)
    }

    /// Say which columns to train on, the task and the scaling.
    fn training_data(&self, info: &DatasetInfo) -> PlanResult<DataSpec>;

    /// The model.
    fn model(&self) -> &Sequential;

    /// The model, mutably.
    fn model_mut(&mut self) -> &mut Sequential;

    /// The training objective.
    fn loss(&self) -> Loss;
}

/// What a classifier over `n_classes` needs: its task, its loss and how many
/// outputs its last layer has (one logit for two classes, one per class otherwise).
#[derive(Debug, Clone, Copy)]
pub struct Classifier {
    /// Binary or multiclass classification.
    pub task: crate::types::Task,
    /// Binary or softmax cross-entropy.
    pub loss: Loss,
    /// Width of the model's output.
    pub outputs: usize,
}

impl Classifier {
    /// The classifier for `n_classes` ≥ 2.
    pub fn new(n_classes: usize) -> Self {
        use crate::types::Task;
        if n_classes == 2 {
            Classifier {
                task: Task::BinaryClassification,
                loss: Loss::BinaryCrossEntropy,
                outputs: 1,
            }
        } else {
            Classifier {
                task: Task::MulticlassClassification(n_classes as u32),
                loss: Loss::SoftmaxCrossEntropy,
                outputs: n_classes,
            }
        }
    }
}

/// The usual answer to `training-data` for tabular data: every column but the
/// target as features, standardized with the node's training statistics.
pub fn standardized_tabular(task: crate::types::Task) -> DataSpec {
    DataSpec {
        features: crate::types::FeatureSelection::AllExceptTarget,
        target: None,
        task,
        scaling: crate::types::Scaling::Standardize,
    }
}
