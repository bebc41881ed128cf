//! Max pooling over `[N, C, H, W]`: the first maximum wins a tie and a NaN
//! wins outright, as in PyTorch. The gradient recomputes each window's
//! winner from the saved input (no index tensor to keep) and adds the
//! output gradient there, window by window in row-major order, so
//! overlapping windows add in one fixed order.

use crate::im2col::Window;
use crate::parallel::for_each_chunk_mut;

/// A pooling of `planes` images (batch × channels) by `window`
/// (`window.channels` is 1: every plane is pooled alone).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pool2d {
    /// Batch × channels.
    pub planes: usize,
    /// Kernel, stride, padding and dilation over one plane.
    pub window: Window,
}

impl Pool2d {
    /// Output height and width, the input and output lengths; `None` when
    /// the window does not fit, padding passes half the kernel, or a size
    /// overflows.
    pub fn sizes(&self) -> Option<([usize; 2], usize, usize)> {
        let w = &self.window;
        let at_most_half = |d: usize| w.padding[d] <= w.kernel[d] / 2;
        if w.channels != 1 || !at_most_half(0) || !at_most_half(1) {
            return None;
        }
        let out = w.output()?;
        let input = self
            .planes
            .checked_mul(w.input[0])?
            .checked_mul(w.input[1])?;
        let output = self.planes.checked_mul(out[0])?.checked_mul(out[1])?;
        Some((out, input, output))
    }
}

/// The larger of two (value, index) candidates: the first wins a tie, a NaN
/// wins (and keeps winning). Without branches: on real data a max is a
/// coin toss the branch predictor loses.
#[inline(always)]
fn better(best: (f32, usize), next: (f32, usize)) -> (f32, usize) {
    let take = (next.0 > best.0) | (next.0.is_nan() & !best.0.is_nan());
    (
        if take { next.0 } else { best.0 },
        if take { next.1 } else { best.1 },
    )
}

/// The winner of window (oy, ox) of one plane: its value and its index
/// within the plane.
#[inline]
fn winner(w: &Window, plane: &[f32], oy: usize, ox: usize) -> (f32, usize) {
    let width = w.input[1];
    if w.padding == [0, 0] && w.dilation == [1, 1] {
        // A plain rectangle inside the plane: no tap to skip.
        let (y0, x0) = (oy * w.stride[0], ox * w.stride[1]);
        let mut best = (plane[y0 * width + x0], y0 * width + x0);
        for y in y0..y0 + w.kernel[0] {
            let row = y * width;
            for (x, &v) in plane[row + x0..row + x0 + w.kernel[1]].iter().enumerate() {
                best = better(best, (v, row + x0 + x));
            }
        }
        return best;
    }
    let mut best: Option<(f32, usize)> = None;
    for i in 0..w.kernel[0] {
        let Some(y) = (oy * w.stride[0] + i * w.dilation[0]).checked_sub(w.padding[0]) else {
            continue;
        };
        if y >= w.input[0] {
            continue;
        }
        for j in 0..w.kernel[1] {
            let Some(x) = (ox * w.stride[1] + j * w.dilation[1]).checked_sub(w.padding[1]) else {
                continue;
            };
            if x >= width {
                continue;
            }
            let at = y * width + x;
            let candidate = (plane[at], at);
            best = Some(best.map_or(candidate, |b| better(b, candidate)));
        }
    }
    // Padding at most half the kernel leaves every window a real tap.
    best.unwrap_or((f32::NEG_INFINITY, 0))
}

/// `out[p, oy, ox]` = the window's maximum.
pub fn max_pool2d(pool: &Pool2d, x: &[f32], out: &mut [f32]) {
    let ([oh, ow], _, _) = pool
        .sizes()
        .expect("pooling geometry checked by the caller");
    let plane_in = pool.window.input[0] * pool.window.input[1];
    for_each_chunk_mut(out, (oh * ow).max(1), |p, dst| {
        let plane = &x[p * plane_in..(p + 1) * plane_in];
        for (k, v) in dst.iter_mut().enumerate() {
            *v = winner(&pool.window, plane, k / ow, k % ow).0;
        }
    });
}

/// The input gradient: each output's gradient added to its window's winner.
pub fn max_pool2d_grad(pool: &Pool2d, x: &[f32], g: &[f32], dx: &mut [f32]) {
    let ([oh, ow], _, _) = pool
        .sizes()
        .expect("pooling geometry checked by the caller");
    let plane_in = pool.window.input[0] * pool.window.input[1];
    for_each_chunk_mut(dx, plane_in.max(1), |p, dst| {
        dst.fill(0.0);
        let plane = &x[p * plane_in..(p + 1) * plane_in];
        let grads = &g[p * oh * ow..(p + 1) * oh * ow];
        for (k, &gk) in grads.iter().enumerate() {
            let (_, at) = winner(&pool.window, plane, k / ow, k % ow);
            dst[at] += gk;
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(kernel: usize, stride: usize, padding: usize) -> Pool2d {
        Pool2d {
            planes: 2,
            window: Window {
                channels: 1,
                input: [5, 6],
                kernel: [kernel, kernel],
                stride: [stride, stride],
                padding: [padding, padding],
                dilation: [1, 1],
            },
        }
    }

    #[test]
    fn maxima_ties_and_nans_follow_pytorch() {
        let p = pool(2, 2, 0);
        let mut x: Vec<f32> = (0..60).map(|i| ((i * 7) % 11) as f32).collect();
        x[0] = 5.0;
        x[1] = 5.0; // a tie: the first wins
        x[14] = f32::NAN; // row 2, column 2: a NaN wins window (1, 1)
        let ([oh, ow], _, n) = p.sizes().unwrap();
        assert_eq!([oh, ow], [2, 3]);
        let mut out = vec![0.0; n];
        max_pool2d(&p, &x, &mut out);
        assert_eq!(out[0], x[0].max(x[1]).max(x[6]).max(x[7]));
        assert!(out[4].is_nan() && !out[1].is_nan());
        let g: Vec<f32> = (0..n).map(|i| i as f32 + 1.0).collect();
        let mut dx = vec![0.0; 60];
        max_pool2d_grad(&p, &x, &g, &mut dx);
        assert_eq!(dx.iter().sum::<f32>(), g.iter().sum::<f32>());
        assert_eq!(dx[14], g[4]);
        if x[0] >= x[6].max(x[7]) {
            assert_eq!(dx[0], 1.0);
        }
    }

    #[test]
    fn overlapping_padded_windows_add_every_gradient_once() {
        let p = pool(3, 1, 1);
        let x: Vec<f32> = (0..60).map(|i| ((i * 13) % 17) as f32).collect();
        let (_, _, n) = p.sizes().unwrap();
        let g = vec![1.0; n];
        let mut dx = vec![0.0; 60];
        max_pool2d_grad(&p, &x, &g, &mut dx);
        assert_eq!(dx.iter().sum::<f32>(), n as f32);
        assert!(
            pool(2, 2, 2).sizes().is_none(),
            "padding past half the kernel"
        );
    }
}
