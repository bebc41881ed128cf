//! [`Trainer`]: a plan driven the way the WIT functions ask, natively or in wasm.

use crate::args::Args;
use crate::error::{PlanResult, invalid_data, invalid_state};
use crate::nn::{Named, Role, named_tensors};
use crate::optim::Optimizer;
use crate::params;
use crate::plan::{Minibatch, TrainingPlan};
use crate::privacy::DpSgd;
use crate::tensor::{Tensor, no_grad, with_training};
use crate::types::{Array, DataSpec, DatasetInfo, PlanInfo, StepReport, Tensor as WitTensor};

/// What a plan's [`TrainingPlan::training_step`] back-propagates through:
/// plain gradients, or per-sample clipped ones under DP-SGD.
pub struct Step<'a> {
    params: &'a [Tensor],
    privacy: Option<DpSgd>,
    samples: usize,
}

impl Step<'_> {
    /// Add the gradient of `loss` (a batch mean) to every parameter's
    /// gradient. Under DP-SGD, each sample's gradient is clipped first; the
    /// loss must then be a mean over this step's whole batch.
    pub fn backward(&mut self, loss: &Tensor) -> PlanResult<()> {
        match self.privacy {
            Some(dp) => dp.backward(loss, self.params, self.samples),
            None => loss.backward(),
        }
    }

    /// Samples in this step's batch.
    pub fn samples(&self) -> usize {
        self.samples
    }
}

/// A plan with its optimizer and gradient correction: the state of one task.
pub struct Trainer<P> {
    plan: Option<P>,
    named: Vec<Named>,
    params: Vec<Tensor>,
    optimizer: Option<Optimizer>,
    correction: Option<Vec<Tensor>>,
    privacy: Option<DpSgd>,
}

impl<P: TrainingPlan> Default for Trainer<P> {
    fn default() -> Self {
        Trainer {
            plan: None,
            named: Vec::new(),
            params: Vec::new(),
            optimizer: None,
            correction: None,
            privacy: None,
        }
    }
}

/// Check that `t` has at least `min_rank` dimensions, samples first.
fn check_rank(t: &Tensor, what: &str, min_rank: usize) -> PlanResult<()> {
    if t.ndim() < min_rank {
        return Err(invalid_data(format!(
            "{what} must be [samples, …], got shape {:?}",
            t.shape()
        )));
    }
    Ok(())
}

fn to_array(t: &Tensor) -> Array {
    Array {
        shape: t.shape().iter().map(|&d| d as u32).collect(),
        data: t.to_vec(),
    }
}

impl<P: TrainingPlan> Trainer<P> {
    /// A trainer with no model yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// `describe`: the plan's name, version and arguments.
    pub fn describe() -> PlanInfo {
        PlanInfo {
            name: P::NAME.to_string(),
            version: P::VERSION.to_string(),
            description: P::DESCRIPTION.to_string(),
            model_args: P::MODEL_ARGS.iter().map(|s| s.info()).collect(),
            optimizer_args: P::OPTIMIZER_ARGS.iter().map(|s| s.info()).collect(),
        }
    }

    fn plan(&self) -> PlanResult<&P> {
        self.plan
            .as_ref()
            .ok_or_else(|| invalid_state("call init-model first"))
    }

    /// `init-model`: parse model_args and build the model.
    pub fn init_model(&mut self, model_args: &str) -> PlanResult<()> {
        let args = Args::parse("model_args", model_args, P::MODEL_ARGS)?;
        let plan = P::init_model(&args)?;
        self.named = named_tensors(plan.model());
        let mut seen = std::collections::BTreeSet::new();
        for n in &self.named {
            if !seen.insert(n.name.as_str()) {
                return Err(invalid_state(format!(
                    "the model names two tensors `{}`; give sub-modules distinct names",
                    n.name
                )));
            }
        }
        self.params = self
            .named
            .iter()
            .filter(|n| n.role == Role::Parameter)
            .map(|n| n.tensor.clone())
            .collect();
        self.plan = Some(plan);
        self.optimizer = None;
        self.correction = None;
        Ok(())
    }

    /// `init-optimizer`: parse optimizer_args and build the optimizer (and
    /// DP-SGD when `dp_clip` is set).
    pub fn init_optimizer(&mut self, optimizer_args: &str) -> PlanResult<()> {
        let args = Args::parse("optimizer_args", optimizer_args, P::OPTIMIZER_ARGS)?;
        self.optimizer = Some(self.plan()?.init_optimizer(&args)?);
        self.privacy = DpSgd::from_args(&args)?;
        Ok(())
    }

    /// `training-data`: what the plan wants from the node's dataset.
    pub fn training_data(&self, info: &DatasetInfo) -> PlanResult<DataSpec> {
        self.plan()?.training_data(info)
    }

    /// `training-step`: the plan's step in training mode, then noise,
    /// correction and one optimizer update, on one batch: features and
    /// targets, samples first.
    pub fn training_step(&mut self, features: Tensor, targets: Tensor) -> PlanResult<StepReport> {
        check_rank(&features, "batch features", 2)?;
        let samples = features.shape()[0];
        check_rank(&targets, "batch targets", 1)?;
        if targets.shape().first() != Some(&samples) {
            return Err(invalid_data(format!(
                "a batch of {samples} samples came with targets of shape {:?}",
                targets.shape()
            )));
        }
        let Self {
            plan,
            params,
            optimizer,
            correction,
            privacy,
            ..
        } = self;
        let plan = plan
            .as_mut()
            .ok_or_else(|| invalid_state("call init-model first"))?;
        let optimizer = optimizer
            .as_mut()
            .ok_or_else(|| invalid_state("call init-optimizer first"))?;
        for p in params.iter() {
            p.set_grad(None);
        }
        let mut step = Step {
            params,
            privacy: *privacy,
            samples,
        };
        let minibatch = Minibatch { features, targets };
        let loss = with_training(true, || plan.training_step(&minibatch, &mut step))?;
        let loss = loss.item()?;
        if let Some(dp) = privacy {
            dp.add_noise(params, samples)?;
        }
        let learning_rate = no_grad(|| optimizer.step(params, correction.as_deref()))?;
        Ok(StepReport {
            loss,
            samples: samples as u32,
            learning_rate: Some(learning_rate),
        })
    }

    /// `predict`: probabilities or predictions, in evaluation mode.
    pub fn predict(&self, x: Tensor) -> PlanResult<Array> {
        let plan = self.plan()?;
        check_rank(&x, "features", 2)?;
        let out = no_grad(|| with_training(false, || plan.predict(&plan.forward(&x)?)))?;
        Ok(to_array(&out))
    }

    /// `get-parameters`: every parameter and buffer by name (empty before `init-model`).
    pub fn get_parameters(&self) -> Vec<WitTensor> {
        params::to_tensors(&self.named)
    }

    /// `set-parameters`: replace every parameter and buffer by name.
    pub fn set_parameters(&mut self, tensors: Vec<WitTensor>) -> PlanResult<()> {
        self.plan()?;
        params::load_tensors(&self.named, tensors)
    }

    /// `set-gradient-correction`: the tensors subtracted from every
    /// parameter's gradient (those for buffers are checked and ignored).
    pub fn set_gradient_correction(&mut self, tensors: Vec<WitTensor>) -> PlanResult<()> {
        self.plan()?;
        let values = params::match_tensors(&self.named, tensors, "gradient correction")?;
        let for_params = self
            .named
            .iter()
            .zip(values)
            .filter(|(n, _)| n.role == Role::Parameter)
            .map(|(n, v)| Tensor::new(v, n.tensor.shape()))
            .collect::<PlanResult<_>>()?;
        self.correction = Some(for_params);
        Ok(())
    }
}
