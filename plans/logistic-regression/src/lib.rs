//! Logistic regression, like scikit-learn's `SGDClassifier(loss="log_loss")`:
//! parameters start at zero; binary tasks use one logit and binary
//! cross-entropy, multiclass tasks one logit per class and softmax
//! cross-entropy. Labels must be integers 0..n_classes-1.

use fedwasm_plan::prelude::*;

/// The plan: one linear layer named `linear`.
pub struct LogisticRegression {
    model: Sequential,
    classifier: Classifier,
}

impl TrainingPlan for LogisticRegression {
    const NAME: &'static str = "logistic-regression";
    const VERSION: &'static str = "0.1.0";
    const DESCRIPTION: &'static str = "Logistic regression trained by mini-batch SGD; zero-initialised parameters \
         `linear.weight` [classes or 1, n_features] and `linear.bias`.";
    const MODEL_ARGS: &'static [ArgSpec] = &[
        ArgSpec::required("n_features", ArgType::Count, "number of input features"),
        ArgSpec::required(
            "n_classes",
            ArgType::Count,
            "number of classes (2 for binary)",
        ),
    ];
    const OPTIMIZER_ARGS: &'static [ArgSpec] = &optimizer_args("0.1");

    fn init_model(args: &Args) -> PlanResult<Self> {
        let n_features = args.count_at_least("n_features", 1)?;
        let n_classes = args.count_at_least("n_classes", 2)?;
        let classifier = Classifier::new(n_classes);
        let model =
            Sequential::new().add("linear", nn::Linear::zeros(n_features, classifier.outputs)?);
        Ok(LogisticRegression { model, classifier })
    }

    fn training_data(&self, _info: &DatasetInfo) -> PlanResult<DataSpec> {
        Ok(standardized_tabular(self.classifier.task))
    }

    fn model(&self) -> &dyn Module {
        &self.model
    }

    fn loss(&self, output: &Tensor, targets: &Tensor) -> PlanResult<Tensor> {
        self.classifier.loss(output, targets)
    }

    fn predict(&self, output: &Tensor) -> PlanResult<Tensor> {
        self.classifier.predict(output)
    }
}

fedwasm_plan::export_plan!(LogisticRegression);
