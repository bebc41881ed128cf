//! Linear regression, like scikit-learn's `SGDRegressor`: zero-initialised
//! `linear.weight` [1, n_features] and `linear.bias` [1], squared error loss.

use fedwasm_plan::args::ArgType;
use fedwasm_plan::prelude::*;

/// The plan: one linear layer with a single output.
pub struct LinearRegression {
    model: Sequential,
}

impl TrainingPlan for LinearRegression {
    const NAME: &'static str = "linear-regression";
    const VERSION: &'static str = "0.1.0";
    const DESCRIPTION: &'static str =
        "Least-squares linear regression trained by mini-batch SGD; zero-initialised parameters.";
    const MODEL_ARGS: &'static [ArgSpec] = &[ArgSpec::required(
        "n_features",
        ArgType::Count,
        "number of input features",
    )];

    fn init_model(args: &Args) -> PlanResult<Self> {
        let n_features = args.count_at_least("n_features", 1)?;
        Ok(LinearRegression {
            model: Sequential::new().linear(Linear::zeros("linear", n_features, 1)),
        })
    }

    fn training_data(&self, _info: &DatasetInfo) -> PlanResult<DataSpec> {
        Ok(standardized_tabular(Task::Regression))
    }

    fn model(&self) -> &Sequential {
        &self.model
    }

    fn model_mut(&mut self) -> &mut Sequential {
        &mut self.model
    }

    fn loss(&self) -> Loss {
        Loss::MeanSquaredError
    }
}

fedwasm_plan::export_plan!(LinearRegression);
