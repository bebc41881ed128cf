//! Linear regression, like scikit-learn's `SGDRegressor`: zero-initialised
//! `linear.weight` [1, n_features] and `linear.bias` [1], squared error loss.

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
            model: Sequential::new().add("linear", nn::Linear::zeros(n_features, 1)?),
        })
    }

    fn training_data(&self, _info: &DatasetInfo) -> PlanResult<DataSpec> {
        Ok(standardized_tabular(Task::Regression))
    }

    fn model(&self) -> &dyn Module {
        &self.model
    }

    fn loss(&self, output: &Tensor, targets: &Tensor) -> PlanResult<Tensor> {
        Regressor.loss(output, targets)
    }

    fn predict(&self, output: &Tensor) -> PlanResult<Tensor> {
        Regressor.predict(output)
    }
}

fedwasm_plan::export_plan!(LinearRegression);
