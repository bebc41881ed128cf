//! Pooling over `[N, C, H, W]`: max (on the node's host; the first maximum
//! wins a tie, as in PyTorch), average (padding counted, PyTorch's default) and adaptive
//! average (PyTorch's window bounds ⌊i·H/oh⌋ … ⌈(i+1)·H/oh⌉).

use fedwasm_kernels::{Op, Pool2d, Window};

use crate::backend;
use crate::error::PlanResult;
use crate::tensor::{Grad, HostGrad, Need, Tensor};

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

/// Input positions (y, x) of window (oy, ox), skipping padding.
fn taps(w: &Window, oy: usize, ox: usize) -> impl Iterator<Item = (usize, usize)> + '_ {
    (0..w.kernel[0]).flat_map(move |i| {
        (0..w.kernel[1]).filter_map(move |j| {
            let y = (oy * w.stride[0] + i * w.dilation[0]).checked_sub(w.padding[0])?;
            let x = (ox * w.stride[1] + j * w.dilation[1]).checked_sub(w.padding[1])?;
            (y < w.input[0] && x < w.input[1]).then_some((y, x))
        })
    })
}

/// Σ values in four interleaved f32 lanes added in a fixed order.
fn lane_sum(values: &[f32]) -> f32 {
    let mut acc = [0.0f32; 4];
    let mut chunks = values.chunks_exact(4);
    for q in &mut chunks {
        for (a, v) in acc.iter_mut().zip(q) {
            *a += v;
        }
    }
    for (a, v) in acc.iter_mut().zip(chunks.remainder()) {
        *a += v;
    }
    (acc[0] + acc[1]) + (acc[2] + acc[3])
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

    /// Mean over each window, padding counted as zeros (PyTorch's default).
    pub fn avg_pool2d(&self, kernel: [usize; 2], options: Conv2dOptions) -> PlanResult<Tensor> {
        let dims = nchw(self, "avg_pool2d")?;
        let [n, c, h, wd] = dims;
        let (win, [oh, ow]) = window("avg_pool2d", dims, kernel, options)?;
        let scale = 1.0 / (kernel[0] * kernel[1]) as f32;
        let xv = self.values();
        let mut out = Vec::with_capacity(n * c * oh * ow);
        for plane in 0..n * c {
            let base = plane * h * wd;
            for oy in 0..oh {
                for ox in 0..ow {
                    let s = taps(&win, oy, ox).fold(0.0f32, |s, (y, x)| s + xv[base + y * wd + x]);
                    out.push(s * scale);
                }
            }
        }
        drop(xv);
        Tensor::from_op(
            "avg_pool2d",
            out,
            &[n, c, oh, ow],
            &[self],
            move |g, need| {
                if need[0] != Need::Sum {
                    return Ok(vec![None]);
                }
                let mut dx = vec![0.0f32; n * c * h * wd];
                for plane in 0..n * c {
                    let base = plane * h * wd;
                    for oy in 0..oh {
                        for ox in 0..ow {
                            let gi = g[(plane * oh + oy) * ow + ox] * scale;
                            for (y, x) in taps(&win, oy, ox) {
                                dx[base + y * wd + x] += gi;
                            }
                        }
                    }
                }
                Ok(vec![Some(Grad::Sum(dx))])
            },
        )
    }

    /// Average pooling to an output of `size` (height, width) whatever the
    /// input's size; `[1, 1]` is global average pooling.
    pub fn adaptive_avg_pool2d(&self, size: [usize; 2]) -> PlanResult<Tensor> {
        let [n, c, h, wd] = nchw(self, "adaptive_avg_pool2d")?;
        let [oh, ow] = size;
        if oh == 0 || ow == 0 || h == 0 || wd == 0 {
            return Err(shape_error(
                "adaptive_avg_pool2d",
                format!("output {size:?} and input {h}×{wd} must be non-empty"),
            ));
        }
        let bounds =
            |i: usize, out: usize, inp: usize| (i * inp / out, ((i + 1) * inp).div_ceil(out));
        let xv = self.values();
        let mut out = Vec::with_capacity(n * c * oh * ow);
        if size == [1, 1] {
            // Global average pooling: each plane summed in four lanes, in a fixed order.
            let scale = 1.0 / (h * wd) as f32;
            out.extend(xv.chunks_exact(h * wd).map(|plane| lane_sum(plane) * scale));
        } else {
            for plane in 0..n * c {
                let base = plane * h * wd;
                for oy in 0..oh {
                    let (y0, y1) = bounds(oy, oh, h);
                    for ox in 0..ow {
                        let (x0, x1) = bounds(ox, ow, wd);
                        let mut s = 0.0f32;
                        for y in y0..y1 {
                            for x in x0..x1 {
                                s += xv[base + y * wd + x];
                            }
                        }
                        out.push(s / ((y1 - y0) * (x1 - x0)) as f32);
                    }
                }
            }
        }
        drop(xv);
        Tensor::from_op(
            "adaptive_avg_pool2d",
            out,
            &[n, c, oh, ow],
            &[self],
            move |g, need| {
                if need[0] != Need::Sum {
                    return Ok(vec![None]);
                }
                let mut dx = vec![0.0f32; n * c * h * wd];
                for plane in 0..n * c {
                    let base = plane * h * wd;
                    for oy in 0..oh {
                        let (y0, y1) = bounds(oy, oh, h);
                        for ox in 0..ow {
                            let (x0, x1) = bounds(ox, ow, wd);
                            let gi =
                                g[(plane * oh + oy) * ow + ox] / ((y1 - y0) * (x1 - x0)) as f32;
                            for y in y0..y1 {
                                for x in x0..x1 {
                                    dx[base + y * wd + x] += gi;
                                }
                            }
                        }
                    }
                }
                Ok(vec![Some(Grad::Sum(dx))])
            },
        )
    }
}
