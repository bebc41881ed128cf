//! Functions applied to every element — the activations and the SDK's other
//! maps (exponential, logarithm, powers, scaling, clamping) — and their
//! derivatives.
//!
//! Each derivative is computed from the saved input `x` (through `y = f(x)`
//! where it needs it, recomputed: the same bits as keeping `y`, and no
//! memory) and multiplied by the output gradient: `dx = g · f'(x)`, one
//! rounding per product, never fused, exactly as the plan SDK always did.

use crate::parallel::for_each_chunk_mut;

/// Elements one task maps.
const CHUNK: usize = 1 << 14;

/// A function applied to every element.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Elementwise {
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
    /// e^x.
    Exp,
    /// ln x.
    Log,
    /// √x.
    Sqrt,
    /// |x| (derivative 0 at 0, as PyTorch).
    Abs,
    /// x².
    Square,
    /// x^p for a constant p.
    Pow(f32),
    /// a·x for a constant a.
    Scale(f32),
    /// x + c for a constant c.
    AddScalar(f32),
    /// x clamped to [low, high] (derivative 1 inside, 0 outside).
    Clamp(f32, f32),
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

/// −1, 0 or 1 (0 for ±0 and NaN).
fn sign(x: f32) -> f32 {
    if x > 0.0 {
        1.0
    } else if x < 0.0 {
        -1.0
    } else {
        0.0
    }
}

impl Elementwise {
    /// A short name, as in error messages.
    pub fn name(self) -> &'static str {
        match self {
            Elementwise::Relu => "relu",
            Elementwise::LeakyRelu(_) => "leaky_relu",
            Elementwise::Sigmoid => "sigmoid",
            Elementwise::Tanh => "tanh",
            Elementwise::Gelu => "gelu",
            Elementwise::Exp => "exp",
            Elementwise::Log => "log",
            Elementwise::Sqrt => "sqrt",
            Elementwise::Abs => "abs",
            Elementwise::Square => "square",
            Elementwise::Pow(_) => "powf",
            Elementwise::Scale(_) => "scale",
            Elementwise::AddScalar(_) => "add_scalar",
            Elementwise::Clamp(..) => "clamp",
        }
    }

    /// f(x).
    #[inline]
    pub fn apply(self, x: f32) -> f32 {
        match self {
            // A comparison rather than `f32::max`, which treats NaN otherwise.
            Elementwise::Relu => {
                if x > 0.0 {
                    x
                } else {
                    0.0
                }
            }
            Elementwise::LeakyRelu(slope) => {
                if x >= 0.0 {
                    x
                } else {
                    slope * x
                }
            }
            Elementwise::Sigmoid => sigmoid(x),
            Elementwise::Tanh => libm::tanhf(x),
            Elementwise::Gelu => 0.5 * x * (1.0 + libm::erff(x * std::f32::consts::FRAC_1_SQRT_2)),
            Elementwise::Exp => libm::expf(x),
            Elementwise::Log => libm::logf(x),
            Elementwise::Sqrt => libm::sqrtf(x),
            Elementwise::Abs => x.abs(),
            Elementwise::Square => x * x,
            Elementwise::Pow(p) => libm::powf(x, p),
            Elementwise::Scale(a) => a * x,
            Elementwise::AddScalar(c) => x + c,
            Elementwise::Clamp(low, high) => x.max(low).min(high),
        }
    }

    /// f'(x).
    #[inline]
    pub fn derivative(self, x: f32) -> f32 {
        match self {
            Elementwise::Relu => {
                if x > 0.0 {
                    1.0
                } else {
                    0.0
                }
            }
            Elementwise::LeakyRelu(slope) => {
                if x >= 0.0 {
                    1.0
                } else {
                    slope
                }
            }
            Elementwise::Sigmoid => {
                let y = sigmoid(x);
                y * (1.0 - y)
            }
            Elementwise::Tanh => {
                let y = libm::tanhf(x);
                1.0 - y * y
            }
            Elementwise::Gelu => {
                0.5 * (1.0 + libm::erff(x * std::f32::consts::FRAC_1_SQRT_2))
                    + x * FRAC_1_SQRT_2PI * libm::expf(-0.5 * x * x)
            }
            Elementwise::Exp => libm::expf(x),
            Elementwise::Log => 1.0 / x,
            Elementwise::Sqrt => 0.5 / libm::sqrtf(x),
            Elementwise::Abs => sign(x),
            Elementwise::Square => 2.0 * x,
            Elementwise::Pow(p) => p * libm::powf(x, p - 1.0),
            Elementwise::Scale(a) => a,
            Elementwise::AddScalar(_) => 1.0,
            Elementwise::Clamp(low, high) => {
                if x >= low && x <= high {
                    1.0
                } else {
                    0.0
                }
            }
        }
    }
}

/// `body` with `$e` rebuilt from constants in each arm, so every arm's loop
/// is compiled for one function and no per-element `match` is left.
macro_rules! per_function {
    ($f:expr, |$e:ident| $body:expr) => {
        match $f {
            Elementwise::Relu => {
                let $e = Elementwise::Relu;
                $body
            }
            Elementwise::LeakyRelu(s) => {
                let $e = Elementwise::LeakyRelu(s);
                $body
            }
            Elementwise::Sigmoid => {
                let $e = Elementwise::Sigmoid;
                $body
            }
            Elementwise::Tanh => {
                let $e = Elementwise::Tanh;
                $body
            }
            Elementwise::Gelu => {
                let $e = Elementwise::Gelu;
                $body
            }
            Elementwise::Exp => {
                let $e = Elementwise::Exp;
                $body
            }
            Elementwise::Log => {
                let $e = Elementwise::Log;
                $body
            }
            Elementwise::Sqrt => {
                let $e = Elementwise::Sqrt;
                $body
            }
            Elementwise::Abs => {
                let $e = Elementwise::Abs;
                $body
            }
            Elementwise::Square => {
                let $e = Elementwise::Square;
                $body
            }
            Elementwise::Pow(p) => {
                let $e = Elementwise::Pow(p);
                $body
            }
            Elementwise::Scale(a) => {
                let $e = Elementwise::Scale(a);
                $body
            }
            Elementwise::AddScalar(c) => {
                let $e = Elementwise::AddScalar(c);
                $body
            }
            Elementwise::Clamp(low, high) => {
                let $e = Elementwise::Clamp(low, high);
                $body
            }
        }
    };
}

/// `out = f(x)`.
pub fn map(f: Elementwise, x: &[f32], out: &mut [f32]) {
    per_function!(f, |e| for_each_chunk_mut(out, CHUNK, |i, chunk| {
        let x = &x[i * CHUNK..];
        for (o, &v) in chunk.iter_mut().zip(x) {
            *o = e.apply(v);
        }
    }))
}

/// `dx = g · f'(x)`.
pub fn map_grad(f: Elementwise, x: &[f32], g: &[f32], dx: &mut [f32]) {
    per_function!(f, |e| for_each_chunk_mut(dx, CHUNK, |i, chunk| {
        let (x, g) = (&x[i * CHUNK..], &g[i * CHUNK..]);
        for ((d, &v), &gv) in chunk.iter_mut().zip(x).zip(g) {
            *d = gv * e.derivative(v);
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derivatives_match_the_forms_the_sdk_kept_outputs_for() {
        let xs = [0.25f32, 1.0, 3.5, 17.0];
        for &x in &xs {
            assert_eq!(
                Elementwise::Exp.derivative(x).to_bits(),
                libm::expf(x).to_bits()
            );
            let y = libm::sqrtf(x);
            assert_eq!(
                Elementwise::Sqrt.derivative(x).to_bits(),
                (0.5 / y).to_bits()
            );
        }
        assert_eq!(Elementwise::Abs.derivative(0.0), 0.0);
        assert_eq!(Elementwise::Abs.derivative(-2.0), -1.0);
        assert_eq!(Elementwise::Clamp(-1.0, 1.0).derivative(1.0), 1.0);
        assert_eq!(Elementwise::Clamp(-1.0, 1.0).derivative(1.5), 0.0);
    }

    #[test]
    fn maps_agree_with_apply_and_derivative_element_by_element() {
        let x: Vec<f32> = (0..40_000).map(|i| (i as f32 - 20_000.0) / 997.0).collect();
        let g: Vec<f32> = (0..40_000).map(|i| (i % 13) as f32 - 6.0).collect();
        let fs = [
            Elementwise::Relu,
            Elementwise::LeakyRelu(0.01),
            Elementwise::Gelu,
            Elementwise::Exp,
            Elementwise::Abs,
            Elementwise::Pow(3.0),
            Elementwise::Scale(-2.5),
            Elementwise::AddScalar(0.5),
            Elementwise::Clamp(-3.0, 2.0),
        ];
        for f in fs {
            let (mut y, mut dx) = (vec![0.0; x.len()], vec![0.0; x.len()]);
            map(f, &x, &mut y);
            map_grad(f, &x, &g, &mut dx);
            for i in 0..x.len() {
                assert_eq!(y[i].to_bits(), f.apply(x[i]).to_bits(), "{f:?} at {i}");
                assert_eq!(
                    dx[i].to_bits(),
                    (g[i] * f.derivative(x[i])).to_bits(),
                    "{f:?}' at {i}"
                );
            }
        }
    }
}
