//! DP-SGD's per-sample gradients, for every kind of layer, against the slow
//! definition: one backward pass per sample.

use fedwasm_plan::nn::{self, Module, Sequential, parameters};
use fedwasm_plan::privacy::DpSgd;
use fedwasm_plan::random;
use fedwasm_plan::tensor::{Tensor, with_training};
use fedwasm_plan::{Classifier, PlanResult};

/// A small CNN with every parameterised layer DP-SGD supports.
fn model() -> Sequential {
    random::seed_native([21; 32]);
    Sequential::new()
        .add(
            "conv1",
            nn::Conv2d::new(2, 3, [3, 3]).unwrap().padding(1).stride(2),
        )
        .push(nn::Relu)
        .push(nn::MaxPool2d::new(2))
        .push(nn::Flatten(1))
        .add("ln", nn::LayerNorm::new(&[12]).unwrap())
        .add("fc1", nn::Linear::new(12, 5).unwrap())
        .push(nn::Tanh)
        .add("out", nn::Linear::new(5, 3).unwrap())
}

/// Four samples of [2, 8, 8] at very different scales, so clipping bites.
fn batch() -> (Tensor, Tensor) {
    random::seed_native([22; 32]);
    let mut x = random::uniform_range(4 * 128, -1.0, 1.0);
    for (i, v) in x.iter_mut().enumerate() {
        *v *= [0.1, 20.0, 1.0, 5.0][i / 128];
    }
    (
        Tensor::new(x, &[4, 2, 8, 8]).unwrap(),
        Tensor::new(vec![0.0, 2.0, 1.0, 2.0], &[4]).unwrap(),
    )
}

fn loss(m: &Sequential, x: &Tensor, y: &Tensor) -> PlanResult<Tensor> {
    with_training(true, || Classifier::new(3).loss(&m.forward(x)?, y))
}

/// Each sample's own gradient over every parameter, one backward pass each.
fn sample_gradients(m: &Sequential, x: &Tensor, y: &Tensor) -> Vec<Vec<f32>> {
    let params = parameters(m);
    (0..4)
        .map(|s| {
            let xs =
                Tensor::new(x.values()[s * 128..(s + 1) * 128].to_vec(), &[1, 2, 8, 8]).unwrap();
            let ys = Tensor::new(vec![y.values()[s]], &[1]).unwrap();
            own_gradient(&params, loss(m, &xs, &ys).unwrap())
        })
        .collect()
}

fn norm(v: &[f32]) -> f32 {
    v.iter().map(|x| x * x).sum::<f32>().sqrt()
}

/// Every parameter's gradient, flattened, after one backward pass of `loss`.
fn own_gradient(params: &[Tensor], loss: Tensor) -> Vec<f32> {
    params.iter().for_each(|p| p.set_grad(None));
    loss.backward().unwrap();
    params
        .iter()
        .flat_map(|p| p.grad().unwrap().to_vec())
        .collect()
}

/// DP-SGD's per-sample norms of `loss(0..batch)` against the norm of each
/// sample's own loss `loss(s..s + 1)`, back-propagated alone.
fn assert_norms_match_one_backward_per_sample(
    params: &[Tensor],
    batch: usize,
    loss: impl Fn(std::ops::Range<usize>) -> Tensor,
) {
    let norms = DpSgd::sample_norms(&loss(0..batch), params, batch).unwrap();
    for (s, &got) in norms.iter().enumerate() {
        let expected = norm(&own_gradient(params, loss(s..s + 1)));
        assert!(
            (got - expected).abs() <= 1e-4 * expected.max(1.0),
            "sample {s}: {got} vs {expected}"
        );
    }
}

#[test]
fn per_sample_norms_equal_each_samples_own_gradient_norm() {
    let m = model();
    let (x, y) = batch();
    let own = sample_gradients(&m, &x, &y);
    let norms = DpSgd::sample_norms(&loss(&m, &x, &y).unwrap(), &parameters(&m), 4).unwrap();
    for (s, g) in own.iter().enumerate() {
        let expected = norm(g);
        assert!(
            (norms[s] - expected).abs() <= 1e-4 * expected.max(1.0),
            "sample {s}: {} vs {expected}",
            norms[s]
        );
    }
}

#[test]
fn every_sample_is_clipped_to_the_bound_before_averaging() {
    let m = model();
    let (x, y) = batch();
    let own = sample_gradients(&m, &x, &y);
    let clip = 0.5;
    assert!(
        own.iter().filter(|g| norm(g) > clip).count() >= 2,
        "clipping must bite"
    );
    let expected: Vec<f32> = (0..own[0].len())
        .map(|k| {
            own.iter()
                .map(|g| g[k] * (clip / norm(g)).min(1.0))
                .sum::<f32>()
                / 4.0
        })
        .collect();
    let params = parameters(&m);
    params.iter().for_each(|p| p.set_grad(None));
    DpSgd { clip, sigma: 0.0 }
        .backward(&loss(&m, &x, &y).unwrap(), &params, 4)
        .unwrap();
    let got: Vec<f32> = params
        .iter()
        .flat_map(|p| p.grad().unwrap().to_vec())
        .collect();
    for (k, (a, b)) in got.iter().zip(&expected).enumerate() {
        assert!(
            (a - b).abs() <= 1e-5 + 1e-4 * b.abs(),
            "element {k}: {a} vs {b}"
        );
    }
}

#[test]
fn embedding_and_batch_norm_in_evaluation_give_per_sample_gradients() {
    random::seed_native([23; 32]);
    let table = nn::Embedding::new(6, 4).unwrap();
    let bn = nn::BatchNorm::new_1d(4).unwrap();
    let idx = Tensor::new(vec![1.0, 5.0, 5.0, 0.0, 2.0, 1.0], &[3, 2]).unwrap();
    let params = vec![table.weight.clone(), bn.weight.clone(), bn.bias.clone()];
    let f = |rows: std::ops::Range<usize>| {
        let ids = Tensor::new(
            idx.values()[rows.start * 2..rows.end * 2].to_vec(),
            &[rows.len(), 2],
        )
        .unwrap();
        let e = table.forward(&ids).unwrap().sum_dim(1, false).unwrap();
        bn.forward(&e).unwrap().square().mean()
    };
    // A sample's own loss is its mean over 4 outputs, the batch's over 12:
    // the shares are scaled so that the norms compare.
    assert_norms_match_one_backward_per_sample(&params, 3, f);
}

#[test]
fn batch_norm_in_training_is_refused_with_a_reason() {
    random::seed_native([24; 32]);
    let m = Sequential::new()
        .add("fc", nn::Linear::new(3, 4).unwrap())
        .add("bn", nn::BatchNorm::new_1d(4).unwrap())
        .add("out", nn::Linear::new(4, 3).unwrap());
    let x = Tensor::new(random::uniform(12), &[4, 3]).unwrap();
    let y = Tensor::new(vec![0.0, 1.0, 2.0, 0.0], &[4]).unwrap();
    let l = with_training(true, || Classifier::new(3).loss(&m.forward(&x)?, &y)).unwrap();
    let err = DpSgd {
        clip: 1.0,
        sigma: 0.0,
    }
    .backward(&l, &parameters(&m), 4)
    .unwrap_err();
    assert!(err.message.contains("BatchNorm"), "{err}");
}

#[test]
fn noise_has_std_sigma_clip_over_batch() {
    let fc = nn::Linear::zeros(4000, 1).unwrap();
    let params = parameters(&fc);
    random::seed_native([9; 32]);
    let dp = DpSgd {
        clip: 0.5,
        sigma: 8.0,
    };
    dp.add_noise(&params, 2).unwrap();
    let values: Vec<f32> = params[0].grad().unwrap().to_vec();
    let n = values.len() as f32;
    let mean = values.iter().sum::<f32>() / n;
    let var = values.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / n;
    // σ·clip / batch = 8 · 0.5 / 2 = 2.
    assert!((var.sqrt() - 2.0).abs() < 0.1, "std {}", var.sqrt());
    assert!(mean.abs() < 0.1, "mean {mean}");
}

/// A layer applied twice: squared norms of its two uses do not add up, so
/// DP-SGD falls back to materialized per-sample gradients and stays exact.
#[test]
fn a_shared_layer_still_gets_exact_per_sample_norms() {
    random::seed_native([25; 32]);
    let shared = nn::Linear::new(4, 4).unwrap();
    let head = nn::Linear::new(4, 1).unwrap();
    let forward = |x: &Tensor| -> PlanResult<Tensor> {
        head.forward(&shared.forward(&shared.forward(x)?.tanh())?.tanh())
    };
    let mut params = parameters(&shared);
    params.extend(parameters(&head));
    let x = Tensor::new(random::uniform_range(12, -2.0, 2.0), &[3, 4]).unwrap();
    let y = Tensor::new(vec![0.0, 1.0, 1.0], &[3]).unwrap();
    let loss = |rows: std::ops::Range<usize>| {
        let xs = Tensor::new(
            x.values()[rows.start * 4..rows.end * 4].to_vec(),
            &[rows.len(), 4],
        )
        .unwrap();
        let ys = Tensor::new(y.values()[rows.clone()].to_vec(), &[rows.len()]).unwrap();
        Classifier::new(2)
            .loss(&forward(&xs).unwrap(), &ys)
            .unwrap()
    };
    assert_norms_match_one_backward_per_sample(&params, 3, loss);
}
