//! 2-D convolution over `[N, C, H, W]` batches with PyTorch's weight layout
//! `[out, in, kh, kw]`, on the node's host ([`crate::backend`]): forward,
//! the input and weight gradients (each image's own under DP-SGD) and the
//! bias gradient. The kernels lay each image's receptive fields out as
//! columns and multiply them by the weight matrix; backward lays them out
//! again rather than keeping them (a copy, against `patch × positions`
//! floats per image of memory).

use fedwasm_kernels::{Conv2d, Op, Window as KernelWindow};

use crate::backend;
use crate::error::PlanResult;
use crate::tensor::{HostGrad, Need, Tensor};

use super::shape_error;

/// Stride, zero padding and dilation of a convolution or pooling window
/// (height, width), as PyTorch's arguments of the same names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conv2dOptions {
    /// Step between windows.
    pub stride: [usize; 2],
    /// Zeros added on each side.
    pub padding: [usize; 2],
    /// Spacing between kernel taps.
    pub dilation: [usize; 2],
}

impl Default for Conv2dOptions {
    fn default() -> Self {
        Conv2dOptions {
            stride: [1, 1],
            padding: [0, 0],
            dilation: [1, 1],
        }
    }
}

/// The batch, channels, height and width of an `[N, C, H, W]` tensor.
pub(crate) fn nchw(x: &Tensor, op: &str) -> PlanResult<[usize; 4]> {
    match *x.shape() {
        [n, c, h, w] => Ok([n, c, h, w]),
        _ => Err(shape_error(
            op,
            format!("needs an [N, C, H, W] input, got shape {:?}", x.shape()),
        )),
    }
}

/// The convolution of `x` by `weight` (and `bias`), its shapes checked
/// against each other and the window against the input.
fn geometry(
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    options: Conv2dOptions,
) -> PlanResult<Conv2d> {
    let [n, c, h, wd] = nchw(x, "conv2d")?;
    let [o, ci, kh, kw] = *weight.shape() else {
        return Err(shape_error(
            "conv2d",
            format!("weight must be [out, in, kh, kw], got {:?}", weight.shape()),
        ));
    };
    if ci != c {
        return Err(shape_error(
            "conv2d",
            format!("input has {c} channels, the weight expects {ci}"),
        ));
    }
    if let Some(b) = bias
        && b.shape() != [o]
    {
        return Err(shape_error(
            "conv2d",
            format!("bias must be [{o}], got {:?}", b.shape()),
        ));
    }
    let window = KernelWindow {
        channels: c,
        input: [h, wd],
        kernel: [kh, kw],
        stride: options.stride,
        padding: options.padding,
        dilation: options.dilation,
    };
    if window.output().is_none() {
        return Err(shape_error(
            "conv2d",
            format!("a {kh}×{kw} kernel with {options:?} does not fit a {h}×{wd} input"),
        ));
    }
    Ok(Conv2d {
        batch: n,
        window,
        out_channels: o,
    })
}

impl Tensor {
    /// Cross-correlation of `[N, C, H, W]` with `weight` `[O, C, kh, kw]`,
    /// plus `bias` `[O]`, giving `[N, O, oh, ow]`.
    pub fn conv2d(
        &self,
        weight: &Tensor,
        bias: Option<&Tensor>,
        options: Conv2dOptions,
    ) -> PlanResult<Tensor> {
        let conv = geometry(self, weight, bias, options)?;
        let [oh, ow] = conv.window.output().expect("checked by geometry");
        let (n, o) = (conv.batch, conv.out_channels);
        let l = oh * ow;
        let mut inputs = vec![self, weight];
        inputs.extend(bias);
        let out = backend::run(Op::Conv2d(conv), &inputs)?;
        let (x, w) = (self.clone(), weight.clone());
        let (weight_len, x_shape, w_shape) = (
            weight.numel(),
            self.shape().to_vec(),
            weight.shape().to_vec(),
        );
        Tensor::from_buf("conv2d", out, &[n, o, oh, ow], &inputs, move |gt, need| {
            let host = |op: Op, inputs: &[&Tensor], shape: &[usize]| -> PlanResult<Tensor> {
                Ok(Tensor::from_values(backend::run(op, inputs)?, shape))
            };
            let dx = match need[0] {
                Need::Sum => Some(HostGrad::Sum(host(
                    Op::Conv2dInputGrad(conv),
                    &[gt, &w],
                    &x_shape,
                )?)),
                _ => None,
            };
            let weight_grad = |per_sample: bool| {
                let shape = if per_sample {
                    vec![n, weight_len]
                } else {
                    w_shape.clone()
                };
                host(Op::Conv2dWeightGrad { conv, per_sample }, &[gt, &x], &shape)
            };
            let dw = match need[1] {
                // Asked only of ghost operations (the linear map).
                Need::SampleSquares(_) | Need::Clipped(_) => None,
                Need::Nothing => None,
                Need::Sum => Some(HostGrad::Sum(weight_grad(false)?)),
                Need::PerSample(b) if b == n => Some(HostGrad::PerSample(weight_grad(true)?)),
                Need::PerSample(b) => {
                    return Err(shape_error(
                        "conv2d",
                        format!("DP-SGD: batch of {b} samples, the input has {n} images"),
                    ));
                }
            };
            let mut grads = vec![dx, dw];
            if need.len() == 3 {
                let sums = |per_sample: bool| {
                    let shape = if per_sample { vec![n, o] } else { vec![o] };
                    let op = Op::ChannelSums {
                        batch: n,
                        channels: o,
                        plane: l,
                        per_sample,
                    };
                    host(op, &[gt], &shape)
                };
                grads.push(match need[2] {
                    // Asked only of ghost operations (the linear map).
                    Need::SampleSquares(_) | Need::Clipped(_) => None,
                    Need::Nothing => None,
                    Need::Sum => Some(HostGrad::Sum(sums(false)?)),
                    Need::PerSample(_) => Some(HostGrad::PerSample(sums(true)?)),
                });
            }
            Ok(grads)
        })
    }
}
