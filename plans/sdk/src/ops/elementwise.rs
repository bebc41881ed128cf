//! Functions applied to every element: activations, `exp`, `log`, powers,
//! scaling. Each derivative comes from the saved input or output.

use crate::tensor::{Grad, Need, Tensor};

use super::tracking;

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

fn gelu(x: f32) -> f32 {
    0.5 * x * (1.0 + libm::erff(x * std::f32::consts::FRAC_1_SQRT_2))
}

fn gelu_derivative(x: f32) -> f32 {
    0.5 * (1.0 + libm::erff(x * std::f32::consts::FRAC_1_SQRT_2))
        + x * FRAC_1_SQRT_2PI * libm::expf(-0.5 * x * x)
}

impl Tensor {
    /// `f(x)` element-wise, the derivative computed from the input.
    fn map_with_input(
        &self,
        name: &'static str,
        f: impl Fn(f32) -> f32,
        derivative: impl Fn(f32) -> f32 + 'static,
    ) -> Tensor {
        let data: Vec<f32> = self.values().iter().map(|&x| f(x)).collect();
        let input = self.clone();
        Tensor::from_op(name, data, self.shape(), &[self], move |g, need| {
            if need[0] == Need::Nothing {
                return Ok(vec![None]);
            }
            let x = input.values();
            let dx = g.iter().zip(x.iter()).map(|(g, &x)| g * derivative(x));
            Ok(vec![Some(Grad::Sum(dx.collect()))])
        })
        .expect("same shape as the input")
    }

    /// `f(x)` element-wise, the derivative computed from the output `y`.
    fn map_with_output(
        &self,
        name: &'static str,
        f: impl Fn(f32) -> f32,
        derivative: impl Fn(f32) -> f32 + 'static,
    ) -> Tensor {
        let data: Vec<f32> = self.values().iter().map(|&x| f(x)).collect();
        let saved = if tracking(&[self]) {
            data.clone()
        } else {
            Vec::new()
        };
        Tensor::from_op(name, data, self.shape(), &[self], move |g, need| {
            if need[0] == Need::Nothing {
                return Ok(vec![None]);
            }
            let dx = g.iter().zip(&saved).map(|(g, &y)| g * derivative(y));
            Ok(vec![Some(Grad::Sum(dx.collect()))])
        })
        .expect("same shape as the input")
    }

    /// max(0, x).
    pub fn relu(&self) -> Tensor {
        // The derivative from the input (x > 0 ⇔ y > 0) saves keeping a copy
        // of the output; a comparison rather than `f32::max`, which wasm
        // cannot do in one instruction (its `f32.max` treats NaN differently).
        self.map_with_input(
            "relu",
            |x| if x > 0.0 { x } else { 0.0 },
            |x| if x > 0.0 { 1.0 } else { 0.0 },
        )
    }

    /// x for x ≥ 0, slope·x otherwise.
    pub fn leaky_relu(&self, slope: f32) -> Tensor {
        self.map_with_input(
            "leaky_relu",
            move |x| if x >= 0.0 { x } else { slope * x },
            move |x| if x >= 0.0 { 1.0 } else { slope },
        )
    }

    /// x·Φ(x), Φ the standard normal distribution function (PyTorch's exact GELU).
    pub fn gelu(&self) -> Tensor {
        self.map_with_input("gelu", gelu, gelu_derivative)
    }

    /// 1 / (1 + e^−x).
    pub fn sigmoid(&self) -> Tensor {
        self.map_with_output("sigmoid", sigmoid, |y| y * (1.0 - y))
    }

    /// tanh(x).
    pub fn tanh(&self) -> Tensor {
        self.map_with_output("tanh", libm::tanhf, |y| 1.0 - y * y)
    }

    /// e^x.
    pub fn exp(&self) -> Tensor {
        self.map_with_output("exp", libm::expf, |y| y)
    }

    /// ln x.
    pub fn log(&self) -> Tensor {
        self.map_with_input("log", libm::logf, |x| 1.0 / x)
    }

    /// √x.
    pub fn sqrt(&self) -> Tensor {
        self.map_with_output("sqrt", libm::sqrtf, |y| 0.5 / y)
    }

    /// |x| (derivative 0 at 0, as PyTorch).
    pub fn abs(&self) -> Tensor {
        self.map_with_input("abs", f32::abs, |x| {
            if x > 0.0 {
                1.0
            } else if x < 0.0 {
                -1.0
            } else {
                0.0
            }
        })
    }

    /// x².
    pub fn square(&self) -> Tensor {
        self.map_with_input("square", |x| x * x, |x| 2.0 * x)
    }

    /// x^p for a constant p.
    pub fn powf(&self, p: f32) -> Tensor {
        self.map_with_input(
            "powf",
            move |x| libm::powf(x, p),
            move |x| p * libm::powf(x, p - 1.0),
        )
    }

    /// −x.
    pub fn neg(&self) -> Tensor {
        self.scale(-1.0)
    }

    /// a·x for a constant a.
    pub fn scale(&self, a: f32) -> Tensor {
        self.map_with_input("scale", move |x| a * x, move |_| a)
    }

    /// x + c for a constant c.
    pub fn add_scalar(&self, c: f32) -> Tensor {
        self.map_with_input("add_scalar", move |x| x + c, |_| 1.0)
    }

    /// x clamped to [low, high] (derivative 1 inside, 0 outside).
    pub fn clamp(&self, low: f32, high: f32) -> Tensor {
        self.map_with_input(
            "clamp",
            move |x| x.max(low).min(high),
            move |x| if x >= low && x <= high { 1.0 } else { 0.0 },
        )
    }
}
