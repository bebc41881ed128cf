//! Pooling over `[N, C, H, W]`: max (the first maximum wins a tie, as in
//! PyTorch), average (padding counted, PyTorch's default) and adaptive
//! average (PyTorch's window bounds ⌊i·H/oh⌋ … ⌈(i+1)·H/oh⌉).

use crate::error::PlanResult;
use crate::kernels::Window;
use crate::tensor::{Grad, Need, Tensor};

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

/// The larger of two (value, index) candidates: the first wins a tie, a NaN
/// wins (and keeps winning), as in PyTorch.
/// Written without branches: on real data a max is a coin toss the branch
/// predictor loses.
#[inline(always)]
fn better(best: (f32, usize), next: (f32, usize)) -> (f32, usize) {
    let take = (next.0 > best.0) | (next.0.is_nan() & !best.0.is_nan());
    (
        if take { next.0 } else { best.0 },
        if take { next.1 } else { best.1 },
    )
}

/// The common 2×2, stride-2 window, unrolled into preallocated outputs; a
/// window holding a NaN takes the general comparison (NaN wins).
fn max_pool_2x2(
    x: &[f32],
    [planes, h, w]: [usize; 3],
    [oh, ow]: [usize; 2],
    out: &mut Vec<f32>,
    at: &mut Vec<u32>,
) {
    out.resize(planes * oh * ow, 0.0);
    at.resize(planes * oh * ow, 0);
    let rows = out
        .chunks_exact_mut(ow.max(1))
        .zip(at.chunks_exact_mut(ow.max(1)));
    for (row, (dst, idx)) in rows.enumerate() {
        let (plane, oy) = (row / oh, row % oh);
        let top = plane * h * w + 2 * oy * w;
        let (r0, r1) = (&x[top..top + w], &x[top + w..top + 2 * w]);
        for (ox, (o, i)) in dst.iter_mut().zip(idx.iter_mut()).enumerate() {
            let j = 2 * ox;
            let (a, b, c, d) = (r0[j], r0[j + 1], r1[j], r1[j + 1]);
            let best = if a.is_nan() | b.is_nan() | c.is_nan() | d.is_nan() {
                let upper = better((a, top + j), (b, top + j + 1));
                let lower = better((c, top + w + j), (d, top + w + j + 1));
                better(upper, lower)
            } else {
                // Ties go to the first in row-major order, as in PyTorch.
                let (u, ui) = if b > a { (b, j + 1) } else { (a, j) };
                let (l, li) = if d > c { (d, w + j + 1) } else { (c, w + j) };
                if l > u { (l, top + li) } else { (u, top + ui) }
            };
            *o = best.0;
            *i = best.1 as u32;
        }
    }
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

/// Scatter `g` back through per-output source indices into a fresh input gradient.
fn scatter(g: &[f32], sources: &[u32], size: usize) -> Vec<f32> {
    let mut dx = vec![0.0f32; size];
    for (&gi, &src) in g.iter().zip(sources) {
        dx[src as usize] += gi;
    }
    dx
}

impl Tensor {
    /// Maximum over each window; `options.stride` is usually the kernel size.
    pub fn max_pool2d(&self, kernel: [usize; 2], options: Conv2dOptions) -> PlanResult<Tensor> {
        let dims = nchw(self, "max_pool2d")?;
        let [n, c, h, wd] = dims;
        let (win, [oh, ow]) = window("max_pool2d", dims, kernel, options)?;
        // Argmax indices are u32, checked before any work.
        let size = self.numel();
        if size > u32::MAX as usize {
            return Err(shape_error("max_pool2d", "input too large"));
        }
        let xv = self.values();
        let mut out = Vec::with_capacity(n * c * oh * ow);
        let mut argmax: Vec<u32> = Vec::with_capacity(n * c * oh * ow);
        let plain = options.padding == [0, 0] && options.dilation == [1, 1];
        let unrolled = plain && kernel == [2, 2] && options.stride == [2, 2];
        if unrolled {
            max_pool_2x2(&xv, [n * c, h, wd], [oh, ow], &mut out, &mut argmax);
        } else {
            for plane in 0..n * c {
                let base = plane * h * wd;
                for oy in 0..oh {
                    for ox in 0..ow {
                        let (best, at) = if plain {
                            // No padding or dilation: the window is a plain rectangle.
                            let (y0, x0) = (oy * win.stride[0], ox * win.stride[1]);
                            let mut best = (xv[base + y0 * wd + x0], base + y0 * wd + x0);
                            for y in y0..y0 + kernel[0] {
                                let row = base + y * wd;
                                for (x, &v) in xv[row + x0..row + x0 + kernel[1]].iter().enumerate()
                                {
                                    best = better(best, (v, row + x0 + x));
                                }
                            }
                            best
                        } else {
                            taps(&win, oy, ox)
                                .map(|(y, x)| (xv[base + y * wd + x], base + y * wd + x))
                                .reduce(better)
                                .unwrap_or((f32::NEG_INFINITY, base))
                        };
                        out.push(best);
                        argmax.push(at as u32);
                    }
                }
            }
        }
        drop(xv);
        Tensor::from_op(
            "max_pool2d",
            out,
            &[n, c, oh, ow],
            &[self],
            move |g, need| {
                Ok(vec![
                    (need[0] == Need::Sum).then(|| Grad::Sum(scatter(g, &argmax, size))),
                ])
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
