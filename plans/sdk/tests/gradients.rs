//! Finite-difference checks of every operation, layer and loss of the SDK:
//! the autodiff gradient of a random projection of the output must match
//! central differences for every input and parameter.

use fedwasm_plan::gradcheck::{Tolerance, check};
use fedwasm_plan::loss::{self, CrossEntropy};
use fedwasm_plan::nn::{self, Module};
use fedwasm_plan::ops::conv::Conv2dOptions;
use fedwasm_plan::ops::norm::BatchNormArgs;
use fedwasm_plan::random;
use fedwasm_plan::tensor::{Tensor, with_training};

/// A differentiable leaf of `shape` with values in [low, high).
fn leaf(shape: &[usize], low: f32, high: f32) -> Tensor {
    let n = shape.iter().product();
    Tensor::parameter(random::uniform_range(n, low, high), shape).unwrap()
}

/// Σ out ⊙ R for a fixed random R: a scalar that weighs every output differently.
fn project(out: &Tensor) -> Tensor {
    let n = out.numel();
    let r = Tensor::new(
        (0..n)
            .map(|i| ((i * 7919 % 13) as f32 - 6.0) / 6.0)
            .collect(),
        out.shape(),
    )
    .unwrap();
    out.mul(&r).unwrap().sum()
}

fn assert_gradients(wrt: &[Tensor], f: impl Fn() -> fedwasm_plan::PlanResult<Tensor>) {
    check(wrt, f, Tolerance::default()).unwrap();
}

#[test]
fn linear_and_matmul_gradients_match_finite_differences() {
    random::seed_native([1; 32]);
    let x = leaf(&[3, 2, 5], -1.0, 1.0);
    let layer = nn::Linear::new(5, 4).unwrap();
    let w = layer.weight.clone();
    let b = layer.bias.clone().unwrap();
    assert_gradients(&[x.clone(), w, b], || Ok(project(&layer.forward(&x)?)));
    let a = leaf(&[3, 4], -1.0, 1.0);
    let m = leaf(&[4, 6], -1.0, 1.0);
    assert_gradients(&[a.clone(), m.clone()], || Ok(project(&a.matmul(&m)?)));
}

#[test]
fn conv2d_gradients_match_finite_differences() {
    random::seed_native([2; 32]);
    for options in [
        Conv2dOptions::default(),
        Conv2dOptions {
            stride: [2, 1],
            padding: [1, 2],
            dilation: [1, 1],
        },
        Conv2dOptions {
            stride: [1, 2],
            padding: [2, 1],
            dilation: [2, 1],
        },
    ] {
        let x = leaf(&[2, 3, 7, 6], -1.0, 1.0);
        let mut conv = nn::Conv2d::new(3, 4, [3, 2]).unwrap();
        conv.options = options;
        let (w, b) = (conv.weight.clone(), conv.bias.clone().unwrap());
        assert_gradients(&[x.clone(), w, b], || Ok(project(&conv.forward(&x)?)));
    }
}

#[test]
fn pooling_gradients_match_finite_differences() {
    random::seed_native([3; 32]);
    // Distinct values 0.05 apart, so no perturbation changes which one is a maximum.
    let values = random::permutation(140)
        .into_iter()
        .map(|i| i as f32 * 0.05 - 3.5)
        .collect();
    let x = Tensor::parameter(values, &[2, 2, 7, 5]).unwrap();
    let max = nn::MaxPool2d::new(2);
    assert_gradients(std::slice::from_ref(&x), || Ok(project(&max.forward(&x)?)));
    let overlapping = Conv2dOptions {
        stride: [2, 1],
        padding: [1, 1],
        dilation: [1, 1],
    };
    assert_gradients(std::slice::from_ref(&x), || {
        Ok(project(&x.max_pool2d([3, 2], overlapping)?))
    });
    assert_gradients(std::slice::from_ref(&x), || {
        Ok(project(&x.avg_pool2d([3, 3], overlapping)?))
    });
    assert_gradients(std::slice::from_ref(&x), || {
        Ok(project(&x.adaptive_avg_pool2d([3, 2])?))
    });
    assert_gradients(std::slice::from_ref(&x), || {
        Ok(project(&x.adaptive_avg_pool2d([1, 1])?))
    });
}

#[test]
fn normalization_gradients_match_finite_differences() {
    random::seed_native([4; 32]);
    let x = leaf(&[4, 3, 2, 3], -2.0, 2.0);
    let bn = nn::BatchNorm::new_2d(3).unwrap();
    bn.weight.values_mut().copy_from_slice(&[0.5, 1.5, -1.0]);
    bn.bias.values_mut().copy_from_slice(&[0.1, -0.2, 0.3]);
    let (w, b) = (bn.weight.clone(), bn.bias.clone());
    let train = |bn: &nn::BatchNorm| with_training(true, || bn.forward(&x));
    assert_gradients(&[x.clone(), w.clone(), b.clone()], || {
        Ok(project(&train(&bn)?))
    });
    // Evaluation mode uses the running statistics.
    bn.running_mean
        .values_mut()
        .copy_from_slice(&[0.2, -0.1, 0.4]);
    bn.running_var
        .values_mut()
        .copy_from_slice(&[0.5, 2.0, 1.5]);
    assert_gradients(&[x.clone(), w, b], || Ok(project(&bn.forward(&x)?)));
    let x1 = leaf(&[5, 3], -2.0, 2.0);
    let bn1 = nn::BatchNorm::new_1d(3).unwrap();
    assert_gradients(std::slice::from_ref(&x1), || {
        Ok(project(&with_training(true, || bn1.forward(&x1))?))
    });
    let ln = nn::LayerNorm::new(&[2, 3]).unwrap();
    ln.weight
        .values_mut()
        .copy_from_slice(&[0.5, 1.5, -1.0, 2.0, 1.0, 0.3]);
    let (w, b) = (ln.weight.clone(), ln.bias.clone());
    assert_gradients(&[x.clone(), w, b], || Ok(project(&ln.forward(&x)?)));
}

#[test]
fn batch_norm_updates_running_statistics_like_pytorch() {
    let x = Tensor::new(vec![1.0, 2.0, 3.0, 6.0], &[4, 1]).unwrap();
    let bn = nn::BatchNorm::new_1d(1).unwrap();
    with_training(true, || bn.forward(&x)).unwrap();
    // mean 3, unbiased variance 14/3; momentum 0.1.
    assert!((bn.running_mean.to_vec()[0] - 0.3).abs() < 1e-6);
    assert!((bn.running_var.to_vec()[0] - (0.9 + 0.1 * 14.0 / 3.0)).abs() < 1e-6);
    assert_eq!(bn.num_batches_tracked.to_vec(), vec![1.0]);
    let err = Tensor::zeros(&[1, 1])
        .batch_norm(BatchNormArgs {
            running_mean: &bn.running_mean,
            running_var: &bn.running_var,
            weight: None,
            bias: None,
            training: true,
            momentum: 0.1,
            eps: 1e-5,
        })
        .unwrap_err();
    assert!(
        err.message.contains("more than one value per channel"),
        "{err}"
    );
}

#[test]
fn activation_gradients_match_finite_differences() {
    random::seed_native([5; 32]);
    let x = leaf(&[3, 5], -2.0, 2.0);
    let positive = leaf(&[3, 5], 0.5, 2.0);
    type Unary = Box<dyn Fn(&Tensor) -> Tensor>;
    let unary: Vec<(&str, Unary)> = vec![
        ("relu", Box::new(|t| t.relu())),
        ("leaky_relu", Box::new(|t| t.leaky_relu(0.1))),
        ("gelu", Box::new(|t| t.gelu())),
        ("sigmoid", Box::new(|t| t.sigmoid())),
        ("tanh", Box::new(|t| t.tanh())),
        ("exp", Box::new(|t| t.exp())),
        ("square", Box::new(|t| t.square())),
        ("abs", Box::new(|t| t.abs())),
        ("scale", Box::new(|t| t.scale(-3.0).add_scalar(2.0))),
    ];
    for (name, f) in &unary {
        check(
            std::slice::from_ref(&x),
            || Ok(project(&f(&x))),
            Tolerance::default(),
        )
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    for (name, f) in [
        (
            "log",
            Box::new(|t: &Tensor| t.log()) as Box<dyn Fn(&Tensor) -> Tensor>,
        ),
        ("sqrt", Box::new(|t: &Tensor| t.sqrt())),
        ("powf", Box::new(|t: &Tensor| t.powf(1.7))),
    ] {
        check(
            std::slice::from_ref(&positive),
            || Ok(project(&f(&positive))),
            Tolerance::default(),
        )
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    // Clamp's kinks at ±1 kept away from the inputs.
    let c = Tensor::parameter(vec![-1.5, -0.9, 0.0, 0.5, 0.95, 1.2], &[6]).unwrap();
    assert_gradients(std::slice::from_ref(&c), || {
        Ok(project(&c.clamp(-1.0, 1.0)))
    });
    assert_gradients(std::slice::from_ref(&x), || Ok(project(&x.softmax(1)?)));
    assert_gradients(std::slice::from_ref(&x), || Ok(project(&x.log_softmax(0)?)));
}

#[test]
fn broadcast_reduction_and_layout_gradients_match_finite_differences() {
    random::seed_native([6; 32]);
    let a = leaf(&[2, 3, 4], -1.0, 1.0);
    let b = leaf(&[3, 1], 0.5, 1.5);
    assert_gradients(&[a.clone(), b.clone()], || Ok(project(&a.add(&b)?)));
    assert_gradients(&[a.clone(), b.clone()], || Ok(project(&a.sub(&b)?)));
    assert_gradients(&[a.clone(), b.clone()], || Ok(project(&a.mul(&b)?)));
    assert_gradients(&[a.clone(), b.clone()], || Ok(project(&a.div(&b)?)));
    assert_gradients(std::slice::from_ref(&a), || {
        Ok(project(&a.sum_dim(1, false)?))
    });
    assert_gradients(std::slice::from_ref(&a), || {
        Ok(project(&a.mean_dim(2, true)?))
    });
    assert_gradients(std::slice::from_ref(&a), || Ok(a.mean().scale(3.0)));
    assert_gradients(std::slice::from_ref(&a), || {
        Ok(project(&a.flatten(1)?.t()?))
    });
    assert_gradients(std::slice::from_ref(&a), || {
        Ok(project(&a.reshape(&[4, 6])?))
    });
    let c = leaf(&[2, 1, 4], -1.0, 1.0);
    assert_gradients(&[a.clone(), c.clone()], || Ok(project(&a.cat(&c, 1)?)));
    let maps = leaf(&[2, 2, 2, 3], -1.0, 1.0);
    assert_gradients(std::slice::from_ref(&maps), || {
        Ok(project(&maps.upsample_nearest2d(2)?))
    });
}

#[test]
fn concatenation_and_upsampling_equal_pytorch() {
    // torch.cat([a, b], 1) of [2, 1] and [2, 2]: each row joined.
    let a = Tensor::new(vec![1.0, 2.0], &[2, 1]).unwrap();
    let b = Tensor::new(vec![3.0, 4.0, 5.0, 6.0], &[2, 2]).unwrap();
    let joined = a.cat(&b, 1).unwrap();
    assert_eq!(joined.shape(), &[2, 3]);
    assert_eq!(joined.to_vec(), [1.0, 3.0, 4.0, 2.0, 5.0, 6.0]);
    assert!(
        a.cat(&b, 0).is_err(),
        "extents off the joined dimension must agree"
    );
    // F.interpolate([[[[1, 2], [3, 4]]]], scale_factor=2, mode="nearest")
    let x = Tensor::new(vec![1.0, 2.0, 3.0, 4.0], &[1, 1, 2, 2]).unwrap();
    let up = x.upsample_nearest2d(2).unwrap();
    assert_eq!(up.shape(), &[1, 1, 4, 4]);
    assert_eq!(
        up.to_vec(),
        [
            1.0, 1.0, 2.0, 2.0, 1.0, 1.0, 2.0, 2.0, 3.0, 3.0, 4.0, 4.0, 3.0, 3.0, 4.0, 4.0
        ]
    );
}

#[test]
fn embedding_and_dropout_gradients_match_finite_differences() {
    random::seed_native([7; 32]);
    let table = nn::Embedding::new(5, 3).unwrap();
    let idx = Tensor::new(vec![0.0, 4.0, 4.0, 2.0, 1.0, 0.0], &[2, 3]).unwrap();
    assert_gradients(std::slice::from_ref(&table.weight), || {
        Ok(project(&table.forward(&idx)?))
    });
    assert!(
        Tensor::new(vec![5.0], &[1])
            .unwrap()
            .embedding(&table.weight)
            .is_err()
    );
    let x = leaf(&[4, 6], -1.0, 1.0);
    assert_gradients(std::slice::from_ref(&x), || {
        // The same mask on every evaluation.
        random::seed_native([8; 32]);
        Ok(project(&x.dropout(0.3)?))
    });
}

#[test]
fn loss_gradients_match_finite_differences() {
    random::seed_native([9; 32]);
    let logits = leaf(&[4, 3], -2.0, 2.0);
    let classes = Tensor::new(vec![0.0, 2.0, 1.0, 2.0], &[4]).unwrap();
    let plain = CrossEntropy::default();
    let fancy = CrossEntropy {
        class_weights: Some(vec![0.5, 2.0, 1.0]),
        label_smoothing: 0.1,
    };
    for opts in [&plain, &fancy] {
        assert_gradients(std::slice::from_ref(&logits), || {
            loss::cross_entropy(&logits, &classes, opts)
        });
    }
    let binary = Tensor::new(
        vec![1.0, 0.0, 0.5, 1.0, 0.0, 1.0, 0.0, 0.2, 1.0, 1.0, 0.0, 0.3],
        &[4, 3],
    )
    .unwrap();
    assert_gradients(std::slice::from_ref(&logits), || {
        loss::binary_cross_entropy_with_logits(&logits, &binary, Some(&[2.0, 1.0, 0.5]))
    });
    let target = leaf(&[4, 3], -2.0, 2.0).detach();
    assert_gradients(std::slice::from_ref(&logits), || {
        loss::mse(&logits, &target)
    });
    assert_gradients(std::slice::from_ref(&logits), || loss::l1(&logits, &target));
    assert_gradients(std::slice::from_ref(&logits), || {
        loss::huber(&logits, &target, 0.7)
    });
    let probs = leaf(&[2, 1, 3, 3], 0.05, 0.95);
    let mask = Tensor::new(
        (0..18).map(|i| (i % 3 == 0) as u8 as f32).collect(),
        &[2, 1, 3, 3],
    )
    .unwrap();
    assert_gradients(std::slice::from_ref(&probs), || {
        loss::soft_dice(&probs, &mask, 1.0)
    });
    // A class per pixel: logits [N, C, H, W] against [N, H, W].
    let maps = leaf(&[2, 3, 2, 2], -2.0, 2.0);
    let pixels = Tensor::new(vec![0.0, 1.0, 2.0, 2.0, 1.0, 0.0, 0.0, 1.0], &[2, 2, 2]).unwrap();
    for opts in [&plain, &fancy] {
        assert_gradients(std::slice::from_ref(&maps), || {
            loss::cross_entropy(&maps, &pixels, opts)
        });
    }
    let mut segmenter = fedwasm_plan::Segmenter::new(3).unwrap();
    segmenter.dice_weight = 0.5;
    assert_gradients(std::slice::from_ref(&maps), || {
        segmenter.loss(&maps, &pixels)
    });
}

#[test]
fn losses_equal_pytorch_on_known_values() {
    // F.cross_entropy([[1, 2, 3]], [2]) = log(e + e² + e³) − 3 = 0.40760596
    let logits = Tensor::new(vec![1.0, 2.0, 3.0], &[1, 3]).unwrap();
    let target = Tensor::new(vec![2.0], &[1]).unwrap();
    let ce = loss::cross_entropy(&logits, &target, &CrossEntropy::default()).unwrap();
    assert!((ce.item().unwrap() - 0.407_605_96).abs() < 1e-6);
    // With label smoothing 0.1: 0.9·0.4076 + 0.1·mean(−log p) = 0.9·0.40760596 + 0.1·1.40760596
    let smooth = CrossEntropy {
        label_smoothing: 0.1,
        ..CrossEntropy::default()
    };
    let ce = loss::cross_entropy(&logits, &target, &smooth).unwrap();
    assert!((ce.item().unwrap() - (0.9 * 0.407_606 + 0.1 * 1.407_606)).abs() < 2e-6);
    // BCE with logits of 0 is ln 2 whatever the target.
    let z = Tensor::zeros(&[2, 1]);
    let t = Tensor::new(vec![0.0, 1.0], &[2, 1]).unwrap();
    let bce = loss::binary_cross_entropy_with_logits(&z, &t, None).unwrap();
    assert!((bce.item().unwrap() - std::f32::consts::LN_2).abs() < 1e-6);
    // Per pixel, the mean over pixels of each pixel's cross-entropy: pixel
    // (0, 0) holds logits [1, 2, 3] of class 2, pixel (0, 1) [0, 0, 0] of
    // class 0 (loss ln 3).
    let maps = Tensor::new(vec![1.0, 0.0, 2.0, 0.0, 3.0, 0.0], &[1, 3, 1, 2]).unwrap();
    let pixels = Tensor::new(vec![2.0, 0.0], &[1, 1, 2]).unwrap();
    let ce = loss::cross_entropy(&maps, &pixels, &CrossEntropy::default()).unwrap();
    let expected = (0.407_605_96 + 3f32.ln()) / 2.0;
    assert!((ce.item().unwrap() - expected).abs() < 1e-6);
    let flat = Tensor::new(vec![2.0, 0.0], &[1, 2]).unwrap();
    let err = loss::cross_entropy(&maps, &flat, &CrossEntropy::default()).unwrap_err();
    assert!(err.message.contains("need targets [1, 1, 2]"), "{err}");
    let bad = Tensor::new(vec![3.0], &[1]).unwrap();
    let err = loss::cross_entropy(&logits, &bad, &CrossEntropy::default()).unwrap_err();
    assert!(err.message.contains("target 3 in row 0"), "{err}");
}

#[test]
fn max_pooling_gives_ties_to_the_first_and_propagates_nan() {
    // Two 2×2 windows: all equal (the gradient goes to the top left), and one
    // holding a NaN (the output is NaN, as in PyTorch).
    let x = Tensor::parameter(
        vec![1.0, 1.0, 2.0, f32::NAN, 1.0, 1.0, 3.0, 0.0],
        &[1, 1, 2, 4],
    )
    .unwrap();
    let out = nn::MaxPool2d::new(2).forward(&x).unwrap();
    let v = out.to_vec();
    assert_eq!(v[0], 1.0);
    assert!(v[1].is_nan());
    out.mul(&Tensor::new(vec![1.0, 0.0], &[1, 1, 1, 2]).unwrap())
        .unwrap()
        .sum()
        .backward()
        .unwrap();
    assert_eq!(x.grad().unwrap()[..2], [1.0, 0.0]);
}
