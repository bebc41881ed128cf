//! A valid classifier whose model also shows 70,000 one-value tensors to
//! the trainer: `get-parameters` returns more tensors than a parameter file
//! may hold (65,536). The host must refuse the output before writing or
//! uploading anything.

use fedwasm_plan::prelude::*;

/// Extra tensors, past the parameter-file limit.
const EXTRA: usize = 70_000;

/// A linear layer and a swarm of unused scalars.
pub struct Swarm {
    linear: nn::Linear,
    swarm: Vec<Tensor>,
}

impl Module for Swarm {
    fn forward(&self, x: &Tensor) -> PlanResult<Tensor> {
        self.linear.forward(x)
    }

    fn visit(&self, v: &mut Visitor<'_>) {
        v.module("linear", &self.linear);
        for (i, t) in self.swarm.iter().enumerate() {
            v.parameter(&format!("s{i}"), t);
        }
    }
}

impl TrainingPlan for Swarm {
    const NAME: &'static str = "hostile-swarm";
    const VERSION: &'static str = "0.1.0";
    const DESCRIPTION: &'static str = "Returns 70,002 tensors from get-parameters.";
    const MODEL_ARGS: &'static [ArgSpec] = &[ArgSpec::optional(
        "n_features",
        ArgType::Count,
        "30",
        "input width",
    )];

    fn init_model(args: &Args) -> PlanResult<Self> {
        let n = args.count("n_features")?;
        Ok(Swarm {
            linear: nn::Linear::zeros(n, 1)?,
            swarm: (0..EXTRA)
                .map(|_| nn::init::constant(&[1], 0.0))
                .collect::<PlanResult<_>>()?,
        })
    }

    fn training_data(&self, _info: &DatasetInfo) -> PlanResult<DataSpec> {
        Ok(standardized_tabular(Task::BinaryClassification))
    }

    fn model(&self) -> &dyn Module {
        self
    }

    fn loss(&self, output: &Tensor, targets: &Tensor) -> PlanResult<Tensor> {
        Classifier::new(2).loss(output, targets)
    }

    fn predict(&self, output: &Tensor) -> PlanResult<Tensor> {
        Classifier::new(2).predict(output)
    }
}

fedwasm_plan::export_plan!(Swarm);
