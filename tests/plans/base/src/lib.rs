//! A valid training plan around one misbehaving function: each hostile test
//! plan is `hostile_plan!(name, description, misbehave)`, and `misbehave` runs
//! at the start of `init-model`.

pub use fedwasm_plan;

/// Define and export the plan `Hostile` that calls `$misbehave()` in `init-model`.
#[macro_export]
macro_rules! hostile_plan {
    ($name:literal, $description:literal, $misbehave:path) => {
        use $crate::fedwasm_plan::prelude::*;

        /// The plan; a one-layer binary classifier once `misbehave` returns.
        pub struct Hostile {
            model: Sequential,
        }

        impl TrainingPlan for Hostile {
            const NAME: &'static str = $name;
            const VERSION: &'static str = "0.1.0";
            const DESCRIPTION: &'static str = $description;
            const MODEL_ARGS: &'static [ArgSpec] = &[ArgSpec::optional(
                "n_features",
                ArgType::Count,
                "30",
                "input width",
            )];

            fn init_model(args: &Args) -> PlanResult<Self> {
                $misbehave()?;
                let n = args.count("n_features")?;
                Ok(Hostile {
                    model: Sequential::new()
                        .push(nn::Flatten(1))
                        .add("linear", nn::Linear::zeros(n, 1)?),
                })
            }

            /// Reports everything the node tells it about the data, then
            /// asks for it: a table as it is, images at their own size.
            fn training_data(&self, info: &DatasetInfo) -> PlanResult<DataSpec> {
                $crate::fedwasm_plan::log::info(&format!("dataset-info: {info:?}"));
                Ok(match &info.images {
                    Some(i) => image_data(
                        Task::BinaryClassification,
                        (i.channels, i.height, i.width),
                        (0.5, 0.5),
                        no_augmentation(),
                    ),
                    None => standardized_tabular(Task::BinaryClassification),
                })
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

        $crate::fedwasm_plan::export_plan!(Hostile);
    };
}
