use super::*;
use crate::Window;

#[test]
fn scratch_counts_packed_operands_once_and_columns_per_thread() {
    let mm = |m: usize, k: usize, n: usize| {
        Op::MatMul(MatMul {
            m,
            k,
            n,
            transpose_a: false,
            transpose_b: false,
        })
    };
    // One depth block of both operands, whatever the thread count.
    assert_eq!(mm(1000, 300, 40).scratch(1), (1024 + 64) * 256);
    assert_eq!(mm(1000, 300, 40).scratch(8), (1024 + 64) * 256);
    assert_eq!(mm(4, 10, 5000).scratch(2), (32 + 512) * 10);
    let conv = Op::Conv2d(Conv2d {
        batch: 4,
        window: Window {
            channels: 3,
            input: [32, 32],
            kernel: [3, 3],
            stride: [1, 1],
            padding: [1, 1],
            dilation: [1, 1],
        },
        out_channels: 8,
    });
    let one = conv.scratch(1);
    assert!(one >= 27 * 1024, "at least one image's columns: {one}");
    assert_eq!(conv.scratch(3), 3 * one);
    let absurd = Conv2d {
        batch: 1,
        window: Window {
            channels: 1 << 30,
            input: [1 << 20, 1 << 20],
            kernel: [1, 1],
            stride: [1, 1],
            padding: [0, 0],
            dilation: [1, 1],
        },
        out_channels: 1,
    };
    assert_eq!(Op::Conv2d(absurd).scratch(2), usize::MAX);
    // A tall stride over a huge padding: 11 × 16 outputs, but the image
    // read in place is padded to 10,001 × 16, and that is charged.
    let tall = Conv2d {
        batch: 1,
        window: Window {
            channels: 1,
            input: [1, 16],
            kernel: [1, 1],
            stride: [1000, 1],
            padding: [5000, 0],
            dilation: [1, 1],
        },
        out_channels: 1,
    };
    assert_eq!(tall.sizes().unwrap().output, [11, 16]);
    assert!(Op::Conv2d(tall).scratch(1) >= 10_001 * 16);
}

/// A plan chooses how many tensors it passes: every count gets an
/// answer, never a panic (the fuzz target checks random ones too).
#[test]
fn any_input_count_is_answered_without_a_panic() {
    for (op, lens) in every_op() {
        for count in 0..=6 {
            let lens: Vec<usize> = (0..count)
                .map(|i| lens.get(i).copied().unwrap_or(usize::MAX - i))
                .collect();
            let fits = op.output_len(&lens).is_ok();
            assert!(!fits || count <= 4, "{op:?} took {count} inputs");
        }
    }
}

#[test]
fn hostile_sizes_are_refused_before_anything_is_allocated() {
    let huge = MatMul {
        m: 1 << 40,
        k: 1 << 40,
        n: 1,
        transpose_a: false,
        transpose_b: false,
    };
    let err = Op::MatMul(huge).output_len(&[4, 4]).unwrap_err();
    assert!(
        err.0.contains("overflow") || err.0.contains("should hold"),
        "{err}"
    );
    let small = MatMul {
        m: 2,
        k: 3,
        n: 4,
        ..huge
    };
    assert_eq!(Op::MatMul(small).output_len(&[6, 12]).unwrap(), 8);
    assert!(
        Op::MatMul(small)
            .output_len(&[6, 11])
            .unwrap_err()
            .0
            .contains("b should hold 12")
    );
    assert!(
        Op::MatMul(small)
            .output_len(&[6])
            .unwrap_err()
            .0
            .contains("inputs")
    );
    assert!(
        Op::MatMul(small)
            .output_len(&[6, 12, 3])
            .unwrap_err()
            .0
            .contains("bias")
    );
    let conv = Conv2d {
        batch: 1,
        window: Window {
            channels: 1,
            input: [2, 2],
            kernel: [3, 3],
            stride: [1, 1],
            padding: [0, 0],
            dilation: [1, 1],
        },
        out_channels: 1,
    };
    assert!(
        Op::Conv2d(conv)
            .output_len(&[4, 9])
            .unwrap_err()
            .0
            .contains("does not fit")
    );
    assert!(Op::Add.output_len(&[3, 4]).is_err());
}

#[test]
fn a_bias_starts_every_row() {
    let mm = MatMul {
        m: 2,
        k: 1,
        n: 2,
        transpose_a: false,
        transpose_b: false,
    };
    let mut out = vec![0.0; 4];
    Op::MatMul(mm).run(&[&[1.0, 2.0], &[3.0, 4.0], &[0.5, -0.5]], &mut out);
    assert_eq!(out, vec![3.5, 3.5, 6.5, 7.5]);
}

#[test]
fn misfit_layouts_are_refused_by_name() {
    let err = |op: Op, lens: &[usize]| op.output_len(lens).unwrap_err().0;
    assert_eq!(
        err(Op::Cat { outer: 4 }, &[8, 6]),
        "cat: b holds 6 values, not rows of 4"
    );
    assert!(err(Op::Cat { outer: 0 }, &[0, 0]).contains("not rows of 0"));
    let part = Op::CatPart {
        outer: 2,
        inner: 5,
        start: 3,
        len: 3,
    };
    assert!(err(part, &[10]).contains("columns 3..3+3 are not within rows of 5"));
    let up = crate::layout::Upsample {
        planes: 1,
        height: 2,
        width: 2,
        factor: 0,
    };
    assert!(err(Op::Upsample2d(up), &[4]).contains("the factor must be at least 1"));
    let huge = crate::layout::Upsample {
        factor: 1 << 40,
        ..up
    };
    assert!(err(Op::Upsample2dGrad(huge), &[4]).contains("overflow"));
}

/// Every kind of operation with the lengths of its inputs, in shapes
/// that exercise padding, strides, biases and both batch-norm modes:
/// products and convolutions here, the rest from [`pass_ops`].
fn every_op() -> Vec<(Op, Vec<usize>)> {
    let window = Window {
        channels: 3,
        input: [7, 6],
        kernel: [3, 3],
        stride: [2, 1],
        padding: [1, 1],
        dilation: [1, 1],
    };
    let conv = Conv2d {
        batch: 2,
        window,
        out_channels: 5,
    };
    let (x, w) = (2 * 3 * 7 * 6, 5 * 3 * 9);
    let g = conv.sizes().unwrap().output_len;
    let mm = |transpose_a, transpose_b| {
        Op::MatMul(MatMul {
            m: 7,
            k: 19,
            n: 13,
            transpose_a,
            transpose_b,
        })
    };
    vec![
        (mm(false, false), vec![7 * 19, 19 * 13]),
        (mm(true, true), vec![7 * 19, 19 * 13, 13]),
        (Op::Conv2d(conv), vec![x, w]),
        (Op::Conv2d(conv), vec![x, w, 5]),
        (Op::Conv2dInputGrad(conv), vec![g, w]),
        (
            Op::Conv2dWeightGrad {
                conv,
                per_sample: false,
            },
            vec![g, x],
        ),
        (
            Op::Conv2dWeightGrad {
                conv,
                per_sample: true,
            },
            vec![g, x],
        ),
        (
            Op::ChannelSums {
                batch: 2,
                channels: 3,
                plane: 42,
                per_sample: false,
            },
            vec![x],
        ),
        (
            Op::ChannelSums {
                batch: 2,
                channels: 3,
                plane: 42,
                per_sample: true,
            },
            vec![x],
        ),
    ]
    .into_iter()
    .chain(pass_ops(window, x))
    .collect()
}

/// Operations that visit each value a few times (elementwise, pooling,
/// batch normalization, layouts) on an input of `x` values shaped
/// `[2, 3, 7, 6]` like `window`'s.
fn pass_ops(window: Window, x: usize) -> Vec<(Op, Vec<usize>)> {
    let pool = Pool2d {
        planes: 6,
        window: Window {
            channels: 1,
            kernel: [3, 3],
            stride: [2, 2],
            ..window
        },
    };
    let pooled = pool.sizes().unwrap().2;
    let bn = BatchNorm {
        batch: 2,
        channels: 3,
        spatial: 42,
    };
    let up = crate::layout::Upsample {
        planes: 6,
        height: 6,
        width: 7,
        factor: 2,
    };
    vec![
        (Op::Add, vec![x, x]),
        (Op::Map(Elementwise::Gelu), vec![x]),
        (Op::MapGrad(Elementwise::LeakyRelu(0.1)), vec![x, x]),
        (Op::MaxPool2d(pool), vec![x]),
        (Op::MaxPool2dGrad(pool), vec![x, pooled]),
        (Op::BatchNormStats { bn, eps: 1e-5 }, vec![x]),
        (Op::BatchNormApply(bn), vec![x, 9, 3, 3]),
        (
            Op::BatchNormInputGrad { bn, training: true },
            vec![x, 9, 3, x],
        ),
        (
            Op::BatchNormInputGrad {
                bn,
                training: false,
            },
            vec![x, 9, 3, x],
        ),
        (Op::BatchNormAffineGrads(bn), vec![x, 9, x]),
        (Op::Upsample2d(up), vec![x]),
        (Op::Upsample2dGrad(up), vec![4 * x]),
        (Op::Cat { outer: 6 }, vec![x, 12]),
        (
            Op::CatPart {
                outer: 6,
                inner: 21,
                start: 5,
                len: 9,
            },
            vec![126],
        ),
    ]
    .into_iter()
    .chain(averaging_ops(pool, x, pooled))
    .chain(reduction_ops())
    .collect()
}

/// Layer normalization and average pooling, on the same input.
fn averaging_ops(pool: Pool2d, x: usize, pooled: usize) -> Vec<(Op, Vec<usize>)> {
    vec![
        (
            Op::LayerNormStats {
                ln: LayerNorm { groups: 6, d: 42 },
                eps: 1e-5,
            },
            vec![x],
        ),
        (
            Op::LayerNormApply(LayerNorm { groups: 6, d: 42 }),
            vec![x, 12, 42, 42],
        ),
        (
            Op::LayerNormInputGrad(LayerNorm { groups: 6, d: 42 }),
            vec![x, 12, 42, x],
        ),
        (
            Op::LayerNormAffineGrads {
                ln: LayerNorm { groups: 6, d: 42 },
                samples: 2,
            },
            vec![x, 12, x],
        ),
        (Op::AvgPool2d(pool), vec![x]),
        (Op::AvgPool2dGrad(pool), vec![pooled]),
        (
            Op::AdaptiveAvgPool2d(Adaptive {
                planes: 6,
                input: [7, 6],
                output: [3, 4],
            }),
            vec![x],
        ),
        (
            Op::AdaptiveAvgPool2dGrad(Adaptive {
                planes: 6,
                input: [7, 6],
                output: [1, 1],
            }),
            vec![6],
        ),
    ]
}

/// Sums, softmaxes and the cross-entropy, on `[6, 7, 6]` values.
fn reduction_ops() -> Vec<(Op, Vec<usize>)> {
    let axis = Axis {
        outer: 6,
        size: 7,
        inner: 6,
    };
    let ce = CrossEntropy {
        batch: 6,
        classes: 7,
        inner: 6,
        label_smoothing: 0.1,
    };
    vec![
        (Op::SumAxis(axis), vec![252]),
        (Op::ExpandAxis(axis), vec![36]),
        (Op::Softmax { axis, log: true }, vec![252]),
        (Op::SoftmaxGrad { axis, log: false }, vec![252, 252]),
        (Op::CrossEntropy(ce), vec![252, 36]),
        (Op::CrossEntropyGrad { ce, scale: 0.5 }, vec![252, 36, 7]),
        (
            Op::Binary {
                op: Binary::Div,
                shapes: Broadcast::new(&[6, 7, 6], &[7, 1]).unwrap(),
            },
            vec![252, 7],
        ),
        (Op::PointwiseLoss(Pointwise::Bce), vec![252, 252, 6]),
        (
            Op::PointwiseLossGrad {
                loss: Pointwise::Mse,
                g: 2.0,
            },
            vec![252, 252],
        ),
        (Op::SumOfSquares, vec![252]),
        (Op::RowSquares { rows: 42, width: 6 }, vec![252]),
        (
            Op::Embedding(Embedding {
                num: 7,
                dim: 6,
                count: 36,
            }),
            vec![36, 42],
        ),
        (
            Op::EmbeddingGrad {
                e: Embedding {
                    num: 7,
                    dim: 6,
                    count: 36,
                },
                samples: 6,
            },
            vec![36, 216],
        ),
        (
            Op::BinaryGrad {
                op: Binary::Mul,
                shapes: Broadcast::new(&[6, 7, 6], &[7, 1]).unwrap(),
                which: Operand {
                    second: true,
                    samples: 6,
                },
            },
            vec![252, 7, 252],
        ),
    ]
}

/// Sums, softmaxes and the loss split over threads by output rows or
/// chunks; none of the splits may move a bit.
#[cfg(feature = "parallel")]
#[test]
fn reductions_give_the_same_bits_on_any_thread_count() {
    let axis = Axis {
        outer: 37,
        size: 10,
        inner: 300,
    };
    let ce = CrossEntropy {
        batch: 37,
        classes: 10,
        inner: 300,
        label_smoothing: 0.05,
    };
    let x = crate::gemm::tests::values(37 * 10 * 300, 9);
    let g = crate::gemm::tests::values(37 * 10 * 300, 10);
    let targets: Vec<f32> = (0..37 * 300).map(|i| ((i * 7) % 10) as f32).collect();
    let weights = crate::gemm::tests::values(10, 11);
    let cases: Vec<(Op, Vec<&[f32]>)> = vec![
        (Op::SumAxis(axis), vec![&x]),
        (
            Op::SumAxis(Axis {
                outer: 1,
                size: 111_000,
                inner: 1,
            }),
            vec![&x],
        ),
        (Op::ExpandAxis(axis), vec![&g[..37 * 300]]),
        (Op::Softmax { axis, log: false }, vec![&x]),
        (Op::SoftmaxGrad { axis, log: true }, vec![&x, &g]),
        (Op::CrossEntropy(ce), vec![&x, &targets, &weights]),
        (
            Op::CrossEntropyGrad { ce, scale: 0.25 },
            vec![&x, &targets, &weights],
        ),
        (
            Op::Binary {
                op: Binary::Sub,
                shapes: Broadcast::new(&[37, 10, 300], &[37, 1, 300]).unwrap(),
            },
            vec![&x, &g[..37 * 300]],
        ),
        (Op::SumOfSquares, vec![&x]),
        (
            Op::RowSquares {
                rows: 3700,
                width: 30,
            },
            vec![&x],
        ),
        (
            Op::PointwiseLossGrad {
                loss: Pointwise::Huber(0.5),
                g: 0.3,
            },
            vec![&x, &g],
        ),
    ];
    for (op, inputs) in cases {
        let lens: Vec<usize> = inputs.iter().map(|v| v.len()).collect();
        let n = op.output_len(&lens).unwrap();
        let run = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            let mut out = vec![f32::NAN; n];
            pool.install(|| op.run(&inputs, &mut out));
            out.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
        };
        let one = run(1);
        assert!(one.iter().all(|&b| !f32::from_bits(b).is_nan()), "{op:?}");
        for threads in [2, 3, 8] {
            assert_eq!(run(threads), one, "{op:?} on {threads} threads");
        }
    }
}

/// `Op::run` writes every value of its output and reads none, so the
/// host may hand it a buffer holding anything (a spare of the plan's).
#[test]
fn every_operation_writes_its_whole_output_and_reads_none_of_it() {
    for (i, (op, lens)) in every_op().into_iter().enumerate() {
        let n = op
            .output_len(&lens)
            .unwrap_or_else(|e| panic!("{op:?}: {e}"));
        let inputs: Vec<Vec<f32>> = lens
            .iter()
            .enumerate()
            .map(|(j, &len)| crate::gemm::tests::values(len, (i * 7 + j) as u32 + 1))
            .collect();
        let slices: Vec<&[f32]> = inputs.iter().map(Vec::as_slice).collect();
        let run = |fill: f32| {
            let mut out = vec![fill; n];
            op.run(&slices, &mut out);
            out.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
        };
        assert_eq!(run(0.0), run(f32::NAN), "{op:?} reads or skips its output");
    }
}
