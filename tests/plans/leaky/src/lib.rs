//! An approved plan that tries to send training rows to the researcher
//! around the parameters: in its logs, in its loss and learning rate, and,
//! with `model_args.fail = 1`, in its error text. Every leak starts with
//! `LEAK:` so a test can look for it in everything that leaves the node.

use std::sync::atomic::{AtomicBool, Ordering};

use fedwasm_plan::prelude::*;

static FAIL: AtomicBool = AtomicBool::new(false);

/// A one-layer binary classifier that leaks.
pub struct Leaky {
    model: Sequential,
}

impl TrainingPlan for Leaky {
    const NAME: &'static str = "hostile-leaky";
    const VERSION: &'static str = "0.1.0";
    const DESCRIPTION: &'static str = "Tries to send rows out around the parameters.";
    const MODEL_ARGS: &'static [ArgSpec] = &[
        ArgSpec::optional("n_features", ArgType::Count, "30", "input width"),
        ArgSpec::optional(
            "fail",
            ArgType::Count,
            "0",
            "1: fail with rows in the error",
        ),
    ];

    fn init_model(args: &Args) -> PlanResult<Self> {
        FAIL.store(args.count("fail")? == 1, Ordering::Relaxed);
        Ok(Leaky {
            model: Sequential::new()
                .add("linear", nn::Linear::zeros(args.count("n_features")?, 1)?),
        })
    }

    fn training_data(&self, _info: &DatasetInfo) -> PlanResult<DataSpec> {
        Ok(standardized_tabular(Task::BinaryClassification))
    }

    fn model(&self) -> &dyn Module {
        &self.model
    }

    fn loss(&self, output: &Tensor, targets: &Tensor) -> PlanResult<Tensor> {
        Classifier::new(2).loss(output, targets)
    }

    fn predict(&self, output: &Tensor) -> PlanResult<Tensor> {
        Classifier::new(2).predict(output)
    }
}

/// The first row of a batch's features, as text.
#[cfg(target_arch = "wasm32")]
fn row(features: &Tensor) -> String {
    let width = features.shape().get(1).copied().unwrap_or(1);
    let data = features.values();
    let values: Vec<String> = data[..width.min(data.len())]
        .iter()
        .map(|v| format!("{v:.6}"))
        .collect();
    format!("LEAK:{}", values.join(","))
}

#[cfg(target_arch = "wasm32")]
#[doc(hidden)]
pub struct Export;

#[cfg(target_arch = "wasm32")]
const _: () = {
    use fedwasm_plan::__bindings::exports::fedwasm::plan::plan::Guest;
    use fedwasm_plan::export::with_trainer;
    use fedwasm_plan::types::*;

    impl Guest for Export {
        fn describe() -> PlanInfo {
            fedwasm_plan::Trainer::<Leaky>::describe()
        }
        fn init_model(model_args: String) -> Result<(), PlanError> {
            with_trainer::<Leaky, _>(|t| t.init_model(&model_args))
        }
        fn init_optimizer(optimizer_args: String) -> Result<(), PlanError> {
            with_trainer::<Leaky, _>(|t| t.init_optimizer(&optimizer_args))
        }
        fn training_data(info: DatasetInfo) -> Result<DataSpec, PlanError> {
            with_trainer::<Leaky, _>(|t| t.training_data(&info))
        }
        fn training_step(
            batch: fedwasm_plan::__bindings::exports::fedwasm::plan::plan::Batch,
        ) -> Result<StepReport, PlanError> {
            let (features, targets) = fedwasm_plan::export::batch_tensors(batch)?;
            let leak = row(&features);
            if FAIL.load(Ordering::Relaxed) {
                return Err(fedwasm_plan::error::invalid_data(leak));
            }
            fedwasm_plan::log::info(&leak);
            let first = features.values().first().copied().unwrap_or(0.0);
            let mut report = with_trainer::<Leaky, _>(|t| t.training_step(features, targets))?;
            // The loss and learning rate carry a value of the data.
            report.loss = first;
            report.learning_rate = Some(first);
            Ok(report)
        }
        fn predict(
            features: fedwasm_plan::__bindings::fedwasm::plan::compute::Tensor,
            shape: Vec<u32>,
        ) -> Result<Array, PlanError> {
            let x = fedwasm_plan::export::host_tensor(features, &shape)?;
            with_trainer::<Leaky, _>(|t| t.predict(x))
        }
        fn get_parameters() -> Vec<Tensor> {
            with_trainer::<Leaky, _>(|t| t.get_parameters())
        }
        fn set_parameters(parameters: Vec<Tensor>) -> Result<(), PlanError> {
            with_trainer::<Leaky, _>(|t| t.set_parameters(parameters))
        }
        fn set_gradient_correction(correction: Vec<Tensor>) -> Result<(), PlanError> {
            with_trainer::<Leaky, _>(|t| t.set_gradient_correction(correction))
        }
    }

    fedwasm_plan::__bindings::__export_training_plan!(Export with_types_in fedwasm_plan::__bindings);
};
