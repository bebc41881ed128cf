//! Dense kernels with a fixed summation order.
//!
//! ndarray's `dot` hands large products to `matrixmultiply`, which picks AVX/FMA
//! kernels at run time natively and a scalar path in wasm: fast, but the bits
//! differ between builds. These kernels use eight independent accumulators
//! (which LLVM turns into two f32x4 registers with simd128, or SSE natively),
//! never fuse multiply and add, and reduce in one fixed order, so a native and a
//! wasm build of a plan produce identical parameters.

const LANES: usize = 8;

/// Σ a[i]·b[i], accumulated in eight lanes reduced pairwise.
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    debug_assert_eq!(a.len(), b.len());
    let mut acc = [0.0f32; LANES];
    let chunks = a.len() / LANES;
    for (ca, cb) in a.chunks_exact(LANES).zip(b.chunks_exact(LANES)) {
        for k in 0..LANES {
            acc[k] += ca[k] * cb[k];
        }
    }
    let mut tail = 0.0f32;
    for i in chunks * LANES..a.len() {
        tail += a[i] * b[i];
    }
    let s0 = (acc[0] + acc[4]) + (acc[1] + acc[5]);
    let s1 = (acc[2] + acc[6]) + (acc[3] + acc[7]);
    (s0 + s1) + tail
}

/// y[i] += alpha · x[i].
#[inline]
pub fn axpy(alpha: f32, x: &[f32], y: &mut [f32]) {
    debug_assert_eq!(x.len(), y.len());
    for (yi, xi) in y.iter_mut().zip(x) {
        *yi += alpha * *xi;
    }
}

/// out[r, o] = bias[o] + Σ_i input[r, i] · weight[o, i], for row-major
/// `input` [rows, n_in], `weight` [n_out, n_in] and `out` [rows, n_out].
pub fn linear_forward(input: &[f32], weight: &[f32], bias: &[f32], n_in: usize, out: &mut [f32]) {
    let n_out = bias.len();
    for (x, y) in input.chunks_exact(n_in).zip(out.chunks_exact_mut(n_out)) {
        for (o, yo) in y.iter_mut().enumerate() {
            *yo = dot(x, &weight[o * n_in..(o + 1) * n_in]) + bias[o];
        }
    }
}

/// Gradients of [`linear_forward`]: given `grad_out` [rows, n_out], accumulate
/// grad_weight[o, :] += Σ_r grad_out[r, o] · input[r, :] and
/// grad_bias[o] += Σ_r grad_out[r, o] (rows in order), and when asked write
/// grad_input[r, :] = Σ_o grad_out[r, o] · weight[o, :].
pub fn linear_backward(
    input: &[f32],
    weight: &[f32],
    grad_out: &[f32],
    n_in: usize,
    grad_weight: &mut [f32],
    grad_bias: &mut [f32],
    grad_input: Option<&mut [f32]>,
) {
    let n_out = grad_bias.len();
    for (x, g) in input.chunks_exact(n_in).zip(grad_out.chunks_exact(n_out)) {
        for (o, &go) in g.iter().enumerate() {
            if go != 0.0 {
                axpy(go, x, &mut grad_weight[o * n_in..(o + 1) * n_in]);
            }
            grad_bias[o] += go;
        }
    }
    if let Some(grad_input) = grad_input {
        grad_input.fill(0.0);
        for (gx, g) in grad_input
            .chunks_exact_mut(n_in)
            .zip(grad_out.chunks_exact(n_out))
        {
            for (o, &go) in g.iter().enumerate() {
                if go != 0.0 {
                    axpy(go, &weight[o * n_in..(o + 1) * n_in], gx);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_matches_naive_sum_on_small_integers() {
        let a: Vec<f32> = (0..19).map(|i| i as f32).collect();
        let b: Vec<f32> = (0..19).map(|i| (i % 3) as f32).collect();
        let naive: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
        assert_eq!(dot(&a, &b), naive);
    }

    #[test]
    fn linear_forward_computes_affine_map() {
        // input 2x3, weight 2x3, bias 2
        let input = [1.0, 2.0, 3.0, -1.0, 0.0, 1.0];
        let weight = [1.0, 0.0, -1.0, 0.5, 0.5, 0.5];
        let bias = [0.25, -0.25];
        let mut out = [0.0; 4];
        linear_forward(&input, &weight, &bias, 3, &mut out);
        assert_eq!(out, [-1.75, 2.75, -1.75, -0.25]);
    }
}
