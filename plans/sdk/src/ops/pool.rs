//! Pooling over `[N, C, H, W]` on the kernels: max (on the node's host; the
//! first maximum wins a tie, as in PyTorch), average (padding counted,
//! PyTorch's default) and adaptive average (PyTorch's window bounds
//! ⌊i·H/oh⌋ … ⌈(i+1)·H/oh⌉), the averages where their input is.

use fedwasm_kernels::{Adaptive, Op, Pool2d, Window};

use crate::backend;
use crate::error::PlanResult;
use crate::tensor::{HostGrad, Need, Tensor};

use super::conv::{Conv2dOptions, nchw};
use super::shape_error;

fn window(
    op: &str,
    [_, c, h, w]: [usize; 4],
    kernel: [usize; 2],
    o: Conv2dOptions,
) -> PlanResult<(Window, [usize; 2])> {
    let win = Window {
        channels: c,
        input: [h, w],
        kernel,
        stride: o.stride,
        padding: o.padding,
        dilation: o.dilation,
    };
    if o.padding[0] * 2 > kernel[0] || o.padding[1] * 2 > kernel[1] {
        return Err(shape_error(
            op,
            format!(
                "padding {:?} must be at most half the kernel {kernel:?}",
                o.padding
            ),
        ));
    }
    let out = win.output().ok_or_else(|| {
        shape_error(
            op,
            format!("a {kernel:?} window with {o:?} does not fit a {h}×{w} input"),
        )
    })?;
    Ok((win, out))
}

impl Tensor {
    /// Maximum over each window (on the node's host); `options.stride` is
    /// usually the kernel size.
    pub fn max_pool2d(&self, kernel: [usize; 2], options: Conv2dOptions) -> PlanResult<Tensor> {
        let dims = nchw(self, "max_pool2d")?;
        let [n, c, _, _] = dims;
        let (win, [oh, ow]) = window("max_pool2d", dims, kernel, options)?;
        let pool = Pool2d {
            planes: n * c,
            window: Window { channels: 1, ..win },
        };
        let out = backend::run(Op::MaxPool2d(pool), &[self])?;
        let x = self.clone();
        Tensor::from_buf(
            "max_pool2d",
            out,
            &[n, c, oh, ow],
            &[self],
            move |g, need| {
                if need[0] != Need::Sum {
                    return Ok(vec![None]);
                }
                let dx = backend::run(Op::MaxPool2dGrad(pool), &[&x, g])?;
                Ok(vec![Some(HostGrad::Sum(Tensor::from_values(
                    dx,
                    x.shape(),
                )))])
            },
        )
    }

    /// Mean over each window, padding counted as zeros (PyTorch's default),
    /// where the values are.
    pub fn avg_pool2d(&self, kernel: [usize; 2], options: Conv2dOptions) -> PlanResult<Tensor> {
        let dims = nchw(self, "avg_pool2d")?;
        let [n, c, _, _] = dims;
        let (win, [oh, ow]) = window("avg_pool2d", dims, kernel, options)?;
        let pool = Pool2d {
            planes: n * c,
            window: Window { channels: 1, ..win },
        };
        self.pool_with(
            "avg_pool2d",
            Op::AvgPool2d(pool),
            Op::AvgPool2dGrad(pool),
            [n, c, oh, ow],
        )
    }

    /// Average pooling to an output of `size` (height, width) whatever the
    /// input's size; `[1, 1]` is global average pooling.
    pub fn adaptive_avg_pool2d(&self, size: [usize; 2]) -> PlanResult<Tensor> {
        let [n, c, h, wd] = nchw(self, "adaptive_avg_pool2d")?;
        let [oh, ow] = size;
        let a = Adaptive {
            planes: n * c,
            input: [h, wd],
            output: size,
        };
        if a.sizes().is_none() {
            return Err(shape_error(
                "adaptive_avg_pool2d",
                format!("output {size:?} and input {h}×{wd} must be non-empty"),
            ));
        }
        self.pool_with(
            "adaptive_avg_pool2d",
            Op::AdaptiveAvgPool2d(a),
            Op::AdaptiveAvgPool2dGrad(a),
            [n, c, oh, ow],
        )
    }

    /// An average pooling `forward` to `shape`, its input gradient by
    /// `backward` from the output gradient alone, both where the values are.
    fn pool_with(
        &self,
        name: &'static str,
        forward: Op,
        backward: Op,
        shape: [usize; 4],
    ) -> PlanResult<Tensor> {
        let out = backend::run_near(forward, &[self])?;
        let input_shape = self.shape().to_vec();
        Tensor::from_buf(name, out, &shape, &[self], move |g, need| {
            if need[0] != Need::Sum {
                return Ok(vec![None]);
            }
            let dx = backend::run_near(backward, &[g])?;
            Ok(vec![Some(HostGrad::Sum(Tensor::from_values(
                dx,
                &input_shape,
            )))])
        })
    }
}
