//! 2-D convolution over `[N, C, H, W]` batches with PyTorch's weight layout
//! `[out, in, kh, kw]`: each image's receptive fields are laid out as columns
//! ([`im2col`]) and multiplied by the weight matrix on the GEMM kernel.
//! Backward recomputes the columns rather than keeping them, which costs a
//! copy and saves `patch × positions` floats per image of memory.

use crate::error::PlanResult;
use crate::kernels::im2col::{col2im, im2col};
use crate::kernels::{MatRef, Window, gemm};
use crate::tensor::{Grad, Need, Tensor};

use super::{shape_error, tracking};

/// Most floats of im2col columns a convolution keeps from forward to
/// backward (32 MiB, a sixteenth of a node's default plan memory); beyond,
/// backward recomputes them.
const KEPT_COLUMNS: usize = 8 << 20;

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

impl Tensor {
    /// Cross-correlation of `[N, C, H, W]` with `weight` `[O, C, kh, kw]`,
    /// plus `bias` `[O]`, giving `[N, O, oh, ow]`.
    pub fn conv2d(
        &self,
        weight: &Tensor,
        bias: Option<&Tensor>,
        options: Conv2dOptions,
    ) -> PlanResult<Tensor> {
        let [n, c, h, wd] = nchw(self, "conv2d")?;
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
        let window = Window {
            channels: c,
            input: [h, wd],
            kernel: [kh, kw],
            stride: options.stride,
            padding: options.padding,
            dilation: options.dilation,
        };
        let [oh, ow] = window.output().ok_or_else(|| {
            shape_error(
                "conv2d",
                format!("a {kh}×{kw} kernel with {options:?} does not fit a {h}×{wd} input"),
            )
        })?;
        let (k, l) = (window.patch(), oh * ow);
        // Each output plane starts at its bias (or zero), in index order.
        let mut out = Vec::with_capacity(n * o * l);
        for _ in 0..n {
            match bias {
                Some(b) => b
                    .values()
                    .iter()
                    .for_each(|&bv| out.extend(std::iter::repeat_n(bv, l))),
                None => out.resize(out.len() + o * l, 0.0),
            }
        }
        // The columns of every image are kept for backward when the weight
        // needs a gradient and they are small; otherwise backward lays them
        // out again (a copy, against `n·k·l` floats of memory).
        let keep = tracking(&[weight]) && n * k * l <= KEPT_COLUMNS;
        let mut kept = if keep {
            vec![0.0f32; n * k * l]
        } else {
            Vec::new()
        };
        {
            let xv = self.values();
            let wm = weight.values();
            let mut scratch = if keep {
                Vec::new()
            } else {
                vec![0.0f32; k * l]
            };
            for (s, (img, dst)) in xv
                .chunks_exact(c * h * wd)
                .zip(out.chunks_exact_mut(o * l))
                .enumerate()
            {
                let cols = if keep {
                    &mut kept[s * k * l..(s + 1) * k * l]
                } else {
                    &mut scratch[..]
                };
                im2col(&window, img, cols);
                gemm(
                    MatRef::row_major(&wm, o, k),
                    MatRef::row_major(cols, k, l),
                    dst,
                    true,
                );
            }
        }
        let (x, w) = (self.clone(), weight.clone());
        let mut inputs = vec![self, weight];
        inputs.extend(bias);
        Tensor::from_op("conv2d", out, &[n, o, oh, ow], &inputs, move |g, need| {
            let xv = x.values();
            let wv = w.values();
            let mut dx = (need[0] == Need::Sum).then(|| vec![0.0f32; n * c * h * wd]);
            let per_sample = matches!(need[1], Need::PerSample(_));
            let mut dw = match need[1] {
                // Asked only of ghost operations (the linear map).
                Need::SampleSquares(_) | Need::Clipped(_) => None,
                Need::Nothing => None,
                Need::Sum => Some(vec![0.0f32; o * k]),
                Need::PerSample(b) if b == n => Some(vec![0.0f32; n * o * k]),
                Need::PerSample(b) => {
                    return Err(shape_error(
                        "conv2d",
                        format!("DP-SGD: batch of {b} samples, the input has {n} images"),
                    ));
                }
            };
            let mut cols = if keep {
                Vec::new()
            } else {
                vec![0.0f32; k * l]
            };
            let mut dcols = vec![0.0f32; k * l];
            for s in 0..n {
                let gs = MatRef::row_major(&g[s * o * l..(s + 1) * o * l], o, l);
                if let Some(dw) = dw.as_mut() {
                    let cols: &[f32] = if keep {
                        &kept[s * k * l..(s + 1) * k * l]
                    } else {
                        im2col(
                            &window,
                            &xv[s * c * h * wd..(s + 1) * c * h * wd],
                            &mut cols,
                        );
                        &cols
                    };
                    let (dst, accumulate) = if per_sample {
                        (&mut dw[s * o * k..(s + 1) * o * k], false)
                    } else {
                        (&mut dw[..], true)
                    };
                    gemm(gs, MatRef::row_major(cols, k, l).t(), dst, accumulate);
                }
                if let Some(dx) = dx.as_mut() {
                    gemm(MatRef::row_major(&wv, o, k).t(), gs, &mut dcols, false);
                    col2im(
                        &window,
                        &dcols,
                        &mut dx[s * c * h * wd..(s + 1) * c * h * wd],
                    );
                }
            }
            let dw = dw.map(|d| {
                if per_sample {
                    Grad::PerSample(d)
                } else {
                    Grad::Sum(d)
                }
            });
            let mut grads = vec![dx.map(Grad::Sum), dw];
            if need.len() == 3 {
                let plane_sums = |s: usize, dst: &mut [f32]| {
                    for (ch, v) in dst.iter_mut().enumerate() {
                        let plane = &g[(s * o + ch) * l..(s * o + ch + 1) * l];
                        *v += plane.iter().fold(0.0f32, |a, &x| a + x);
                    }
                };
                grads.push(match need[2] {
                    // Asked only of ghost operations (the linear map).
                    Need::SampleSquares(_) | Need::Clipped(_) => None,
                    Need::Nothing => None,
                    Need::Sum => {
                        let mut db = vec![0.0f32; o];
                        (0..n).for_each(|s| plane_sums(s, &mut db));
                        Some(Grad::Sum(db))
                    }
                    Need::PerSample(_) => {
                        let mut db = vec![0.0f32; n * o];
                        for (s, dst) in db.chunks_exact_mut(o).enumerate() {
                            plane_sums(s, dst);
                        }
                        Some(Grad::PerSample(db))
                    }
                });
            }
            Ok(grads)
        })
    }
}
