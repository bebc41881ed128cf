//! [`PlanInstance`]: one plan in one fresh store, with typed calls whose
//! failures name the function and the cause.

use wasmtime::{Engine, Store, Trap, WasmBacktrace};

use super::bindings::types::{
    Array, Batch, DataSpec, DatasetInfo, PlanError, PlanInfo, StepReport, Tensor,
};
use super::bindings::{TrainingPlan, TrainingPlanPre, WitBatch, error_kind_name};
use super::config::{Interruption, SandboxConfig};
use super::error::SandboxError;
use super::host::{HostState, PlanLogRecord};
use super::random::StreamSeed;

/// Host bytes one tensor takes besides its values, name and shape (its
/// struct and the allocations' headers): counted in the budget.
const TENSOR_OVERHEAD: usize = 128;

/// The most tensors a plan may return: what a parameter file may hold.
pub use crate::tensors::MAX_TENSORS;

/// Frames of a trap's backtrace that wasmtime keeps (see the engine config).
pub(crate) const BACKTRACE_FRAMES: usize = 64;

/// Whether a backtrace is a deep recursion: it filled the frame cap, and its
/// innermost half cycles through at most four functions.
fn looks_recursive(bt: &WasmBacktrace) -> bool {
    let frames = bt.frames();
    if frames.len() < BACKTRACE_FRAMES {
        return false;
    }
    let mut seen: Vec<u32> = frames[..BACKTRACE_FRAMES / 2]
        .iter()
        .map(|f| f.func_index())
        .collect();
    seen.sort_unstable();
    seen.dedup();
    seen.len() <= 4
}

/// A live plan instance. After any trap the instance is unusable (wasmtime
/// refuses to re-enter it); a task that fails starts over with a new instance.
pub struct PlanInstance {
    store: Store<HostState>,
    plan: TrainingPlan,
    deadline_ticks: Option<u64>,
    config_memory_mib: u64,
    config_stack_kib: usize,
    call_timeout_secs: f64,
}

impl PlanInstance {
    pub(crate) fn new(
        engine: &Engine,
        config: &SandboxConfig,
        pre: &TrainingPlanPre<HostState>,
        seed: &StreamSeed,
    ) -> Result<Self, SandboxError> {
        let state = HostState::new(config, seed).map_err(|reason| SandboxError::Host {
            function: "instantiate",
            reason,
        })?;
        let mut store = Store::new(engine, state);
        store.limiter(|s| &mut s.memory);
        // What one call may copy out of the plan (parameters, predictions):
        // wasmtime's default of 128 MiB would stop an honest model larger
        // than that, and a plan can never hold more than its memory budget.
        store.set_hostcall_fuel(config.memory_bytes().max(1 << 20));
        let deadline_ticks = (config.interruption == Interruption::Epoch).then(|| {
            let ticks = (config.call_timeout().as_millis() / 10).max(1) as u64;
            store.epoch_deadline_trap();
            store.set_epoch_deadline(ticks);
            ticks
        });
        let mut instance = PlanInstance {
            plan: match pre.instantiate(&mut store) {
                Ok(plan) => plan,
                Err(e) => {
                    return Err(SandboxError::Host {
                        function: "instantiate",
                        reason: format!("{e:#}"),
                    });
                }
            },
            store,
            deadline_ticks,
            config_memory_mib: config.memory_mib,
            config_stack_kib: config.stack_kib,
            call_timeout_secs: config.call_timeout_secs,
        };
        instance.reset_deadline();
        Ok(instance)
    }

    fn reset_deadline(&mut self) {
        if let Some(ticks) = self.deadline_ticks {
            self.store.set_epoch_deadline(ticks);
        }
    }

    /// Turn a wasmtime error from a call of `function` into a sandbox error.
    fn classify(&mut self, function: &'static str, err: wasmtime::Error) -> SandboxError {
        let state = self.store.data();
        // wasmtime's words when one call copies more than the hostcall fuel,
        // which is the memory budget: the same limit, said the same way.
        let copied_too_much =
            format!("{:#}", err.root_cause()).contains("fuel allocated for hostcalls");
        if state.memory.hit || copied_too_much {
            return SandboxError::MemoryLimit {
                function,
                limit_mib: self.config_memory_mib,
            };
        }
        let recursing = err
            .downcast_ref::<WasmBacktrace>()
            .is_some_and(looks_recursive);
        match err.downcast_ref::<Trap>() {
            Some(Trap::StackOverflow) => SandboxError::StackOverflow {
                function,
                stack_kib: self.config_stack_kib,
            },
            // Rust keeps part of its stack in linear memory (the shadow stack),
            // which overflows below address 0: an out-of-bounds access at a
            // depth no plan reaches on purpose.
            Some(Trap::MemoryOutOfBounds) if recursing => SandboxError::StackOverflow {
                function,
                stack_kib: self.config_stack_kib,
            },
            Some(Trap::Interrupt) => SandboxError::Deadline {
                function,
                seconds: self.call_timeout_secs,
            },
            trap => {
                let stderr = state.stderr.text();
                // The trap itself, without the wasm backtrace wasmtime attaches as context.
                let trap = trap.map_or_else(|| format!("{:#}", err.root_cause()), Trap::to_string);
                SandboxError::Trap {
                    function,
                    trap,
                    stderr,
                }
            }
        }
    }

    /// Run one plan call on a thread of the instance's compute pool: the
    /// plan's own thread is then one of the workers its tensor operations
    /// spread over, and no operation waits for a hand-off between threads.
    fn call<T: Send>(
        &mut self,
        function: &'static str,
        f: impl FnOnce(&TrainingPlan, &mut Store<HostState>) -> wasmtime::Result<T> + Send,
    ) -> Result<T, SandboxError> {
        self.reset_deadline();
        let pool = self.store.data().pool.clone();
        let (plan, store) = (&self.plan, &mut self.store);
        let result = pool.install(|| f(plan, store));
        result.map_err(|e| self.classify(function, e))
    }

    fn fallible<T: Send>(
        &mut self,
        function: &'static str,
        f: impl FnOnce(&TrainingPlan, &mut Store<HostState>) -> wasmtime::Result<Result<T, PlanError>>
        + Send,
    ) -> Result<T, SandboxError> {
        self.call(function, f)?.map_err(|e| SandboxError::Plan {
            function,
            kind: error_kind_name(e.kind),
            message: e.message,
        })
    }

    /// `describe`
    pub fn describe(&mut self) -> Result<PlanInfo, SandboxError> {
        self.call("describe", |p, s| p.fedwasm_plan_plan().call_describe(s))
    }

    /// `init-model` with model_args as JSON text.
    pub fn init_model(&mut self, model_args: &str) -> Result<(), SandboxError> {
        self.fallible("init-model", |p, s| {
            p.fedwasm_plan_plan().call_init_model(s, model_args)
        })
    }

    /// `init-optimizer` with optimizer_args as JSON text.
    pub fn init_optimizer(&mut self, optimizer_args: &str) -> Result<(), SandboxError> {
        self.fallible("init-optimizer", |p, s| {
            p.fedwasm_plan_plan().call_init_optimizer(s, optimizer_args)
        })
    }

    /// `training-data`
    pub fn training_data(&mut self, info: &DatasetInfo) -> Result<DataSpec, SandboxError> {
        self.fallible("training-data", |p, s| {
            p.fedwasm_plan_plan().call_training_data(s, info)
        })
    }

    /// `training-step`: the batch is handed over as two host tensors,
    /// moved, not copied.
    pub fn training_step(&mut self, batch: Batch) -> Result<StepReport, SandboxError> {
        let Batch { features, targets } = batch;
        self.fallible("training-step", |p, s| {
            let state = s.data_mut();
            let batch = WitBatch {
                features: state.hold("training-step's features", features.data)?,
                features_shape: features.shape,
                targets: state.hold("training-step's targets", targets.data)?,
                targets_shape: targets.shape,
            };
            p.fedwasm_plan_plan().call_training_step(s, &batch)
        })
    }

    /// `predict`: the features are handed over as a host tensor, moved.
    pub fn predict(&mut self, features: Array) -> Result<Array, SandboxError> {
        self.fallible("predict", |p, s| {
            let held = s.data_mut().hold("predict's features", features.data)?;
            p.fedwasm_plan_plan().call_predict(s, held, &features.shape)
        })
    }

    /// `get-parameters`, refused when it returns more tensors than a
    /// parameter file may hold ([`MAX_TENSORS`]) or more bytes than the
    /// plan's memory budget, before the host does anything with them.
    /// Copying them out is itself bounded: wasmtime's hostcall fuel is the
    /// memory budget (set in [`PlanInstance::new`]).
    pub fn get_parameters(&mut self) -> Result<Vec<Tensor>, SandboxError> {
        const FUNCTION: &str = "get-parameters";
        let tensors = self.call(FUNCTION, |p, s| {
            p.fedwasm_plan_plan().call_get_parameters(s)
        })?;
        if tensors.len() > MAX_TENSORS {
            return Err(SandboxError::Output {
                function: FUNCTION,
                reason: format!(
                    "returned {} tensors, more than the {MAX_TENSORS} a parameter file may hold",
                    tensors.len()
                ),
            });
        }
        let bytes = tensors
            .iter()
            .map(|t| t.data.len() * 4 + t.name.len() + t.shape.len() * 4 + TENSOR_OVERHEAD)
            .fold(0usize, usize::saturating_add);
        if bytes > (self.config_memory_mib as usize).saturating_mul(1 << 20) {
            return Err(SandboxError::MemoryLimit {
                function: FUNCTION,
                limit_mib: self.config_memory_mib,
            });
        }
        Ok(tensors)
    }

    /// `set-parameters`
    pub fn set_parameters(&mut self, parameters: &[Tensor]) -> Result<(), SandboxError> {
        self.fallible("set-parameters", |p, s| {
            p.fedwasm_plan_plan().call_set_parameters(s, parameters)
        })
    }

    /// `set-gradient-correction`
    pub fn set_gradient_correction(&mut self, correction: &[Tensor]) -> Result<(), SandboxError> {
        self.fallible("set-gradient-correction", |p, s| {
            p.fedwasm_plan_plan()
                .call_set_gradient_correction(s, correction)
        })
    }

    /// Log records the plan wrote so far, and how many were dropped past the cap.
    pub fn take_logs(&mut self) -> (Vec<PlanLogRecord>, usize) {
        let state = self.store.data_mut();
        (
            std::mem::take(&mut state.logs),
            std::mem::take(&mut state.logs_dropped),
        )
    }

    /// What the plan wrote to stdout and stderr (bounded).
    pub fn output(&self) -> (String, String) {
        let state = self.store.data();
        (state.stdout.text(), state.stderr.text())
    }
}
