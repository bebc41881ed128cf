//! The `compute` import: tensors the host holds for a plan, and the
//! operations that run on them natively, on the node's cores.
//!
//! Everything a plan passes here is hostile. A handle is checked by
//! wasmtime's resource table (a dropped or foreign one traps); an
//! operation's dimensions are checked against its inputs' lengths by
//! [`Op::outputs`] before anything is allocated; every byte of a host
//! tensor, and of the scratch an operation needs on each of its threads,
//! is taken from the same memory budget as the plan's linear memory, and a
//! request past it stops the call as a memory-limit breach. A kernel that
//! runs past a training deadline is stopped with its worker process, as any
//! plan code is.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use fedwasm_kernels::{Conv2d, MatMul, Op, Window};
use wasmtime::component::Resource;

use super::bindings::compute;
use super::bindings::types::{ErrorKind, PlanError};
use super::host::HostState;

/// Most inputs one operation takes.
const MAX_INPUTS: usize = 8;

/// A flat array of f32 a plan asked the host to hold.
pub struct HostTensor {
    data: Vec<f32>,
}

impl HostTensor {
    /// Bytes it takes from the plan's memory budget.
    pub(crate) fn bytes(len: usize) -> usize {
        len.saturating_mul(4)
    }
}

/// The rayon pool of `threads` threads, made once per process and shared by
/// every instance that asks for that many.
pub(crate) fn pool(threads: usize) -> Arc<rayon::ThreadPool> {
    static POOLS: OnceLock<Mutex<HashMap<usize, Arc<rayon::ThreadPool>>>> = OnceLock::new();
    let mut pools = POOLS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    pools
        .entry(threads)
        .or_insert_with(|| {
            let built = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .thread_name(|i| format!("fedwasm-compute-{i}"))
                .build();
            // A pool that cannot start threads still computes: on the
            // calling thread, with the same bits.
            Arc::new(built.unwrap_or_else(|_| {
                rayon::ThreadPoolBuilder::new()
                    .num_threads(1)
                    .use_current_thread()
                    .build()
                    .expect("a one-thread pool on the current thread")
            }))
        })
        .clone()
}

fn invalid_data(message: String) -> PlanError {
    PlanError {
        kind: ErrorKind::InvalidData,
        message,
    }
}

/// The kernels' operation for the WIT one, its dimensions widened.
fn kernel_op(op: &compute::Op) -> Op {
    let conv = |c: &compute::Conv2d| Conv2d {
        batch: c.batch as usize,
        window: Window {
            channels: c.channels as usize,
            input: [c.height as usize, c.width as usize],
            kernel: [c.kernel_height as usize, c.kernel_width as usize],
            stride: [c.stride_height as usize, c.stride_width as usize],
            padding: [c.padding_height as usize, c.padding_width as usize],
            dilation: [c.dilation_height as usize, c.dilation_width as usize],
        },
        out_channels: c.out_channels as usize,
    };
    match op {
        compute::Op::Matmul(m) => Op::MatMul(MatMul {
            m: m.m as usize,
            k: m.k as usize,
            n: m.n as usize,
            transpose_a: m.transpose_a,
            transpose_b: m.transpose_b,
        }),
        compute::Op::Conv2d(c) => Op::Conv2d(conv(c)),
        compute::Op::Conv2dInputGrad(c) => Op::Conv2dInputGrad(conv(c)),
        compute::Op::Conv2dWeightGrad(w) => Op::Conv2dWeightGrad {
            conv: conv(&w.conv),
            per_sample: w.per_sample,
        },
        compute::Op::ChannelSums(c) => Op::ChannelSums {
            batch: c.batch as usize,
            channels: c.channels as usize,
            plane: c.plane as usize,
            per_sample: c.per_sample,
        },
        compute::Op::Add => Op::Add,
    }
}

/// An operation made of fuzzer bytes: its kind from `kind`, each dimension
/// one byte (small) or, one time in eight, far past any budget.
pub(crate) fn fuzz_op(kind: u8, next: &mut impl FnMut() -> Option<u8>) -> compute::Op {
    let mut dim = || match next() {
        Some(b) if b % 8 == 7 => u32::MAX - u32::from(b),
        Some(b) => u32::from(b % 40),
        None => 1,
    };
    let mut conv = || compute::Conv2d {
        batch: dim(),
        channels: dim(),
        height: dim(),
        width: dim(),
        out_channels: dim(),
        kernel_height: dim(),
        kernel_width: dim(),
        stride_height: dim(),
        stride_width: dim(),
        padding_height: dim(),
        padding_width: dim(),
        dilation_height: dim(),
        dilation_width: dim(),
    };
    match kind % 6 {
        0 => {
            let (m, k, n) = (dim(), dim(), dim());
            compute::Op::Matmul(compute::Matmul {
                m,
                k,
                n,
                transpose_a: k % 2 == 0,
                transpose_b: n % 2 == 0,
            })
        }
        1 => compute::Op::Conv2d(conv()),
        2 => compute::Op::Conv2dInputGrad(conv()),
        3 => {
            let conv = conv();
            compute::Op::Conv2dWeightGrad(compute::Conv2dWeightGrad {
                per_sample: conv.batch % 2 == 0,
                conv,
            })
        }
        4 => {
            let (batch, channels, plane) = (dim(), dim(), dim());
            compute::Op::ChannelSums(compute::ChannelSums {
                batch,
                channels,
                plane,
                per_sample: plane % 2 == 0,
            })
        }
        _ => compute::Op::Add,
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
        Ok(self.table.push(HostTensor { data })?)
    }

    fn tensor(&self, handle: &Resource<HostTensor>) -> wasmtime::Result<&HostTensor> {
        Ok(self.table.get(handle)?)
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
            .check_transient("compute.tensor.read", HostTensor::bytes(len))?;
        Ok(self.tensor(&tensor)?.data.clone())
    }

    fn drop(&mut self, tensor: Resource<HostTensor>) -> wasmtime::Result<()> {
        let held = self.table.delete(tensor)?;
        self.memory
            .give_back_host(HostTensor::bytes(held.data.len()));
        Ok(())
    }
}

impl compute::Host for HostState {
    fn run(
        &mut self,
        op: compute::Op,
        inputs: Vec<Resource<HostTensor>>,
    ) -> wasmtime::Result<Result<Vec<Resource<HostTensor>>, PlanError>> {
        let op = kernel_op(&op);
        if inputs.len() > MAX_INPUTS {
            return Ok(Err(invalid_data(format!(
                "{}: at most {MAX_INPUTS} inputs, got {}",
                op.name(),
                inputs.len()
            ))));
        }
        let lens = inputs
            .iter()
            .map(|t| Ok(self.tensor(t)?.data.len()))
            .collect::<wasmtime::Result<Vec<usize>>>()?;
        let out_lens = match op.outputs(&lens) {
            Ok(lens) => lens,
            Err(e) => return Ok(Err(invalid_data(e.0))),
        };
        let what = format!("compute.run({})", op.name());
        let scratch =
            HostTensor::bytes(op.scratch()).saturating_mul(self.pool.current_num_threads());
        self.memory.check_transient(&what, scratch)?;
        let out_bytes = out_lens
            .iter()
            .map(|&n| HostTensor::bytes(n))
            .fold(0usize, usize::saturating_add);
        self.memory.take_host(&what, out_bytes)?;
        let mut outputs: Vec<Vec<f32>> = out_lens.iter().map(|&n| vec![0.0; n]).collect();
        {
            let slices = inputs
                .iter()
                .map(|t| Ok(self.tensor(t)?.data.as_slice()))
                .collect::<wasmtime::Result<Vec<&[f32]>>>()?;
            self.pool.install(|| op.run(&slices, &mut outputs));
        }
        let mut handles = Vec::with_capacity(outputs.len());
        for data in outputs {
            handles.push(self.table.push(HostTensor { data })?);
        }
        Ok(Ok(handles))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::SandboxConfig;
    use crate::sandbox::random::StreamSeed;
    use compute::{Host, HostTensor as _};

    fn state(memory_mib: u64) -> HostState {
        let config = SandboxConfig {
            memory_mib,
            compute_threads: 2,
            ..SandboxConfig::default()
        };
        HostState::new(&config, &StreamSeed([1; 32]))
    }

    fn borrow(t: &Resource<HostTensor>) -> Resource<HostTensor> {
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
        let op = compute::Op::Matmul(compute::Matmul {
            m: 2,
            k: 3,
            n: 2,
            transpose_a: false,
            transpose_b: false,
        });
        let out = s.run(op, vec![borrow(&a), borrow(&b)]).unwrap().unwrap();
        assert_eq!(s.memory.host, 4 * (6 + 6 + 4));
        let c = s.read(borrow(&out[0])).unwrap();
        assert_eq!(c, vec![4.0, 5.0, 10.0, 11.0]);
        for t in [a, b].into_iter().chain(out) {
            s.drop(t).unwrap();
        }
        assert_eq!(s.memory.host, 0);
    }

    #[test]
    fn misfits_are_plan_errors_and_budget_breaches_stop_the_call() {
        let mut s = state(1);
        let a = s.upload(vec![0.0; 6]).unwrap().unwrap();
        let op = compute::Op::Add;
        let misfit = s.upload(vec![0.0; 5]).unwrap().unwrap();
        let err = s
            .run(op, vec![borrow(&a), borrow(&misfit)])
            .unwrap()
            .unwrap_err();
        assert!(
            err.message.contains("add: b should hold 6 values"),
            "{}",
            err.message
        );
        let breach = s.upload(vec![0.0; 1 << 20]).unwrap_err();
        assert!(breach.to_string().contains("memory budget"), "{breach}");
        assert!(s.memory.hit);
        let forged = Resource::<HostTensor>::new_borrow(999);
        assert!(s.run(compute::Op::Add, vec![borrow(&a), forged]).is_err());
    }
}
