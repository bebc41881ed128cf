//! The 2-D convolution layer.

use super::{Module, Visitor, init};
use crate::error::{PlanResult, invalid_argument};
use crate::ops::conv::Conv2dOptions;
use crate::tensor::Tensor;

/// PyTorch's `nn.Conv2d` (groups = 1): weight `[out, in, kh, kw]`, bias `[out]`.
#[derive(Debug, Clone)]
pub struct Conv2d {
    /// `[out, in, kh, kw]`.
    pub weight: Tensor,
    /// `[out]`, if any.
    pub bias: Option<Tensor>,
    /// Stride, padding and dilation.
    pub options: Conv2dOptions,
}

impl Conv2d {
    /// A `kernel`-sized convolution from `c_in` to `c_out` channels, stride 1,
    /// no padding, with PyTorch's default initialisation U(±1/√(in·kh·kw)).
    pub fn new(c_in: usize, c_out: usize, kernel: [usize; 2]) -> PlanResult<Self> {
        let fan_in = c_in * kernel[0] * kernel[1];
        if fan_in == 0 || c_out == 0 {
            return Err(invalid_argument(format!(
                "a convolution needs channels and a kernel, got {c_in} → {c_out} with {kernel:?}"
            )));
        }
        let bound = init::default_bound(fan_in);
        Ok(Conv2d {
            weight: init::uniform(&[c_out, c_in, kernel[0], kernel[1]], bound)?,
            bias: Some(init::uniform(&[c_out], bound)?),
            options: Conv2dOptions::default(),
        })
    }

    /// With this stride.
    pub fn stride(mut self, stride: usize) -> Self {
        self.options.stride = [stride; 2];
        self
    }

    /// With this zero padding on every side.
    pub fn padding(mut self, padding: usize) -> Self {
        self.options.padding = [padding; 2];
        self
    }

    /// With this dilation.
    pub fn dilation(mut self, dilation: usize) -> Self {
        self.options.dilation = [dilation; 2];
        self
    }

    /// Drop the bias (common before BatchNorm).
    pub fn without_bias(mut self) -> Self {
        self.bias = None;
        self
    }
}

impl Module for Conv2d {
    fn forward(&self, x: &Tensor) -> PlanResult<Tensor> {
        x.conv2d(&self.weight, self.bias.as_ref(), self.options)
    }

    fn visit(&self, v: &mut Visitor<'_>) {
        v.parameter("weight", &self.weight);
        if let Some(b) = &self.bias {
            v.parameter("bias", b);
        }
    }
}
