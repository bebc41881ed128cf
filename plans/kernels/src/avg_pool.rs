//! Average pooling over `[N, C, H, W]`: by a window (padding counted as
//! zeros, PyTorch's default) and adaptive (PyTorch's window bounds
//! ⌊i·H/oh⌋ … ⌈(i+1)·H/oh⌉; global pooling when the output is 1×1).
//!
//! Planes are independent, so they are split over threads; within a plane
//! every sum runs in the order the plan SDK always used — a window's taps
//! row by row, a gradient's windows in row-major order, a global pool in
//! four interleaved lanes added in a fixed order.

use crate::im2col::Window;
use crate::parallel::for_each_chunk_mut;
use crate::pool::Pool2d;

/// Planes one task pools, at least.
const PLANES_PER_TASK: usize = 4;

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

/// Apply `f(plane, chunk)` to each plane's `len` values of `out`, planes
/// split over threads.
fn each_plane(out: &mut [f32], len: usize, f: impl Fn(usize, &mut [f32]) + Sync + Send) {
    if len == 0 {
        return;
    }
    for_each_chunk_mut(out, len * PLANES_PER_TASK, |c, chunk| {
        for (p, plane) in chunk.chunks_exact_mut(len).enumerate() {
            f(c * PLANES_PER_TASK + p, plane);
        }
    });
}

/// What a window's average and its gradient both need.
struct Geometry {
    /// Output height and width.
    out: [usize; 2],
    /// Values per input plane.
    area: usize,
    /// 1/(kh·kw): padding counts.
    scale: f32,
}

impl Geometry {
    /// `None` when the window does not fit (checked before, by `Op`).
    fn of(pool: &Pool2d) -> Option<Geometry> {
        let (out, _, _) = pool.sizes()?;
        let w = &pool.window;
        Some(Geometry {
            out,
            area: w.input[0] * w.input[1],
            scale: 1.0 / (w.kernel[0] * w.kernel[1]) as f32,
        })
    }
}

/// The mean of each window, padding counted: `Σ taps · 1/(kh·kw)`.
pub fn avg_pool2d(pool: &Pool2d, x: &[f32], out: &mut [f32]) {
    let Some(Geometry {
        out: [oh, ow],
        area,
        scale,
    }) = Geometry::of(pool)
    else {
        return;
    };
    let w = &pool.window;
    each_plane(out, oh * ow, |p, plane| {
        let src = &x[p * area..(p + 1) * area];
        for oy in 0..oh {
            for ox in 0..ow {
                let s = taps(w, oy, ox).fold(0.0f32, |s, (y, x)| s + src[y * w.input[1] + x]);
                plane[oy * ow + ox] = s * scale;
            }
        }
    });
}

/// The input gradient of [`avg_pool2d`] from the output gradient `g`.
pub fn avg_pool2d_grad(pool: &Pool2d, g: &[f32], dx: &mut [f32]) {
    let Some(Geometry {
        out: [oh, ow],
        area,
        scale,
    }) = Geometry::of(pool)
    else {
        return;
    };
    let w = &pool.window;
    each_plane(dx, area, |p, plane| {
        plane.fill(0.0);
        for oy in 0..oh {
            for ox in 0..ow {
                let gi = g[(p * oh + oy) * ow + ox] * scale;
                for (y, x) in taps(w, oy, ox) {
                    plane[y * w.input[1] + x] += gi;
                }
            }
        }
    });
}

/// Average pooling of `planes` planes of `input` (height, width) to
/// `output` (height, width).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Adaptive {
    pub planes: usize,
    pub input: [usize; 2],
    pub output: [usize; 2],
}

impl Adaptive {
    /// Input and output lengths; `None` when a size is zero or overflows.
    pub fn sizes(&self) -> Option<(usize, usize)> {
        let [h, w] = self.input;
        let [oh, ow] = self.output;
        if [h, w, oh, ow].contains(&0) {
            return None;
        }
        let input = self.planes.checked_mul(h)?.checked_mul(w)?;
        let output = self.planes.checked_mul(oh)?.checked_mul(ow)?;
        // Window bounds compute (i + 1)·H.
        oh.checked_add(1)?.checked_mul(h)?;
        ow.checked_add(1)?.checked_mul(w)?;
        Some((input, output))
    }

    /// Rows (or columns) of output window `i` along `d`.
    fn bounds(&self, d: usize, i: usize) -> (usize, usize) {
        let (out, inp) = (self.output[d], self.input[d]);
        (i * inp / out, ((i + 1) * inp).div_ceil(out))
    }
}

/// Σ values in four interleaved lanes added in a fixed order.
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

/// The mean of each adaptive window.
pub fn adaptive_avg_pool2d(a: &Adaptive, x: &[f32], out: &mut [f32]) {
    let [h, w] = a.input;
    let [oh, ow] = a.output;
    if a.output == [1, 1] {
        let scale = 1.0 / (h * w) as f32;
        each_plane(out, 1, |p, o| {
            o[0] = lane_sum(&x[p * h * w..(p + 1) * h * w]) * scale
        });
        return;
    }
    each_plane(out, oh * ow, |p, plane| {
        let src = &x[p * h * w..(p + 1) * h * w];
        for oy in 0..oh {
            let (y0, y1) = a.bounds(0, oy);
            for ox in 0..ow {
                let (x0, x1) = a.bounds(1, ox);
                let mut s = 0.0f32;
                for y in y0..y1 {
                    for x in x0..x1 {
                        s += src[y * w + x];
                    }
                }
                plane[oy * ow + ox] = s / ((y1 - y0) * (x1 - x0)) as f32;
            }
        }
    });
}

/// The input gradient of [`adaptive_avg_pool2d`] from the output gradient.
pub fn adaptive_avg_pool2d_grad(a: &Adaptive, g: &[f32], dx: &mut [f32]) {
    let [h, w] = a.input;
    let [oh, ow] = a.output;
    each_plane(dx, h * w, |p, plane| {
        plane.fill(0.0);
        for oy in 0..oh {
            let (y0, y1) = a.bounds(0, oy);
            for ox in 0..ow {
                let (x0, x1) = a.bounds(1, ox);
                let gi = g[(p * oh + oy) * ow + ox] / ((y1 - y0) * (x1 - x0)) as f32;
                for y in y0..y1 {
                    for x in x0..x1 {
                        plane[y * w + x] += gi;
                    }
                }
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_average_with_padding_counted() {
        let pool = Pool2d {
            planes: 1,
            window: Window {
                channels: 1,
                input: [2, 2],
                kernel: [2, 2],
                stride: [1, 1],
                padding: [1, 1],
                dilation: [1, 1],
            },
        };
        let x = [1.0, 2.0, 3.0, 4.0];
        let mut out = [0.0; 9];
        avg_pool2d(&pool, &x, &mut out);
        assert_eq!(out, [0.25, 0.75, 0.5, 1.0, 2.5, 1.5, 0.75, 1.75, 1.0]);
        let mut dx = [f32::NAN; 4];
        avg_pool2d_grad(&pool, &[1.0; 9], &mut dx);
        assert_eq!(dx, [1.0; 4]);
    }

    #[test]
    fn adaptive_windows_follow_pytorchs_bounds() {
        let a = Adaptive {
            planes: 2,
            input: [3, 5],
            output: [2, 2],
        };
        let x: Vec<f32> = (0..30).map(|v| v as f32).collect();
        let mut out = [0.0; 8];
        adaptive_avg_pool2d(&a, &x, &mut out);
        // Plane 0, window (0, 0): rows 0..2, columns 0..3.
        assert_eq!(out[0], (0.0 + 1.0 + 2.0 + 5.0 + 6.0 + 7.0) / 6.0);
        // Plane 1, window (1, 1): rows 1..3, columns 2..5.
        assert_eq!(out[7], (22.0 + 23.0 + 24.0 + 27.0 + 28.0 + 29.0) / 6.0);
        let global = Adaptive {
            output: [1, 1],
            ..a
        };
        let mut means = [0.0; 2];
        adaptive_avg_pool2d(&global, &x, &mut means);
        // Global pooling scales the lanes' sum by 1/(H·W), as the SDK did.
        let scale = 1.0f32 / 15.0;
        assert_eq!(means, [105.0 * scale, 330.0 * scale]);
        let mut dx = vec![f32::NAN; 30];
        adaptive_avg_pool2d_grad(&global, &[15.0, 30.0], &mut dx);
        assert!(dx[..15].iter().all(|&d| d == 1.0) && dx[15..].iter().all(|&d| d == 2.0));
        assert!(
            Adaptive {
                output: [0, 1],
                ..a
            }
            .sizes()
            .is_none()
        );
    }
}
