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
                fn training_step(batch: Batch) -> Result<StepReport, PlanError> {
                    with_trainer::<$plan, _>(|t| t.training_step(batch))
                }
                fn predict(features: Array) -> Result<Array, PlanError> {
                    with_trainer::<$plan, _>(|t| t.predict(features))
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
