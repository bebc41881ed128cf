//! A multilayer perceptron classifier: `fc1 … fcN` linear layers with an
//! activation between them, PyTorch-style seeded initialisation, softmax
//! cross-entropy (or binary cross-entropy for two classes).

use fedwasm_plan::prelude::*;

/// The plan: a stack of linear layers.
pub struct Mlp {
    model: Sequential,
    classifier: Classifier,
    scaling: Scaling,
}

impl TrainingPlan for Mlp {
    const NAME: &'static str = "mlp";
    const VERSION: &'static str = "0.1.0";
    const DESCRIPTION: &'static str =
        "Multilayer perceptron classifier; layers fc1..fcN, weights drawn uniformly in ±1/√fan_in.";
    const MODEL_ARGS: &'static [ArgSpec] = &[
        ArgSpec::required("n_features", ArgType::Count, "number of input features"),
        ArgSpec::required("n_classes", ArgType::Count, "number of classes"),
        ArgSpec::optional(
            "hidden",
            ArgType::CountList,
            "[64]",
            "width of each hidden layer",
        ),
        ArgSpec::optional(
            "activation",
            ArgType::Text,
            "\"relu\"",
            "relu, sigmoid or tanh",
        ),
        ArgSpec::optional(
            "scaling",
            ArgType::Text,
            "\"standardize\"",
            "feature scaling by the node with its own training statistics: standardize, min-max or none",
        ),
    ];
    const OPTIMIZER_ARGS: &'static [ArgSpec] = &optimizer_args("0.1");

    fn init_model(args: &Args) -> PlanResult<Self> {
        let n_features = args.count_at_least("n_features", 1)?;
        let n_classes = args.count_at_least("n_classes", 2)?;
        let hidden = args.counts("hidden")?;
        if hidden.contains(&0) {
            return Err(invalid_argument(
                "model_args.hidden: every layer needs at least one unit",
            ));
        }
        let activation = args.text("activation")?.to_ascii_lowercase();
        if !matches!(activation.as_str(), "relu" | "sigmoid" | "tanh") {
            return Err(invalid_argument(format!(
                "model_args.activation must be relu, sigmoid or tanh, got \"{activation}\""
            )));
        }
        let scaling = match args.text("scaling")? {
            "standardize" => Scaling::Standardize,
            "min-max" => Scaling::MinMax,
            "none" => Scaling::None,
            other => {
                return Err(invalid_argument(format!(
                    "model_args.scaling must be standardize, min-max or none, got \"{other}\""
                )));
            }
        };
        let classifier = Classifier::new(n_classes);
        let mut widths = vec![n_features];
        widths.extend(&hidden);
        widths.push(classifier.outputs);
        let mut model = Sequential::new();
        for (i, pair) in widths.windows(2).enumerate() {
            if i > 0 {
                model = match activation.as_str() {
                    "relu" => model.push(nn::Relu),
                    "sigmoid" => model.push(nn::Sigmoid),
                    _ => model.push(nn::Tanh),
                };
            }
            model = model.add(&format!("fc{}", i + 1), nn::Linear::new(pair[0], pair[1])?);
        }
        Ok(Mlp {
            model,
            classifier,
            scaling,
        })
    }

    fn training_data(&self, _info: &DatasetInfo) -> PlanResult<DataSpec> {
        Ok(DataSpec {
            scaling: self.scaling,
            ..standardized_tabular(self.classifier.task)
        })
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

fedwasm_plan::export_plan!(Mlp);
