//! Activation functions and their derivatives, element by element.
//!
//! Each derivative is computed from the saved input `x` (for sigmoid and
//! tanh through `y = f(x)`, recomputed: the same bits as keeping `y`, and
//! no memory) and multiplied by the output gradient: `dx = g · f'(x)`, one
//! rounding per product, never fused, exactly as the plan SDK always did.

use crate::parallel::for_each_chunk_mut;

/// Elements one task maps.
const CHUNK: usize = 1 << 14;

/// An activation function.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Activation {
    /// max(0, x).
    Relu,
    /// x for x ≥ 0, slope·x otherwise.
    LeakyRelu(f32),
    /// 1 / (1 + e^−x).
    Sigmoid,
    /// tanh x.
    Tanh,
    /// x·Φ(x), PyTorch's exact GELU.
    Gelu,
}

/// The logistic function, without overflow for any input.
pub fn sigmoid(x: f32) -> f32 {
    if x >= 0.0 {
        1.0 / (1.0 + libm::expf(-x))
    } else {
        let e = libm::expf(x);
        e / (1.0 + e)
    }
}

const FRAC_1_SQRT_2PI: f32 = 0.398_942_3;

impl Activation {
    /// A short name, as in error messages.
    pub fn name(self) -> &'static str {
        match self {
            Activation::Relu => "relu",
            Activation::LeakyRelu(_) => "leaky_relu",
            Activation::Sigmoid => "sigmoid",
            Activation::Tanh => "tanh",
            Activation::Gelu => "gelu",
        }
    }

    /// f(x).
    #[inline]
    pub fn apply(self, x: f32) -> f32 {
        match self {
            // A comparison rather than `f32::max`, which treats NaN otherwise.
            Activation::Relu => {
                if x > 0.0 {
                    x
                } else {
                    0.0
                }
            }
            Activation::LeakyRelu(slope) => {
                if x >= 0.0 {
                    x
                } else {
                    slope * x
                }
            }
            Activation::Sigmoid => sigmoid(x),
            Activation::Tanh => libm::tanhf(x),
            Activation::Gelu => 0.5 * x * (1.0 + libm::erff(x * std::f32::consts::FRAC_1_SQRT_2)),
        }
    }

    /// f'(x).
    #[inline]
    pub fn derivative(self, x: f32) -> f32 {
        match self {
            Activation::Relu => {
                if x > 0.0 {
                    1.0
                } else {
                    0.0
                }
            }
            Activation::LeakyRelu(slope) => {
                if x >= 0.0 {
                    1.0
                } else {
                    slope
                }
            }
            Activation::Sigmoid => {
                let y = sigmoid(x);
                y * (1.0 - y)
            }
            Activation::Tanh => {
                let y = libm::tanhf(x);
                1.0 - y * y
            }
            Activation::Gelu => {
                0.5 * (1.0 + libm::erff(x * std::f32::consts::FRAC_1_SQRT_2))
                    + x * FRAC_1_SQRT_2PI * libm::expf(-0.5 * x * x)
            }
        }
    }
}

/// `out = f(x)`.
pub fn activate(a: Activation, x: &[f32], out: &mut [f32]) {
    for_each_chunk_mut(out, CHUNK, |i, chunk| {
        let x = &x[i * CHUNK..];
        for (o, &v) in chunk.iter_mut().zip(x) {
            *o = a.apply(v);
        }
    });
}

/// `dx = g · f'(x)`.
pub fn activate_grad(a: Activation, x: &[f32], g: &[f32], dx: &mut [f32]) {
    for_each_chunk_mut(dx, CHUNK, |i, chunk| {
        let (x, g) = (&x[i * CHUNK..], &g[i * CHUNK..]);
        for ((d, &v), &gv) in chunk.iter_mut().zip(x).zip(g) {
            *d = gv * a.derivative(v);
        }
    });
}
