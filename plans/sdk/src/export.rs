//! The component glue behind [`crate::export_plan!`]: one [`Trainer`] per
//! instance, reached from the exported functions.

use std::any::Any;
use std::cell::RefCell;

use crate::plan::TrainingPlan;
use crate::trainer::Trainer;

thread_local! {
    static TRAINER: RefCell<Option<Box<dyn Any>>> = const { RefCell::new(None) };
}

/// Run `f` on this instance's trainer, creating it on first use.
pub fn with_trainer<P: TrainingPlan, R>(f: impl FnOnce(&mut Trainer<P>) -> R) -> R {
    TRAINER.with(|cell| {
        let mut slot = cell.borrow_mut();
        let boxed = slot.get_or_insert_with(|| Box::new(Trainer::<P>::new()));
        let trainer = boxed
            .downcast_mut::<Trainer<P>>()
            .expect("one plan type per component");
        f(trainer)
    })
}

/// A tensor over values the host handed the plan, with their shape.
#[cfg(target_arch = "wasm32")]
pub fn host_tensor(
    tensor: crate::__bindings::fedwasm::plan::compute::Tensor,
    shape: &[u32],
) -> crate::PlanResult<crate::Tensor> {
    let shape: Vec<usize> = shape.iter().map(|&d| d as usize).collect();
    crate::Tensor::on_host(tensor, &shape)
}

/// The features and targets of a batch the host holds.
#[cfg(target_arch = "wasm32")]
pub fn batch_tensors(
    batch: crate::__bindings::exports::fedwasm::plan::plan::Batch,
) -> crate::PlanResult<(crate::Tensor, crate::Tensor)> {
    Ok((
        host_tensor(batch.features, &batch.features_shape)?,
        host_tensor(batch.targets, &batch.targets_shape)?,
    ))
}

/// Export a [`TrainingPlan`] type as the `fedwasm:plan/training-plan` world.
///
/// Expands to nothing when compiled natively, so a plan crate can also be used
/// as an ordinary library (tests, benchmarks, parity checks).
#[macro_export]
macro_rules! export_plan {
    ($plan:ty) => {
        #[cfg(target_arch = "wasm32")]
        #[doc(hidden)]
        pub struct __FedwasmPlanExport;

        #[cfg(target_arch = "wasm32")]
        const _: () = {
            use $crate::__bindings::exports::fedwasm::plan::plan::Guest;
            use $crate::export::with_trainer;
            use $crate::types::*;

            impl Guest for __FedwasmPlanExport {
                fn describe() -> PlanInfo {
                    $crate::Trainer::<$plan>::describe()
                }
                fn init_model(model_args: String) -> Result<(), PlanError> {
                    with_trainer::<$plan, _>(|t| t.init_model(&model_args))
                }
                fn init_optimizer(optimizer_args: String) -> Result<(), PlanError> {
                    with_trainer::<$plan, _>(|t| t.init_optimizer(&optimizer_args))
                }
                fn training_data(info: DatasetInfo) -> Result<DataSpec, PlanError> {
                    with_trainer::<$plan, _>(|t| t.training_data(&info))
                }
                fn training_step(
                    batch: $crate::__bindings::exports::fedwasm::plan::plan::Batch,
                ) -> Result<StepReport, PlanError> {
                    let (features, targets) = $crate::export::batch_tensors(batch)?;
                    with_trainer::<$plan, _>(|t| t.training_step(features, targets))
                }
                fn predict(
                    features: $crate::__bindings::fedwasm::plan::compute::Tensor,
                    shape: Vec<u32>,
                ) -> Result<Array, PlanError> {
                    let x = $crate::export::host_tensor(features, &shape)?;
                    with_trainer::<$plan, _>(|t| t.predict(x))
                }
                fn get_parameters() -> Vec<Tensor> {
                    with_trainer::<$plan, _>(|t| t.get_parameters())
                }
                fn set_parameters(parameters: Vec<Tensor>) -> Result<(), PlanError> {
                    with_trainer::<$plan, _>(|t| t.set_parameters(parameters))
                }
                fn set_gradient_correction(correction: Vec<Tensor>) -> Result<(), PlanError> {
                    with_trainer::<$plan, _>(|t| t.set_gradient_correction(correction))
                }
            }

            $crate::__bindings::__export_training_plan!(__FedwasmPlanExport with_types_in $crate::__bindings);
        };
    };
}
