//! A plan written the way an author outside the SDK would: its own layer
//! ([`GatedLinear`], a linear map whose outputs pass through learned
//! sigmoid gates), layer normalization and a smoothing of neighbouring
//! units by average pooling, and its own training step (cross-entropy plus
//! a penalty composed of the SDK's element-wise, broadcasting, reducing and
//! softmax operations, back-propagated as two losses). Its parity test
//! runs every one of those operations natively and on a node's host.

use fedwasm_plan::prelude::*;

/// y = (x·Wᵀ + b) ⊙ σ(g): a linear layer with one learned gate per output.
pub struct GatedLinear {
    inner: nn::Linear,
    gate: Tensor,
}

impl GatedLinear {
    /// Gates start at 0 (σ = ½), the linear part as PyTorch initialises it.
    pub fn new(n_in: usize, n_out: usize) -> PlanResult<Self> {
        Ok(GatedLinear {
            inner: nn::Linear::new(n_in, n_out)?,
            gate: nn::init::constant(&[n_out], 0.0)?,
        })
    }
}

impl Module for GatedLinear {
    fn forward(&self, x: &Tensor) -> PlanResult<Tensor> {
        self.inner.forward(x)?.mul(&self.gate.sigmoid())
    }

    fn visit(&self, v: &mut Visitor<'_>) {
        v.module("linear", &self.inner);
        v.parameter("gate", &self.gate);
    }
}

/// The plan: a gated hidden layer, layer norm, smoothing, tanh, and an
/// output layer.
pub struct Custom {
    hidden: GatedLinear,
    norm: nn::LayerNorm,
    /// A learned offset per position of a sample in its batch, modulo 3
    /// (an embedding table, to exercise lookups).
    position: Tensor,
    out: nn::Linear,
    head: Classifier,
    gate_penalty: f32,
}

/// The whole model, as the trainer sees it: `hidden.linear.weight`,
/// `hidden.gate`, `out.weight`, ….
struct View<'a>(&'a Custom);

impl Module for View<'_> {
    fn forward(&self, x: &Tensor) -> PlanResult<Tensor> {
        let h = self.0.norm.forward(&self.0.hidden.forward(x)?)?;
        let [batch, width] = [h.shape()[0], h.shape()[1]];
        // Each unit averaged with its neighbours: a 1×3 window over [B, 1, 1, H].
        let smooth = Conv2dOptions {
            padding: [0, 1],
            ..Conv2dOptions::default()
        };
        let h = h
            .reshape(&[batch, 1, 1, width])?
            .avg_pool2d([1, 3], smooth)?
            .reshape(&[batch, width])?;
        let slots = Tensor::new((0..batch).map(|i| (i % 3) as f32).collect(), &[batch])?;
        let h = h.add(&slots.embedding(&self.0.position)?)?;
        self.0.out.forward(&h.tanh())
    }

    fn visit(&self, v: &mut Visitor<'_>) {
        v.module("hidden", &self.0.hidden);
        v.module("norm", &self.0.norm);
        v.module("out", &self.0.out);
        v.parameter("position", &self.0.position);
    }
}

impl Module for Custom {
    fn forward(&self, x: &Tensor) -> PlanResult<Tensor> {
        View(self).forward(x)
    }

    fn visit(&self, v: &mut Visitor<'_>) {
        View(self).visit(v)
    }
}

impl TrainingPlan for Custom {
    const NAME: &'static str = "custom";
    const VERSION: &'static str = "0.1.0";
    const DESCRIPTION: &'static str = "A gated MLP with its own layer and training step.";
    const MODEL_ARGS: &'static [ArgSpec] = &[
        ArgSpec::required("n_features", ArgType::Count, "input width"),
        ArgSpec::required("n_classes", ArgType::Count, "number of classes"),
        ArgSpec::optional("hidden", ArgType::Count, "16", "gated hidden units"),
        ArgSpec::optional(
            "gate_penalty",
            ArgType::Number,
            "0.01",
            "weight of ‖gate‖² in the objective",
        ),
    ];

    fn init_model(args: &Args) -> PlanResult<Self> {
        let n_features = args.count_at_least("n_features", 1)?;
        let hidden = args.count_at_least("hidden", 1)?;
        let head = Classifier::new(args.count_at_least("n_classes", 2)?);
        let gate_penalty = args.number("gate_penalty")?;
        if gate_penalty < 0.0 {
            return Err(invalid_argument(format!(
                "model_args.gate_penalty must be ≥ 0, got {gate_penalty}"
            )));
        }
        Ok(Custom {
            hidden: GatedLinear::new(n_features, hidden)?,
            norm: nn::LayerNorm::new(&[hidden])?,
            position: nn::init::constant(&[3, hidden], 0.0)?,
            out: nn::Linear::new(hidden, head.outputs)?,
            head,
            gate_penalty,
        })
    }

    fn training_data(&self, _info: &DatasetInfo) -> PlanResult<DataSpec> {
        Ok(standardized_tabular(self.head.task))
    }

    fn model(&self) -> &dyn Module {
        self
    }

    fn loss(&self, output: &Tensor, targets: &Tensor) -> PlanResult<Tensor> {
        self.head.loss(output, targets)
    }

    fn predict(&self, output: &Tensor) -> PlanResult<Tensor> {
        self.head.predict(output)
    }

    /// Two losses: the data term, then a penalty, each back-propagated; the
    /// gradients add up before the SDK's optimizer update.
    fn training_step(&mut self, batch: &Minibatch, step: &mut Step<'_>) -> PlanResult<Tensor> {
        let output = Module::forward(self, &batch.features)?;
        let data = self.loss(&output, &batch.targets)?;
        step.backward(&data)?;
        let penalty = self.penalty(&output)?;
        step.backward(&penalty)?;
        data.add(&penalty)
    }
}

impl Custom {
    /// gate_penalty·‖softplus(gate)‖² + 10⁻³·(spread − entropy + pulls):
    /// the outputs' spread around their row means, tempered and clamped,
    /// the predictions' entropy (rewarded) and the pointwise losses, from
    /// `output` (kept in the graph, so the model's layers get this term's
    /// gradient too).
    fn penalty(&self, output: &Tensor) -> PlanResult<Tensor> {
        let softplus = self.hidden.gate.exp().add_scalar(1.0).log();
        let gates = softplus.square().sum().scale(self.gate_penalty);
        let centred = output.sub(&output.mean_dim(1, true)?)?;
        let temper = output.abs().add_scalar(1.0).sqrt();
        let spread = centred.div(&temper)?.clamp(-3.0, 3.0).powf(2.0).mean();
        let p = output.softmax(1)?;
        let entropy = p
            .mul(&output.log_softmax(1)?)?
            .sum_dim(1, false)?
            .neg()
            .mean();
        // The pointwise losses, as regularizers: outputs pulled towards
        // their own (detached) probabilities and centred values.
        let anchor = centred.detach();
        let pulls = loss::binary_cross_entropy_with_logits(output, &p.detach(), None)?
            .add(&loss::huber(output, &anchor, 0.5)?)?
            .add(&loss::mse(output, &anchor)?)?
            .add(&loss::l1(output, &anchor)?)?;
        gates.add(&spread.sub(&entropy)?.add(&pulls)?.scale(1e-3))
    }
}

fedwasm_plan::export_plan!(Custom);
