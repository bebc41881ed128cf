//! Functions applied to every element: activations (on the node's host,
//! [`crate::backend`]), `exp`, `log`, powers, scaling (in the plan). Each
//! derivative comes from the saved input or output.

use fedwasm_kernels::{Activation, Op};

pub use fedwasm_kernels::activation::sigmoid;

use crate::backend;
use crate::tensor::{Grad, HostGrad, Need, Tensor};

use super::tracking;

impl Tensor {
    /// An activation on the backend; its derivative from the saved input.
    fn activation(&self, a: Activation) -> Tensor {
        const SAME_LENGTH: &str = "an activation keeps its input's length";
        let out = backend::run(Op::Activate(a), &[self]).expect(SAME_LENGTH);
        let input = self.clone();
        Tensor::from_buf(a.name(), out, self.shape(), &[self], move |g, need| {
            if need[0] == Need::Nothing {
                return Ok(vec![None]);
            }
            let dx = backend::run(Op::ActivateGrad(a), &[&input, g])?;
            Ok(vec![Some(HostGrad::Sum(Tensor::from_values(
                dx,
                input.shape(),
            )))])
        })
        .expect(SAME_LENGTH)
    }

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
        self.activation(Activation::Relu)
    }

    /// x for x ≥ 0, slope·x otherwise.
    pub fn leaky_relu(&self, slope: f32) -> Tensor {
        self.activation(Activation::LeakyRelu(slope))
    }

    /// x·Φ(x), Φ the standard normal distribution function (PyTorch's exact GELU).
    pub fn gelu(&self) -> Tensor {
        self.activation(Activation::Gelu)
    }

    /// 1 / (1 + e^−x).
    pub fn sigmoid(&self) -> Tensor {
        self.activation(Activation::Sigmoid)
    }

    /// tanh(x).
    pub fn tanh(&self) -> Tensor {
        self.activation(Activation::Tanh)
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
