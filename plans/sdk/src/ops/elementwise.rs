//! Functions applied to every element: activations, `exp`, `log`, powers,
//! scaling, clamping. Each runs where its input is ([`backend::run_near`]:
//! on the node's host for a layer's output, in the plan for a few values it
//! holds) on the same kernels; each derivative comes from the saved input.

use fedwasm_kernels::{Elementwise, Op};

pub use fedwasm_kernels::elementwise::sigmoid;

use crate::backend;
use crate::tensor::{HostGrad, Need, Tensor};

impl Tensor {
    /// `f(x)` element-wise; its derivative from the saved input.
    fn elementwise(&self, f: Elementwise) -> Tensor {
        const SAME_LENGTH: &str = "an element-wise function keeps its input's length";
        let out = backend::run_near(Op::Map(f), &[self]).expect(SAME_LENGTH);
        let input = self.clone();
        Tensor::from_buf(f.name(), out, self.shape(), &[self], move |g, need| {
            if need[0] == Need::Nothing {
                return Ok(vec![None]);
            }
            let dx = backend::run_near(Op::MapGrad(f), &[&input, g])?;
            Ok(vec![Some(HostGrad::Sum(Tensor::from_values(
                dx,
                input.shape(),
            )))])
        })
        .expect(SAME_LENGTH)
    }

    /// max(0, x).
    pub fn relu(&self) -> Tensor {
        self.elementwise(Elementwise::Relu)
    }

    /// x for x ≥ 0, slope·x otherwise.
    pub fn leaky_relu(&self, slope: f32) -> Tensor {
        self.elementwise(Elementwise::LeakyRelu(slope))
    }

    /// x·Φ(x), Φ the standard normal distribution function (PyTorch's exact GELU).
    pub fn gelu(&self) -> Tensor {
        self.elementwise(Elementwise::Gelu)
    }

    /// 1 / (1 + e^−x).
    pub fn sigmoid(&self) -> Tensor {
        self.elementwise(Elementwise::Sigmoid)
    }

    /// tanh(x).
    pub fn tanh(&self) -> Tensor {
        self.elementwise(Elementwise::Tanh)
    }

    /// e^x.
    pub fn exp(&self) -> Tensor {
        self.elementwise(Elementwise::Exp)
    }

    /// ln x.
    pub fn log(&self) -> Tensor {
        self.elementwise(Elementwise::Log)
    }

    /// √x.
    pub fn sqrt(&self) -> Tensor {
        self.elementwise(Elementwise::Sqrt)
    }

    /// |x| (derivative 0 at 0, as PyTorch).
    pub fn abs(&self) -> Tensor {
        self.elementwise(Elementwise::Abs)
    }

    /// x².
    pub fn square(&self) -> Tensor {
        self.elementwise(Elementwise::Square)
    }

    /// x^p for a constant p.
    pub fn powf(&self, p: f32) -> Tensor {
        self.elementwise(Elementwise::Pow(p))
    }

    /// −x.
    pub fn neg(&self) -> Tensor {
        self.scale(-1.0)
    }

    /// a·x for a constant a.
    pub fn scale(&self, a: f32) -> Tensor {
        self.elementwise(Elementwise::Scale(a))
    }

    /// x + c for a constant c.
    pub fn add_scalar(&self, c: f32) -> Tensor {
        self.elementwise(Elementwise::AddScalar(c))
    }

    /// x clamped to [low, high] (derivative 1 inside, 0 outside).
    pub fn clamp(&self, low: f32, high: f32) -> Tensor {
        self.elementwise(Elementwise::Clamp(low, high))
    }
}
