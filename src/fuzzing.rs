//! What the fuzz targets in `fuzz/` check, one function per target, so that
//! `cargo fuzz` and the corpus replay in `cargo test` run the same code. Each
//! takes arbitrary bytes, as they would arrive from a broker, a repository, a
//! plan's worker or an operator's file, and panics only when a promise is
//! broken: never on bad input itself.

use std::path::Path;

use fedwasm_kernels::layout::Upsample;
use fedwasm_kernels::{
    Adaptive, Axis, BatchNorm, Binary, Broadcast, Conv2d, CrossEntropy, Elementwise, Embedding,
    LayerNorm, MatMul, Op, Operand, Pointwise, Pool2d, Window,
};

/// Bytes from the broker: as a signed envelope, opened or refused (with a
/// roster that trusts on first use, so a valid signature reaches the body);
/// as a message body, decoded or refused. What opens or decodes encodes to
/// bytes that decode to the same message.
pub fn wire_decode(data: &[u8]) {
    use crate::identity::{KeyRing, Roster};
    let keyring = KeyRing::in_memory(Roster {
        trust_on_first_use: true,
        ..Roster::default()
    });
    let opened = crate::wire::open(data, &keyring).ok().map(|o| o.message);
    for message in opened.into_iter().chain(crate::wire::decode(data).ok()) {
        let again = crate::wire::decode(&crate::wire::encode(&message))
            .expect("an encoded message decodes");
        assert_eq!(format!("{again:?}"), format!("{message:?}"));
    }
}

/// Bytes as a parameter file: decoded within a 64 MiB budget or refused;
/// what decodes encodes back.
pub fn safetensors_read(data: &[u8]) {
    if let Ok((tensors, metadata)) = crate::tensors::from_bytes_within(data, 64 << 20) {
        crate::tensors::to_bytes(&tensors, &metadata).expect("decoded tensors encode");
    }
}

/// Bytes as an operator's CSV or NPY file: a table, or an error naming the problem.
pub fn table_load(data: &[u8]) {
    let name = Path::new("fuzzed");
    if let Ok(table) = crate::dataset::Table::from_npy_bytes(data, name) {
        assert!(table.rows() > 0 && table.width() > 0);
    }
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(table) = crate::dataset::Table::from_csv_text(text, name)
    {
        assert_eq!(table.names().len(), table.width());
    }
}

/// A line of the worker protocol, either way: a task as the worker reads it,
/// an event as the node reads it; an event that decodes survives a round trip.
pub fn worker_protocol(data: &[u8]) {
    let Ok(line) = std::str::from_utf8(data) else {
        return;
    };
    let _ = crate::training::worker::decode_task_line(line);
    if let Ok(encoded) = crate::training::worker::round_trip_event_line(line) {
        let again = crate::training::worker::round_trip_event_line(&encoded)
            .expect("an encoded event decodes");
        assert_eq!(again, encoded);
    }
}

/// Bytes as a plan's calls to the `compute` import: uploads, operations
/// with arbitrary dimensions on arbitrary (also dropped and forged)
/// handles, reads and drops, against a 16 MiB budget on 3 threads. Each
/// call succeeds, is refused with a plan error, or stops the plan; none
/// panics, and the host never holds more than the budget.
pub fn compute_ops(data: &[u8]) {
    use crate::sandbox::compute::HostTensor;
    use crate::sandbox::random::StreamSeed;
    use crate::sandbox::{SandboxConfig, bindings::compute};
    use wasmtime::component::Resource;

    let config = SandboxConfig {
        memory_mib: 16,
        compute_threads: 3,
        ..SandboxConfig::default()
    };
    let mut state = crate::sandbox::host::HostState::new(&config, &StreamSeed([7; 32]))
        .expect("the compute threads start");
    let mut bytes = data.iter().copied();
    let mut next = move || bytes.next();
    let mut handles: Vec<u32> = Vec::new();
    let borrow = |rep: u32| Resource::<HostTensor>::new_borrow(rep);
    while let Some(tag) = next() {
        let pick = |b: Option<u8>, handles: &[u32]| -> u32 {
            let b = b.unwrap_or(0) as usize;
            // Mostly live handles, sometimes one never made.
            handles
                .get(b % (handles.len() + 1))
                .copied()
                .unwrap_or(1000 + b as u32)
        };
        match tag % 4 {
            0 => {
                let len = u16::from_le_bytes([next().unwrap_or(0), next().unwrap_or(0)]) as usize;
                let values: Vec<f32> = (0..len).map(|i| (i % 7) as f32 - 3.0).collect();
                if let Ok(Ok(t)) = compute::HostTensor::upload(&mut state, values) {
                    handles.push(t.rep());
                }
            }
            1 => {
                let op = fuzz_op(tag / 4, &mut next);
                let count = next().unwrap_or(0) % 4;
                let inputs: Vec<_> = (0..count).map(|_| borrow(pick(next(), &handles))).collect();
                let inputs: Vec<_> = inputs.iter().collect();
                if let Ok(Ok(output)) = state.run_op(op, &inputs) {
                    handles.push(output.rep());
                }
            }
            2 => {
                let rep = pick(next(), &handles);
                handles.retain(|&h| h != rep);
                let _ = compute::HostTensor::drop(&mut state, Resource::new_own(rep));
            }
            _ => {
                let _ = compute::HostTensor::read(&mut state, borrow(pick(next(), &handles)));
            }
        }
        assert!(state.memory.within_budget(), "host tensors past the budget");
    }
}

/// One fuzzed dimension: a byte (small) or, one time in eight, far past
/// any budget.
fn fuzz_dim(next: &mut impl FnMut() -> Option<u8>) -> usize {
    match next() {
        Some(b) if b % 8 == 7 => usize::MAX - usize::from(b),
        Some(b) => usize::from(b % 40),
        None => 1,
    }
}

/// A fuzzed convolution or pooling window.
fn fuzz_window(next: &mut impl FnMut() -> Option<u8>, channels: usize) -> Window {
    let mut pair = || [fuzz_dim(next), fuzz_dim(next)];
    Window {
        channels,
        input: pair(),
        kernel: pair(),
        stride: pair(),
        padding: pair(),
        dilation: pair(),
    }
}

/// An operation made of fuzzer bytes, its kind from `kind`.
fn fuzz_op(kind: u8, next: &mut impl FnMut() -> Option<u8>) -> Op {
    let f = match kind / 16 % 4 {
        0 => Elementwise::Relu,
        1 => Elementwise::Gelu,
        2 => Elementwise::Pow(-1.5),
        _ => Elementwise::Clamp(-1.0, f32::NAN),
    };
    let conv = |next: &mut dyn FnMut() -> Option<u8>| {
        let mut next = next;
        let channels = fuzz_dim(&mut next);
        Conv2d {
            window: fuzz_window(&mut next, channels),
            batch: fuzz_dim(&mut next),
            out_channels: fuzz_dim(&mut next),
        }
    };
    let bn = |next: &mut dyn FnMut() -> Option<u8>| {
        let mut next = next;
        BatchNorm {
            batch: fuzz_dim(&mut next),
            channels: fuzz_dim(&mut next),
            spatial: fuzz_dim(&mut next),
        }
    };
    match kind % KINDS {
        10 => Op::BatchNormStats {
            bn: bn(next),
            eps: 1e-5,
        },
        11 => Op::BatchNormApply(bn(next)),
        12 => Op::BatchNormInputGrad {
            bn: bn(next),
            training: kind.is_multiple_of(3),
        },
        13 => Op::BatchNormAffineGrads(bn(next)),
        0 => {
            let (m, k, n) = (fuzz_dim(next), fuzz_dim(next), fuzz_dim(next));
            Op::MatMul(MatMul {
                m,
                k,
                n,
                transpose_a: k % 2 == 0,
                transpose_b: n % 2 == 0,
            })
        }
        1 => Op::Conv2d(conv(next)),
        2 => Op::Conv2dInputGrad(conv(next)),
        3 => Op::Conv2dWeightGrad {
            conv: conv(next),
            per_sample: kind.is_multiple_of(3),
        },
        4 => Op::ChannelSums {
            batch: fuzz_dim(next),
            channels: fuzz_dim(next),
            plane: fuzz_dim(next),
            per_sample: kind.is_multiple_of(3),
        },
        5 => Op::Map(f),
        6 => Op::MapGrad(f),
        7 | 8 => {
            let pool = Pool2d {
                planes: fuzz_dim(next),
                window: fuzz_window(next, 1),
            };
            if kind % KINDS == 7 {
                Op::MaxPool2d(pool)
            } else {
                Op::MaxPool2dGrad(pool)
            }
        }
        14..=18 => fuzz_reshaping_op(kind, next),
        19..=22 => fuzz_normalizing_op(kind, next),
        _ => Op::Add,
    }
}

/// Kinds of fuzzed operation `fuzz_op` tells apart.
const KINDS: u8 = 23;

/// A fuzzed normalization, average pooling, pointwise loss, sum of squares
/// or broadcast.
fn fuzz_normalizing_op(kind: u8, next: &mut impl FnMut() -> Option<u8>) -> Op {
    let variant = next().unwrap_or(0) % 4;
    let mut dim = || fuzz_dim(next);
    match kind % KINDS {
        19 => {
            let ln = LayerNorm {
                groups: dim(),
                d: dim(),
            };
            match variant {
                0 => Op::LayerNormStats { ln, eps: 1e-5 },
                1 => Op::LayerNormApply(ln),
                2 => Op::LayerNormInputGrad(ln),
                _ => Op::LayerNormAffineGrads { ln, samples: dim() },
            }
        }
        20 => {
            let pool = Pool2d {
                planes: dim(),
                window: Window {
                    channels: 1,
                    input: [dim(), dim()],
                    kernel: [dim(), dim()],
                    stride: [dim(), dim()],
                    padding: [dim(), dim()],
                    dilation: [1, 1],
                },
            };
            let adaptive = Adaptive {
                planes: pool.planes,
                input: pool.window.input,
                output: pool.window.kernel,
            };
            match variant {
                0 => Op::AvgPool2d(pool),
                1 => Op::AvgPool2dGrad(pool),
                2 => Op::AdaptiveAvgPool2d(adaptive),
                _ => Op::AdaptiveAvgPool2dGrad(adaptive),
            }
        }
        21 => {
            let loss = [
                Pointwise::Bce,
                Pointwise::Mse,
                Pointwise::L1,
                Pointwise::Huber(-1.0),
            ][usize::from(variant)];
            if kind.is_multiple_of(2) {
                Op::PointwiseLoss(loss)
            } else {
                Op::PointwiseLossGrad { loss, g: 1.0 }
            }
        }
        _ => fuzz_broadcast_or_lookup(variant, next),
    }
}

/// A fuzzed broadcast, or, when the shapes do not broadcast, a sum of
/// squares or a table lookup.
fn fuzz_broadcast_or_lookup(variant: u8, next: &mut impl FnMut() -> Option<u8>) -> Op {
    let mut dim = || fuzz_dim(next);
    let shape =
        |n: usize, dim: &mut dyn FnMut() -> usize| (0..n).map(|_| dim()).collect::<Vec<_>>();
    let (a, b) = (shape(3, &mut dim), shape(2, &mut dim));
    match Broadcast::new(&a, &b) {
        Ok(shapes) if variant == 0 => Op::Binary {
            op: Binary::Div,
            shapes,
        },
        Ok(shapes) => Op::BinaryGrad {
            op: Binary::Mul,
            shapes,
            which: Operand {
                second: variant == 1,
                samples: dim(),
            },
        },
        Err(_) => {
            let e = Embedding {
                num: dim(),
                dim: dim(),
                count: dim(),
            };
            match variant {
                0 => Op::SumOfSquares,
                1 => Op::RowSquares {
                    rows: e.num,
                    width: e.dim,
                },
                2 => Op::Embedding(e),
                _ => Op::EmbeddingGrad { e, samples: dim() },
            }
        }
    }
}

/// A fuzzed operation along an axis, a loss or a layout operation.
fn fuzz_reshaping_op(kind: u8, next: &mut impl FnMut() -> Option<u8>) -> Op {
    let flip = kind.is_multiple_of(2);
    let mut dim = || fuzz_dim(next);
    match kind % KINDS {
        14 | 15 => {
            let axis = Axis {
                outer: dim(),
                size: dim(),
                inner: dim(),
            };
            match (kind % KINDS == 14, flip) {
                (true, true) => Op::SumAxis(axis),
                (true, false) => Op::ExpandAxis(axis),
                (false, log) if kind.is_multiple_of(3) => Op::Softmax { axis, log },
                (false, log) => Op::SoftmaxGrad { axis, log },
            }
        }
        16 => {
            let ce = CrossEntropy {
                batch: dim(),
                classes: dim(),
                inner: dim(),
                label_smoothing: if kind.is_multiple_of(3) { 0.1 } else { 1.5 },
            };
            if flip {
                Op::CrossEntropy(ce)
            } else {
                Op::CrossEntropyGrad { ce, scale: 0.5 }
            }
        }
        17 => {
            let up = Upsample {
                planes: dim(),
                height: dim(),
                width: dim(),
                factor: dim(),
            };
            if flip {
                Op::Upsample2d(up)
            } else {
                Op::Upsample2dGrad(up)
            }
        }
        _ if flip => Op::Cat { outer: dim() },
        _ => Op::CatPart {
            outer: dim(),
            inner: dim(),
            start: dim(),
            len: dim(),
        },
    }
}
