//! Panics in init-model.

use fedwasm_plan::args::ArgType;
use fedwasm_plan::prelude::*;

pub struct Hostile {
    model: Sequential,
}

impl TrainingPlan for Hostile {
    const NAME: &'static str = "hostile-panic";
    const VERSION: &'static str = "0.1.0";
    const DESCRIPTION: &'static str = "Panics in init-model.";
    const MODEL_ARGS: &'static [ArgSpec] = &[ArgSpec::optional(
        "n_features",
        ArgType::Count,
        "30",
        "input width",
    )];

    fn init_model(args: &Args) -> PlanResult<Self> {
        misbehave()?;
        let n = args.count("n_features")?;
        Ok(Hostile {
            model: Sequential::new().linear(Linear::zeros("linear", n, 1)),
        })
    }

    fn training_data(&self, _info: &DatasetInfo) -> PlanResult<DataSpec> {
        Ok(DataSpec {
            features: FeatureSelection::AllExceptTarget,
            target: None,
            task: Task::BinaryClassification,
            scaling: Scaling::Standardize,
        })
    }

    fn model(&self) -> &Sequential {
        &self.model
    }

    fn model_mut(&mut self) -> &mut Sequential {
        &mut self.model
    }

    fn loss(&self) -> Loss {
        Loss::BinaryCrossEntropy
    }
}

fedwasm_plan::export_plan!(Hostile);

fn misbehave() -> PlanResult<()> {
    if std::hint::black_box(true) {
        panic!("hostile plan panicked on purpose");
    }
    Ok(())
}
