//! [`Trainer`]: a plan driven the way the WIT functions ask, natively or in wasm.

use ndarray::Array2;

use crate::args::Args;
use crate::error::{PlanResult, invalid_data, invalid_state};
use crate::optim::Optimizer;
use crate::params;
use crate::plan::TrainingPlan;
use crate::privacy::DpSgd;
use crate::types::{Array, Batch, DataSpec, DatasetInfo, PlanInfo, StepReport, Tensor};

/// A plan with its optimizer and gradient correction: the state of one task.
pub struct Trainer<P> {
    plan: Option<P>,
    optimizer: Option<Optimizer>,
    correction: Option<Vec<Vec<f32>>>,
    privacy: Option<DpSgd>,
}

impl<P: TrainingPlan> Default for Trainer<P> {
    fn default() -> Self {
        Trainer {
            plan: None,
            optimizer: None,
            correction: None,
            privacy: None,
        }
    }
}

fn to_matrix(a: Array, what: &str) -> PlanResult<Array2<f32>> {
    let [rows, cols] = a.shape[..] else {
        return Err(invalid_data(format!(
            "{what} must be 2-D [samples, features], got shape {:?}",
            a.shape
        )));
    };
    Array2::from_shape_vec((rows as usize, cols as usize), a.data).map_err(|_| {
        invalid_data(format!(
            "{what}: shape [{rows}, {cols}] does not match its data length"
        ))
    })
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

    fn plan_mut(&mut self) -> PlanResult<&mut P> {
        self.plan
            .as_mut()
            .ok_or_else(|| invalid_state("call init-model first"))
    }

    /// `init-model`: parse model_args and build the model.
    pub fn init_model(&mut self, model_args: &str) -> PlanResult<()> {
        let args = Args::parse("model_args", model_args, P::MODEL_ARGS)?;
        self.plan = Some(P::init_model(&args)?);
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

    /// `training-step`: forward, loss, backward and one optimizer update.
    pub fn training_step(&mut self, batch: Batch) -> PlanResult<StepReport> {
        let x = to_matrix(batch.features, "batch features")?;
        let samples = x.nrows() as u32;
        let Self {
            plan,
            optimizer,
            correction,
            privacy,
        } = self;
        let plan = plan
            .as_mut()
            .ok_or_else(|| invalid_state("call init-model first"))?;
        let optimizer = optimizer
            .as_mut()
            .ok_or_else(|| invalid_state("call init-optimizer first"))?;
        let loss_fn = plan.loss();
        let model = plan.model_mut();
        let loss = match privacy {
            Some(dp) => dp.private_gradient(model, loss_fn, x, &batch.targets)?,
            None => {
                model.zero_grad();
                let output = model.forward(x)?;
                let (loss, grad) = loss_fn.forward_backward(&output, &batch.targets)?;
                model.backward(grad)?;
                loss
            }
        };
        optimizer.step(model.parameters_and_gradients(), correction.as_deref());
        Ok(StepReport {
            loss,
            samples,
            learning_rate: Some(optimizer.learning_rate()),
        })
    }

    /// `predict`: probabilities or predictions for a batch of features.
    pub fn predict(&self, features: Array) -> PlanResult<Array> {
        let plan = self.plan()?;
        let x = to_matrix(features, "features")?;
        let out = plan.loss().output_transform(plan.model().infer(x)?);
        let shape = vec![out.nrows() as u32, out.ncols() as u32];
        Ok(Array {
            shape,
            data: out.into_raw_vec_and_offset().0,
        })
    }

    /// `get-parameters`: every parameter by name (empty before `init-model`).
    pub fn get_parameters(&self) -> Vec<Tensor> {
        self.plan
            .as_ref()
            .map(|p| params::to_tensors(p.model()))
            .unwrap_or_default()
    }

    /// `set-parameters`: replace every parameter by name.
    pub fn set_parameters(&mut self, tensors: Vec<Tensor>) -> PlanResult<()> {
        params::load_tensors(self.plan_mut()?.model_mut(), tensors)
    }

    /// `set-gradient-correction`: the tensors subtracted from every gradient.
    pub fn set_gradient_correction(&mut self, tensors: Vec<Tensor>) -> PlanResult<()> {
        let values = params::match_tensors(self.plan()?.model(), tensors, "gradient correction")?;
        self.correction = Some(values);
        Ok(())
    }
}
