//! Pooling layers.

use super::{Module, Visitor};
use crate::error::PlanResult;
use crate::ops::conv::Conv2dOptions;
use crate::tensor::Tensor;

/// PyTorch's `nn.MaxPool2d`: stride defaults to the kernel size.
#[derive(Debug, Clone, Copy)]
pub struct MaxPool2d {
    /// Window size.
    pub kernel: [usize; 2],
    /// Stride, padding (−∞) and dilation.
    pub options: Conv2dOptions,
}

impl MaxPool2d {
    /// A `k × k` window moving by `k`.
    pub fn new(k: usize) -> Self {
        MaxPool2d {
            kernel: [k; 2],
            options: Conv2dOptions {
                stride: [k; 2],
                ..Conv2dOptions::default()
            },
        }
    }
}

impl Module for MaxPool2d {
    fn forward(&self, x: &Tensor) -> PlanResult<Tensor> {
        x.max_pool2d(self.kernel, self.options)
    }

    fn visit(&self, _: &mut Visitor<'_>) {}
}

/// PyTorch's `nn.AvgPool2d` (padding counted in the mean).
#[derive(Debug, Clone, Copy)]
pub struct AvgPool2d {
    /// Window size.
    pub kernel: [usize; 2],
    /// Stride and zero padding (dilation stays 1).
    pub options: Conv2dOptions,
}

impl AvgPool2d {
    /// A `k × k` window moving by `k`.
    pub fn new(k: usize) -> Self {
        AvgPool2d {
            kernel: [k; 2],
            options: Conv2dOptions {
                stride: [k; 2],
                ..Conv2dOptions::default()
            },
        }
    }
}

impl Module for AvgPool2d {
    fn forward(&self, x: &Tensor) -> PlanResult<Tensor> {
        x.avg_pool2d(self.kernel, self.options)
    }

    fn visit(&self, _: &mut Visitor<'_>) {}
}

/// PyTorch's `nn.AdaptiveAvgPool2d`: a fixed output size for any input size.
#[derive(Debug, Clone, Copy)]
pub struct AdaptiveAvgPool2d {
    /// Output height and width.
    pub size: [usize; 2],
}

impl AdaptiveAvgPool2d {
    /// Pooling to `h × w`.
    pub fn new(h: usize, w: usize) -> Self {
        AdaptiveAvgPool2d { size: [h, w] }
    }
}

impl Module for AdaptiveAvgPool2d {
    fn forward(&self, x: &Tensor) -> PlanResult<Tensor> {
        x.adaptive_avg_pool2d(self.size)
    }

    fn visit(&self, _: &mut Visitor<'_>) {}
}
