//! The `compute` import: tensors the host holds for a plan, and the
//! operations that run on them natively, on the node's cores.
//!
//! Everything a plan passes here is hostile. A handle is checked by
//! wasmtime's resource table (a dropped or foreign one traps); an
//! operation's dimensions are checked against its inputs' lengths by
//! [`Op::output_len`] before anything is allocated; every byte of a host
//! tensor, and of the scratch an operation needs on each of its threads,
//! is taken from the same memory budget as the plan's linear memory, and a
//! request past it stops the call as a memory-limit breach. A kernel that
//! runs past a training deadline is stopped with its worker process, as any
//! plan code is.
//!
//! - this file: held tensors, their budget, and [`HostState::run_op`];
//! - `dims`: the contract's records turned into kernel dimensions;
//! - `functions`: the `compute` functions, each an [`Op`] run on held
//!   tensors (or a tensor made or changed in place);
//! - `update`: optimizer updates of a parameter in place.

mod dims;
mod functions;
mod update;

use functions::Made;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use fedwasm_kernels::Op;
use wasmtime::component::Resource;

use super::bindings::compute;
use super::bindings::types::{ErrorKind, PlanError};
use super::host::HostState;

/// Room a compute thread's stack keeps for the host's frames besides the
/// plan's wasm stack (`stack_kib`): plan calls run on these threads.
const HOST_FRAMES: usize = 32 << 20;

/// Operations doing less than this many multiply-adds (or element visits)
/// run on the plan's thread: handing them to the pool and waiting costs
/// more than they take.
const PARALLEL_WORK: usize = 1 << 16;

/// A flat array of f32 a plan asked the host to hold.
pub struct HostTensor {
    data: Vec<f32>,
    /// Made by an operation (its buffer is kept for the next output of its
    /// length when it drops), not uploaded or handed in.
    output: bool,
}

/// Bytes of the host's own bookkeeping each tensor is charged besides its
/// values (its table entry and allocation): without it, a plan uploading
/// empty tensors in a loop would grow the host's memory outside its budget.
const TENSOR_OVERHEAD: usize = 64;

impl HostTensor {
    /// Bytes a tensor of `len` values takes from the plan's memory budget.
    pub(crate) fn bytes(len: usize) -> usize {
        len.saturating_mul(4).saturating_add(TENSOR_OVERHEAD)
    }
}

/// The rayon pool of `threads` threads with room for a wasm stack of
/// `wasm_stack` bytes, made once per process and shared by every instance
/// that asks for the same; an error says why the threads could not start.
pub(crate) fn pool(threads: usize, wasm_stack: usize) -> Result<Arc<rayon::ThreadPool>, String> {
    type Pools = HashMap<(usize, usize), Arc<rayon::ThreadPool>>;
    static POOLS: OnceLock<Mutex<Pools>> = OnceLock::new();
    let mut pools = POOLS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let stack = wasm_stack.saturating_add(HOST_FRAMES);
    if let Some(pool) = pools.get(&(threads, stack)) {
        return Ok(pool.clone());
    }
    // Plan calls run on these threads (see `PlanInstance::call`): room for
    // the wasm stack and the host's frames below it.
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .stack_size(stack)
        .thread_name(|i| format!("fedwasm-compute-{i}"))
        .build()
        .map(Arc::new)
        .map_err(|e| format!("cannot start {threads} compute threads: {e}"))?;
    pools.insert((threads, stack), pool.clone());
    Ok(pool)
}

fn invalid_data(message: String) -> PlanError {
    PlanError {
        kind: ErrorKind::InvalidData,
        message,
    }
}

impl HostState {
    /// Hold `data` for the plan, its bytes taken from the budget.
    pub(crate) fn hold(
        &mut self,
        what: &str,
        data: Vec<f32>,
    ) -> wasmtime::Result<Resource<HostTensor>> {
        self.memory.take_host(what, HostTensor::bytes(data.len()))?;
        Ok(self.table.push(HostTensor {
            data,
            output: false,
        })?)
    }

    fn tensor(&self, handle: &Resource<HostTensor>) -> wasmtime::Result<&HostTensor> {
        Ok(self.table.get(handle)?)
    }

    /// Hold an output buffer whose bytes were taken from the budget.
    fn push_output(&mut self, data: Vec<f32>) -> wasmtime::Result<Resource<HostTensor>> {
        Ok(self.table.push(HostTensor { data, output: true })?)
    }
}

impl compute::HostTensor for HostState {
    fn upload(
        &mut self,
        data: Vec<f32>,
    ) -> wasmtime::Result<Result<Resource<HostTensor>, PlanError>> {
        self.hold("compute.tensor.upload", data).map(Ok)
    }

    fn len(&mut self, tensor: Resource<HostTensor>) -> wasmtime::Result<u64> {
        Ok(self.tensor(&tensor)?.data.len() as u64)
    }

    fn read(&mut self, tensor: Resource<HostTensor>) -> wasmtime::Result<Vec<f32>> {
        let len = self.tensor(&tensor)?.data.len();
        // The copy lives on the host while the plan receives its own.
        self.memory
            .check_transient("compute.tensor.read", len.saturating_mul(4))?;
        Ok(self.tensor(&tensor)?.data.clone())
    }

    fn zeros(&mut self, len: u64) -> Made {
        let len = usize::try_from(len).unwrap_or(usize::MAX);
        self.memory
            .take_host("compute.tensor.zeros", HostTensor::bytes(len))?;
        let mut data = self.memory.output_buffer(len);
        data.fill(0.0);
        self.push_output(data).map(Ok)
    }

    fn duplicate(&mut self, tensor: Resource<HostTensor>) -> Made {
        let len = self.tensor(&tensor)?.data.len();
        self.memory
            .take_host("compute.tensor.duplicate", HostTensor::bytes(len))?;
        let mut data = self.memory.output_buffer(len);
        data.copy_from_slice(&self.tensor(&tensor)?.data);
        self.push_output(data).map(Ok)
    }

    fn drop(&mut self, tensor: Resource<HostTensor>) -> wasmtime::Result<()> {
        let held = self.table.delete(tensor)?;
        self.memory.give_back_host(held.data, held.output);
        Ok(())
    }
}

impl HostState {
    /// Run `op` on `inputs` (handles the plan lent): checked, budgeted, then
    /// computed on the pool. The path every `compute` function takes.
    pub(crate) fn run_op(
        &mut self,
        op: Op,
        inputs: &[&Resource<HostTensor>],
    ) -> wasmtime::Result<Result<Resource<HostTensor>, PlanError>> {
        let lens = inputs
            .iter()
            .map(|t| Ok(self.tensor(t)?.data.len()))
            .collect::<wasmtime::Result<Vec<usize>>>()?;
        let out_len = match op.output_len(&lens) {
            Ok(len) => len,
            Err(e) => return Ok(Err(invalid_data(e.0))),
        };
        let what = format!("compute.{}", op.name());
        let scratch = op
            .scratch(self.pool.current_num_threads())
            .saturating_mul(4);
        self.memory.check_transient(&what, scratch)?;
        self.memory.take_host(&what, HostTensor::bytes(out_len))?;
        let mut out = self.memory.output_buffer(out_len);
        {
            let slices = inputs
                .iter()
                .map(|t| Ok(self.tensor(t)?.data.as_slice()))
                .collect::<wasmtime::Result<Vec<&[f32]>>>()?;
            // The plan call runs on a thread of the pool (`PlanInstance::call`).
            // A kernel's bug stops this call, never the process serving it.
            let small = op.work(&lens) < PARALLEL_WORK;
            let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                if small {
                    fedwasm_kernels::parallel::serial(|| op.run(&slices, &mut out));
                } else {
                    self.pool.install(|| op.run(&slices, &mut out));
                }
            }));
            if ran.is_err() {
                wasmtime::bail!("compute.{}: the host's kernel failed", op.name());
            }
        }
        self.push_output(out).map(Ok)
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::sandbox::SandboxConfig;
    use crate::sandbox::random::StreamSeed;
    use compute::{Host, HostTensor as _};

    pub(in crate::sandbox) fn state(memory_mib: u64) -> HostState {
        let config = SandboxConfig {
            memory_mib,
            compute_threads: 2,
            ..SandboxConfig::default()
        };
        HostState::new(&config, &StreamSeed([1; 32])).unwrap()
    }

    pub(in crate::sandbox) fn borrow(t: &Resource<HostTensor>) -> Resource<HostTensor> {
        Resource::new_borrow(t.rep())
    }

    #[test]
    fn a_product_runs_on_held_tensors_and_its_bytes_are_counted() {
        let mut s = state(16);
        let a = s
            .upload(vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
            .unwrap()
            .unwrap();
        let b = s
            .upload(vec![1.0, 0.0, 0.0, 1.0, 1.0, 1.0])
            .unwrap()
            .unwrap();
        let dims = compute::MatmulDims {
            m: 2,
            k: 3,
            n: 2,
            transpose_a: false,
            transpose_b: false,
        };
        let out = s
            .matmul(dims, borrow(&a), borrow(&b), None)
            .unwrap()
            .unwrap();
        let held = [6, 6, 4].map(HostTensor::bytes);
        assert_eq!(s.memory.host, held.iter().sum::<usize>());
        let c = s.read(borrow(&out)).unwrap();
        assert_eq!(c, vec![4.0, 5.0, 10.0, 11.0]);
        for t in [a, b, out] {
            s.drop(t).unwrap();
        }
        assert_eq!(s.memory.host, 0);
    }

    #[test]
    fn misfits_are_plan_errors_and_budget_breaches_stop_the_call() {
        let mut s = state(1);
        let a = s.upload(vec![0.0; 6]).unwrap().unwrap();
        let misfit = s.upload(vec![0.0; 5]).unwrap().unwrap();
        let err = s.add(borrow(&a), borrow(&misfit)).unwrap().unwrap_err();
        assert!(
            err.message.contains("add: b should hold 6 values"),
            "{}",
            err.message
        );
        let breach = s.upload(vec![0.0; 1 << 20]).unwrap_err();
        assert!(breach.to_string().contains("memory budget"), "{breach}");
        assert!(s.memory.hit);
        let forged = Resource::<HostTensor>::new_borrow(999);
        assert!(s.add(borrow(&a), forged).is_err());
    }

    /// Empty tensors are not free: each is charged the host's bookkeeping,
    /// so a plan uploading them in a loop meets its budget.
    #[test]
    fn dropout_masks_follow_the_uniform_stream_and_refuse_a_certain_drop() {
        use crate::sandbox::random::{StreamSeed, unit_f32};
        use rand_core::RngCore;
        let mut s = state(8);
        let mask = s.dropout_mask(1000, 0.25).unwrap().unwrap();
        let mask = s.read(borrow(&mask)).unwrap();
        let mut rng = StreamSeed([1; 32]).rng();
        let want: Vec<f32> = (0..1000)
            .map(|_| {
                if unit_f32(rng.next_u64()) < 0.25 {
                    0.0
                } else {
                    1.0 / 0.75
                }
            })
            .collect();
        assert_eq!(mask, want);
        for p in [1.0, -0.1, f32::NAN] {
            let err = s.dropout_mask(4, p).unwrap().unwrap_err();
            assert!(err.message.contains("[0, 1)"), "{}", err.message);
        }
        let huge = s.dropout_mask(1 << 40, 0.5).unwrap_err();
        assert!(huge.to_string().contains("memory budget"), "{huge}");
    }

    #[test]
    fn empty_tensors_are_charged_their_bookkeeping() {
        let mut s = state(1);
        let mut held = Vec::new();
        let err = loop {
            match s.upload(Vec::new()) {
                Ok(t) => held.push(t.unwrap()),
                Err(e) => break e,
            }
            assert!(held.len() <= 1 << 20, "empty tensors never met the budget");
        };
        assert_eq!(held.len(), (1 << 20) / TENSOR_OVERHEAD);
        assert!(err.to_string().contains("memory budget"), "{err}");
    }

    /// A dropped tensor's buffer serves the next output of its length;
    /// spares never make the plan fail: they are freed first.
    #[test]
    fn spares_are_reused_and_freed_before_the_budget_refuses() {
        let mut s = state(1);
        // Floats of a tensor charged a quarter of the 1 MiB budget.
        let quarter = ((1 << 18) - TENSOR_OVERHEAD) / 4;
        let a = s.upload(vec![1.0; quarter]).unwrap().unwrap();
        let b = s.upload(vec![2.0; quarter]).unwrap().unwrap();
        let sum = s.add(borrow(&a), borrow(&b)).unwrap().unwrap();
        s.drop(sum).unwrap();
        assert_eq!(s.memory.spares.bytes(), HostTensor::bytes(quarter));
        let again = s.add(borrow(&a), borrow(&b)).unwrap().unwrap();
        assert_eq!(s.memory.spares.bytes(), 0, "the spare was reused");
        assert_eq!(s.read(borrow(&again)).unwrap(), vec![3.0; quarter]);
        let third = s.add(borrow(&a), borrow(&b)).unwrap().unwrap();
        s.drop(again).unwrap();
        s.drop(third).unwrap();
        s.drop(b).unwrap();
        // Two outputs kept; the uploaded `b` freed, not kept.
        assert_eq!(s.memory.spares.bytes(), 2 * HostTensor::bytes(quarter));
        // A half of the budget fits only once the spares are freed.
        let half = s.upload(vec![0.0; 2 * quarter]).unwrap().unwrap();
        assert_eq!(s.memory.spares.bytes(), 0);
        assert!(!s.memory.hit && s.memory.within_budget());
        s.drop(half).unwrap();
        s.drop(a).unwrap();
    }
}
