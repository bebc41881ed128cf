//! A plan compiled natively, driven through the same [`PlanDriver`] interface
//! as the sandbox: for the parity test and the sandbox-overhead benchmark.

use fedwasm::sandbox::types as host;
use fedwasm::sandbox::{SandboxError, error_kind_name};
use fedwasm::training::PlanDriver;
use fedwasm_plan::types as sdk;
use fedwasm_plan::{Trainer, TrainingPlan};

/// A native [`Trainer`] behind the [`PlanDriver`] trait.
pub struct NativePlan<P: TrainingPlan> {
    trainer: Trainer<P>,
}

impl<P: TrainingPlan> NativePlan<P> {
    /// A fresh plan whose random stream starts at `seed` (as the host would seed it).
    pub fn new(seed: [u8; 32]) -> Self {
        fedwasm_plan::random::seed_native(seed);
        NativePlan {
            trainer: Trainer::new(),
        }
    }
}

fn plan_error(function: &'static str, e: sdk::PlanError) -> SandboxError {
    let kind = match e.kind {
        sdk::ErrorKind::InvalidArgument => host::ErrorKind::InvalidArgument,
        sdk::ErrorKind::InvalidData => host::ErrorKind::InvalidData,
        sdk::ErrorKind::InvalidState => host::ErrorKind::InvalidState,
        sdk::ErrorKind::Internal => host::ErrorKind::Internal,
    };
    SandboxError::Plan {
        function,
        kind: error_kind_name(kind),
        message: e.message,
    }
}

fn to_sdk_tensor(t: &host::Tensor) -> sdk::Tensor {
    sdk::Tensor {
        name: t.name.clone(),
        shape: t.shape.clone(),
        data: t.data.clone(),
    }
}

/// The SDK tensor over a copy of `a`'s values.
fn to_sdk_tensor_of(
    a: host::Array,
    what: &'static str,
) -> Result<fedwasm_plan::Tensor, SandboxError> {
    let shape: Vec<usize> = a.shape.iter().map(|&d| d as usize).collect();
    fedwasm_plan::Tensor::new(a.data, &shape).map_err(|e| plan_error(what, e))
}

fn to_host_args(args: Vec<sdk::ArgInfo>) -> Vec<host::ArgInfo> {
    args.into_iter()
        .map(|a| host::ArgInfo {
            name: a.name,
            type_name: a.type_name,
            required: a.required,
            default_value: a.default_value,
            help: a.help,
        })
        .collect()
}

impl<P: TrainingPlan> PlanDriver for NativePlan<P> {
    fn describe(&mut self) -> Result<host::PlanInfo, SandboxError> {
        let i = Trainer::<P>::describe();
        Ok(host::PlanInfo {
            name: i.name,
            version: i.version,
            description: i.description,
            model_args: to_host_args(i.model_args),
            optimizer_args: to_host_args(i.optimizer_args),
        })
    }

    fn init_model(&mut self, model_args: &str) -> Result<(), SandboxError> {
        self.trainer
            .init_model(model_args)
            .map_err(|e| plan_error("init-model", e))
    }

    fn init_optimizer(&mut self, optimizer_args: &str) -> Result<(), SandboxError> {
        self.trainer
            .init_optimizer(optimizer_args)
            .map_err(|e| plan_error("init-optimizer", e))
    }

    fn training_data(&mut self, info: &host::DatasetInfo) -> Result<host::DataSpec, SandboxError> {
        let info = sdk::DatasetInfo {
            columns: info
                .columns
                .iter()
                .map(|c| sdk::ColumnInfo {
                    name: c.name.clone(),
                    column_type: match c.column_type {
                        host::ColumnType::Integer => sdk::ColumnType::Integer,
                        host::ColumnType::Float => sdk::ColumnType::Float,
                    },
                })
                .collect(),
            sample_count: info.sample_count,
            shape: info.shape.clone(),
            target: info.target.clone(),
            images: info.images.as_ref().map(|i| sdk::ImageInfo {
                channels: i.channels,
                height: i.height,
                width: i.width,
                target_kind: match i.target_kind {
                    host::ImageTargetKind::Class => sdk::ImageTargetKind::Class,
                    host::ImageTargetKind::MultiLabel => sdk::ImageTargetKind::MultiLabel,
                    host::ImageTargetKind::Mask => sdk::ImageTargetKind::Mask,
                },
                classes: i.classes.clone(),
            }),
        };
        let spec = self
            .trainer
            .training_data(&info)
            .map_err(|e| plan_error("training-data", e))?;
        Ok(host::DataSpec {
            features: match spec.features {
                sdk::FeatureSelection::AllExceptTarget => host::FeatureSelection::AllExceptTarget,
                sdk::FeatureSelection::Columns(c) => host::FeatureSelection::Columns(c),
            },
            target: spec.target,
            task: match spec.task {
                sdk::Task::BinaryClassification => host::Task::BinaryClassification,
                sdk::Task::MulticlassClassification(n) => host::Task::MulticlassClassification(n),
                sdk::Task::Regression => host::Task::Regression,
                sdk::Task::MultiLabelClassification(n) => host::Task::MultiLabelClassification(n),
                sdk::Task::Segmentation(n) => host::Task::Segmentation(n),
            },
            scaling: match spec.scaling {
                sdk::Scaling::None => host::Scaling::None,
                sdk::Scaling::Standardize => host::Scaling::Standardize,
                sdk::Scaling::MinMax => host::Scaling::MinMax,
            },
            images: spec.images.map(|i| host::ImageSpec {
                height: i.height,
                width: i.width,
                channels: i.channels,
                fit: match i.fit {
                    sdk::ImageFit::Resize => host::ImageFit::Resize,
                    sdk::ImageFit::CenterCrop => host::ImageFit::CenterCrop,
                },
                mean: i.mean,
                std: i.std,
                augmentation: host::Augmentation {
                    horizontal_flip: i.augmentation.horizontal_flip,
                    vertical_flip: i.augmentation.vertical_flip,
                    crop_padding: i.augmentation.crop_padding,
                    max_rotation_degrees: i.augmentation.max_rotation_degrees,
                },
            }),
        })
    }

    fn training_step(&mut self, batch: host::Batch) -> Result<host::StepReport, SandboxError> {
        let features = to_sdk_tensor_of(batch.features, "training-step")?;
        let targets = to_sdk_tensor_of(batch.targets, "training-step")?;
        let r = self
            .trainer
            .training_step(features, targets)
            .map_err(|e| plan_error("training-step", e))?;
        Ok(host::StepReport {
            loss: r.loss,
            samples: r.samples,
            learning_rate: r.learning_rate,
        })
    }

    fn predict(&mut self, features: host::Array) -> Result<host::Array, SandboxError> {
        let out = self
            .trainer
            .predict(to_sdk_tensor_of(features, "predict")?)
            .map_err(|e| plan_error("predict", e))?;
        Ok(host::Array {
            shape: out.shape,
            data: out.data,
        })
    }

    fn get_parameters(&mut self) -> Result<Vec<host::Tensor>, SandboxError> {
        Ok(self
            .trainer
            .get_parameters()
            .into_iter()
            .map(|t| host::Tensor {
                name: t.name,
                shape: t.shape,
                data: t.data,
            })
            .collect())
    }

    fn set_parameters(&mut self, parameters: &[host::Tensor]) -> Result<(), SandboxError> {
        let p = parameters.iter().map(to_sdk_tensor).collect();
        self.trainer
            .set_parameters(p)
            .map_err(|e| plan_error("set-parameters", e))
    }

    fn set_gradient_correction(&mut self, correction: &[host::Tensor]) -> Result<(), SandboxError> {
        let c = correction.iter().map(to_sdk_tensor).collect();
        self.trainer
            .set_gradient_correction(c)
            .map_err(|e| plan_error("set-gradient-correction", e))
    }
}
