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

/// The output columns `lo..hi` of output row `oy` whose windows lie wholly
/// inside the plane (no tap in the padding): the ones [`row_winners`] scans
/// tap by tap.
fn interior(w: &Window, oy: usize, ow: usize) -> (usize, usize) {
    let span = |d: usize| (w.kernel[d] - 1) * w.dilation[d];
    let rows_inside =
        oy * w.stride[0] >= w.padding[0] && oy * w.stride[0] + span(0) < w.input[0] + w.padding[0];
    if !rows_inside {
        return (0, 0);
    }
    let lo = w.padding[1].div_ceil(w.stride[1]).min(ow);
    let hi = match (w.input[1] + w.padding[1]).checked_sub(span(1) + 1) {
        Some(last) => (last / w.stride[1] + 1).min(ow),
        None => 0,
    };
    (lo, hi.max(lo))
}

/// The winners of output row `oy` of one plane: values into `vals` (`ow`
/// long) and, when `INDEX`, their indices within the plane into `idx`.
/// Windows inside the plane are scanned tap by tap along the whole row (the
/// taps of each window still compared in row-major order, so ties and NaNs
/// resolve as in [`winner`]); the few that touch the padding go one by one.
fn row_winners<const INDEX: bool>(
    w: &Window,
    plane: &[f32],
    oy: usize,
    vals: &mut [f32],
    idx: &mut [usize],
) {
    let ow = vals.len();
    if w.kernel == [2, 2] && w.stride == [2, 2] && w.padding == [0, 0] && w.dilation == [1, 1] {
        return row_winners_2x2::<INDEX>(w.input[1], plane, oy, vals, idx);
    }
    let (lo, hi) = interior(w, oy, ow);
    for ox in (0..lo).chain(hi..ow) {
        let (v, at) = winner(w, plane, oy, ox);
        vals[ox] = v;
        if INDEX {
            idx[ox] = at;
        }
    }
    if lo == hi {
        return;
    }
    let (s, width) = (w.stride[1], w.input[1]);
    let y0 = oy * w.stride[0] - w.padding[0];
    let taps = (0..w.kernel[0]).flat_map(|i| (0..w.kernel[1]).map(move |j| (i, j)));
    for (t, (i, j)) in taps.enumerate() {
        let base = (y0 + i * w.dilation[0]) * width + lo * s + j * w.dilation[1] - w.padding[1];
        let column = plane[base..].iter().step_by(s);
        let best = vals[lo..hi].iter_mut().zip(column);
        if INDEX {
            let slots = idx[lo..hi].iter_mut().zip((base..).step_by(s));
            for ((b, &v), (slot, at)) in best.zip(slots) {
                (*b, *slot) = if t == 0 {
                    (v, at)
                } else {
                    better((*b, *slot), (v, at))
                };
            }
        } else {
            for (b, &v) in best {
                let take = (v > *b) | (v.is_nan() & !b.is_nan());
                *b = if t == 0 || take { v } else { *b };
            }
        }
    }
}

/// [`row_winners`] for the pooling most networks use (2×2, stride 2, no
/// padding): each window's four taps read from two input rows together, so
/// the compiler keeps the whole row in vector registers.
fn row_winners_2x2<const INDEX: bool>(
    width: usize,
    plane: &[f32],
    oy: usize,
    vals: &mut [f32],
    idx: &mut [usize],
) {
    let ow = vals.len();
    let top = &plane[2 * oy * width..][..2 * ow];
    let bottom = &plane[(2 * oy + 1) * width..][..2 * ow];
    let windows = top.chunks_exact(2).zip(bottom.chunks_exact(2));
    for (ox, (best, (a, b))) in vals.iter_mut().zip(windows).enumerate() {
        let mut win = (a[0], 0);
        for (tap, v) in [(1, a[1]), (2, b[0]), (3, b[1])] {
            win = better(win, (v, tap));
        }
        *best = win.0;
        if INDEX {
            idx[ox] = (2 * oy + win.1 / 2) * width + 2 * ox + win.1 % 2;
        }
    }
}

/// `out[p, oy, ox]` = the window's maximum.
pub fn max_pool2d(pool: &Pool2d, x: &[f32], out: &mut [f32]) {
    let ([oh, ow], _, _) = pool
        .sizes()
        .expect("pooling geometry checked by the caller");
    let plane_in = pool.window.input[0] * pool.window.input[1];
    for_each_chunk_mut(out, (oh * ow).max(1), |p, dst| {
        let plane = &x[p * plane_in..(p + 1) * plane_in];
        for (oy, row) in dst.chunks_exact_mut(ow.max(1)).enumerate() {
            row_winners::<false>(&pool.window, plane, oy, row, &mut []);
        }
    });
}

/// The input gradient: each output's gradient added to its window's winner,
/// in row-major order of the outputs.
pub fn max_pool2d_grad(pool: &Pool2d, x: &[f32], g: &[f32], dx: &mut [f32]) {
    let ([oh, ow], _, _) = pool
        .sizes()
        .expect("pooling geometry checked by the caller");
    let plane_in = pool.window.input[0] * pool.window.input[1];
    for_each_chunk_mut(dx, plane_in.max(1), |p, dst| {
        dst.fill(0.0);
        let plane = &x[p * plane_in..(p + 1) * plane_in];
        let grads = &g[p * oh * ow..(p + 1) * oh * ow];
        let (mut vals, mut idx) = (vec![0.0f32; ow], vec![0usize; ow]);
        for (oy, row) in grads.chunks_exact(ow.max(1)).enumerate() {
            row_winners::<true>(&pool.window, plane, oy, &mut vals, &mut idx);
            for (&at, &gk) in idx.iter().zip(row) {
                dst[at] += gk;
            }
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

    /// Every geometry's row scan against the definition: each window alone.
    #[test]
    fn row_scans_match_window_by_window_winners() {
        for (kernel, stride, padding, dilation) in [
            (2, 2, 0, 1),
            (3, 2, 1, 1),
            (3, 1, 1, 2),
            (2, 3, 1, 1),
            (5, 2, 2, 1),
            (1, 1, 0, 1),
        ] {
            let window = Window {
                channels: 1,
                input: [7, 9],
                kernel: [kernel, kernel],
                stride: [stride, stride],
                padding: [padding, padding],
                dilation: [dilation, dilation],
            };
            let p = Pool2d { planes: 3, window };
            let ([oh, ow], len, n) = p.sizes().unwrap();
            let mut x: Vec<f32> = (0..len).map(|i| ((i * 7) % 5) as f32 - 2.0).collect();
            x[10] = f32::NAN;
            x[40] = -0.0;
            let g: Vec<f32> = (0..n).map(|i| (i % 13) as f32 + 0.5).collect();
            let (mut out, mut dx) = (vec![0.0; n], vec![0.0; len]);
            max_pool2d(&p, &x, &mut out);
            max_pool2d_grad(&p, &x, &g, &mut dx);
            let mut want_dx = vec![0.0f32; len];
            let plane_in = 7 * 9;
            for q in 0..3 {
                let plane = &x[q * plane_in..(q + 1) * plane_in];
                for k in 0..oh * ow {
                    let (v, at) = winner(&window, plane, k / ow, k % ow);
                    let got = out[q * oh * ow + k];
                    assert_eq!(got.to_bits(), v.to_bits(), "{window:?} output {k}");
                    want_dx[q * plane_in + at] += g[q * oh * ow + k];
                }
            }
            assert_eq!(dx, want_dx, "{window:?}");
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
