//! 2-D convolution over `[N, C, H, W]` batches with PyTorch's weight layout
//! `[O, C, kh, kw]`, as matrix products over im2col columns.
//!
//! Forward and the input gradient are split over images (each image's
//! output is its own); the weight gradient sums over images, so images are
//! taken in order, each adding its product to the fused running sum: the
//! same bits as one product over the whole batch, on any thread count.

use std::borrow::Cow;
use std::ops::Range;

use crate::dots::{LANES, Segments, add_dots};
use crate::gemm::{MatRef, gemm, gemm_into};
use crate::im2col::{Window, col2im, im2col, im2col_channel, pad_plane};
use crate::parallel::for_each_chunk_mut;
use crate::sum::{add_lanes, sum};

/// A convolution of a batch: its window over one image and its output channels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conv2d {
    /// Images in the batch.
    pub batch: usize,
    /// Input channels, size, kernel, stride, padding and dilation.
    pub window: Window,
    /// Output channels.
    pub out_channels: usize,
}

/// The sizes a convolution works with, all checked against overflow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvSizes {
    /// Output height and width.
    pub output: [usize; 2],
    /// Floats of one input image (C·H·W).
    pub image: usize,
    /// Rows of the column matrix (C·kh·kw).
    pub patch: usize,
    /// Output positions per image (oh·ow).
    pub positions: usize,
    /// Height and width of one input plane with its zero padding.
    pub padded: [usize; 2],
    /// Floats of the whole input, weight and output.
    pub input_len: usize,
    pub weight_len: usize,
    pub output_len: usize,
}

impl Conv2d {
    /// The sizes, or `None` when the kernel does not fit the padded input,
    /// a stride, dilation or kernel is zero, or a size overflows.
    pub fn sizes(&self) -> Option<ConvSizes> {
        let w = &self.window;
        let output = w.output()?;
        let image = w
            .channels
            .checked_mul(w.input[0])?
            .checked_mul(w.input[1])?;
        let patch = w
            .channels
            .checked_mul(w.kernel[0])?
            .checked_mul(w.kernel[1])?;
        let positions = output[0].checked_mul(output[1])?;
        Some(ConvSizes {
            output,
            image,
            patch,
            positions,
            padded: w.padded()?,
            input_len: self.batch.checked_mul(image)?,
            weight_len: self.out_channels.checked_mul(patch)?,
            output_len: self
                .batch
                .checked_mul(self.out_channels)?
                .checked_mul(positions)?,
        })
    }

    /// Floats of scratch one task needs: one image's columns, or a group's
    /// columns twice (staged, then side by side) and its outputs; and the
    /// packing space of the largest matrix product it runs.
    pub fn scratch(&self) -> Option<usize> {
        let s = self.sizes()?;
        let one = s.patch.checked_mul(s.positions)?;
        let group = self.group().max(self.weight_group());
        let side_by_side = one.checked_mul(group)?;
        let columns = s.positions.checked_mul(group)?;
        let outputs = self.out_channels.checked_mul(columns)?;
        let (o, k) = (self.out_channels, s.patch);
        let packing = [
            crate::gemm::scratch(o, k, columns),
            crate::gemm::scratch(k, o, columns),
            crate::gemm::scratch(o, columns, k),
        ]
        .into_iter()
        .max()?;
        let lanes = self.out_channels.checked_mul(s.patch)?.checked_mul(LANES)?;
        one.checked_add(side_by_side.checked_mul(2)?)?
            .checked_add(outputs)?
            .checked_add(packing)?
            .checked_add(lanes)?
            .checked_add(crate::direct::scratch(self)?)
    }

    /// Images whose columns are laid side by side for one matrix product:
    /// an image of few output positions gives a matrix too narrow for the
    /// register tiles, so images are grouped up to [`GROUP_COLUMNS`]
    /// positions (and [`GROUP_FLOATS`] of columns). 1 when one image is
    /// wide enough: then images run in parallel, one product each.
    fn group(&self) -> usize {
        let Some(s) = self.sizes() else {
            return 1;
        };
        let by_columns = GROUP_COLUMNS / s.positions.max(1);
        let by_floats = GROUP_FLOATS / s.patch.saturating_mul(s.positions).max(1);
        by_columns.min(by_floats).clamp(1, self.batch.max(1))
    }

    /// Images whose columns are laid side by side for one product of the
    /// summed weight gradient: as many as [`WEIGHT_GROUP_FLOATS`] of columns
    /// hold, so the product sums over a long inner dimension, its columns
    /// are written in parallel and they are still in cache when packed.
    fn weight_group(&self) -> usize {
        let Some(s) = self.sizes() else {
            return 1;
        };
        (WEIGHT_GROUP_FLOATS / s.patch.saturating_mul(s.positions).max(1))
            .clamp(1, self.batch.max(1))
    }

    /// Whether the summed weight gradient runs as dot products in lanes
    /// (few weights, large images, read in place: a stride of 1 along the
    /// width and output rows a whole number of lane sets wide) rather than
    /// matrix products.
    fn weight_grad_in_lanes(&self) -> bool {
        self.sizes().is_some_and(|s| {
            self.out_channels.saturating_mul(s.patch) <= LANE_MAX_WEIGHTS
                && s.positions >= LANE_MIN_POSITIONS
                && self.window.stride[1] == 1
                && s.output[1].is_multiple_of(LANES)
        })
    }

    fn checked(&self) -> ConvSizes {
        self.sizes()
            .expect("convolution geometry checked by the caller")
    }
}

/// Output positions a group of small images is made up to (measured: one
/// product per image wins from 256 positions up, a group below).
const GROUP_COLUMNS: usize = 256;
/// Most floats of im2col columns multiplied at once when images are small.
const GROUP_FLOATS: usize = 1 << 21;
/// Most floats of im2col columns in one product of the weight gradient:
/// what a core's L2 cache holds, so packing reads them from cache.
const WEIGHT_GROUP_FLOATS: usize = 1 << 18;

/// `f` with `len` floats of column scratch of its own. Not a thread-local
/// buffer: while a task waits inside a product, rayon may run another task
/// of the same loop on its thread, which would need the buffer too.
fn with_columns<R>(len: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    let mut columns = vec![0.0f32; len];
    f(&mut columns)
}

/// `out[n, o] = bias[o] + Σ w[o, ·] ⋆ x[n, ·]`: `x` `[N, C, H, W]`, `w`
/// `[O, C, kh, kw]`, `out` `[N, O, oh, ow]`; each output starts at its bias
/// (or +0.0).
pub fn conv2d(conv: &Conv2d, x: &[f32], w: &[f32], bias: Option<&[f32]>, out: &mut [f32]) {
    if crate::direct::conv2d_in_place(conv, x, w, bias, out) {
        return;
    }
    if conv.group() > 1 {
        return grouped_forward(conv, x, w, bias, out);
    }
    each_image_forward(conv, x, w, bias, out);
}

/// [`conv2d`] one image at a time.
fn each_image_forward(conv: &Conv2d, x: &[f32], w: &[f32], bias: Option<&[f32]>, out: &mut [f32]) {
    let s = conv.checked();
    let (o, k, l) = (conv.out_channels, s.patch, s.positions);
    for_each_chunk_mut(&mut out[..s.output_len], (o * l).max(1), |n, dst| {
        for (ch, plane) in dst.chunks_exact_mut(l.max(1)).enumerate() {
            plane.fill(bias.map_or(0.0, |b| b[ch]));
        }
        let image = &x[n * s.image..(n + 1) * s.image];
        with_columns(k * POSITION_BLOCK.min(l), |cols| {
            for start in (0..l).step_by(POSITION_BLOCK) {
                let block = start..l.min(start + POSITION_BLOCK);
                let width = block.len();
                let cols = &mut cols[..k * width];
                columns_of_block(&conv.window, image, cols, block);
                gemm_into(
                    MatRef::row_major(w, o, k),
                    MatRef::row_major(cols, k, width),
                    &mut dst[start..],
                    l,
                    true,
                );
            }
        });
    });
}

/// Output positions whose im2col columns are made and multiplied at once:
/// a block's columns stay in cache from im2col to packing, where a whole
/// image's would go out to memory and back (a convolution of few channels
/// moves far more column bytes than it does arithmetic).
const POSITION_BLOCK: usize = 512;

/// The im2col columns of output positions `block` of one image, `[K, len]`.
fn columns_of_block(w: &Window, image: &[f32], cols: &mut [f32], block: Range<usize>) {
    let plane = w.input[0] * w.input[1];
    let taps = w.kernel[0] * w.kernel[1];
    let width = block.len();
    for (c, rows) in cols.chunks_exact_mut((taps * width).max(1)).enumerate() {
        im2col_channel(
            w,
            &image[c * plane..(c + 1) * plane],
            rows,
            width,
            0,
            block.clone(),
        );
    }
}

/// The input gradient: `dx[n] = col2im(wᵀ · g[n])` for the output gradient
/// `g` `[N, O, oh, ow]`.
pub fn conv2d_input_grad(conv: &Conv2d, g: &[f32], w: &[f32], dx: &mut [f32]) {
    if crate::direct::input_grad_in_place(conv, g, w, dx) {
        return;
    }
    if conv.group() > 1 {
        return grouped_input_grad(conv, g, w, dx);
    }
    each_image_input_grad(conv, g, w, dx);
}

/// [`conv2d_input_grad`] one image at a time.
fn each_image_input_grad(conv: &Conv2d, g: &[f32], w: &[f32], dx: &mut [f32]) {
    let s = conv.checked();
    let (o, k, l) = (conv.out_channels, s.patch, s.positions);
    for_each_chunk_mut(&mut dx[..s.input_len], s.image.max(1), |n, dst| {
        dst.fill(0.0);
        with_columns(k * l, |dcols| {
            gemm(
                MatRef::row_major(w, o, k).t(),
                MatRef::row_major(&g[n * o * l..(n + 1) * o * l], o, l),
                dcols,
                false,
            );
            col2im(&conv.window, dcols, dst);
        });
    });
}

/// The weight gradient `Σ_n g[n] · im2col(x[n])ᵀ` (`[O, C·kh·kw]`), or with
/// `per_sample` each image's own (`[N, O, C·kh·kw]`, for DP-SGD).
pub fn conv2d_weight_grad(conv: &Conv2d, g: &[f32], x: &[f32], dw: &mut [f32], per_sample: bool) {
    let s = conv.checked();
    let (o, k, l) = (conv.out_channels, s.patch, s.positions);
    let product = |n: usize, dst: &mut [f32], accumulate: bool| {
        with_columns(k * l, |cols| {
            im2col(&conv.window, &x[n * s.image..(n + 1) * s.image], cols);
            gemm(
                MatRef::row_major(&g[n * o * l..(n + 1) * o * l], o, l),
                MatRef::row_major(cols, k, l).t(),
                dst,
                accumulate,
            );
        })
    };
    if per_sample {
        for_each_chunk_mut(&mut dw[..conv.batch * o * k], (o * k).max(1), |n, dst| {
            product(n, dst, false)
        });
    } else if conv.weight_grad_in_lanes() {
        lane_weight_grad(conv, g, x, &mut dw[..o * k]);
    } else {
        grouped_weight_grad(conv, g, x, &mut dw[..o * k]);
    }
}

/// Weights (outputs × patch) at most this many, and positions per image
/// at least [`LANE_MIN_POSITIONS`], take the summed weight gradient as dot
/// products in lanes ([`lane_weight_grad`]). A rule on the shape alone, so
/// a convolution's bits never depend on the host.
const LANE_MAX_WEIGHTS: usize = 16_384;
/// See [`LANE_MAX_WEIGHTS`].
const LANE_MIN_POSITIONS: usize = 256;
/// Patch rows one task of [`lane_weight_grad`] owns.
const LANE_ROWS: usize = 4;

/// The summed weight gradient of a convolution of few weights over large
/// images: each weight `w[o, r]` is the dot product of output gradient row
/// `g[n, o, ·]` and im2col row `r` over every image and position, summed in
/// the eight fixed lanes of [`crate::dots`] (images and positions in order
/// within each lane) and the lanes added in the fixed tree. A matrix
/// product would move every column value through packing for a handful of
/// multiply-adds, and its few output tiles would keep one thread busy; here
/// each task owns [`LANE_ROWS`] patch rows, reads them in place from a
/// zero-padded copy of their channel (no im2col at all) and runs over every
/// image.
fn lane_weight_grad(conv: &Conv2d, g: &[f32], x: &[f32], dw: &mut [f32]) {
    let s = conv.checked();
    let w = &conv.window;
    let o = conv.out_channels;
    let plane = w.input[0] * w.input[1];
    let padded_plane = s.padded[0] * s.padded[1];
    // Lanes of weight (o, r) at [r · o + o]: each task's rows are contiguous.
    let mut lanes = vec![[0.0f32; LANES]; s.patch * o];
    let mut padded = vec![0.0f32; w.channels * padded_plane];
    for n in 0..conv.batch {
        let image = &x[n * s.image..(n + 1) * s.image];
        for_each_chunk_mut(&mut padded, padded_plane.max(1), |c, out| {
            pad_plane(w, &image[c * plane..(c + 1) * plane], out);
        });
        for_each_chunk_mut(&mut lanes, (LANE_ROWS * o).max(1), |task, part| {
            let rows = task * LANE_ROWS..task * LANE_ROWS + part.len() / o.max(1);
            lanes_of_image(conv, &g[n * o * s.positions..], &padded, rows, part);
        });
    }
    for (ch, row) in dw.chunks_exact_mut(s.patch.max(1)).enumerate() {
        for (r, v) in row.iter_mut().enumerate() {
            *v = add_lanes(&lanes[r * o + ch]);
        }
    }
}

/// One image's terms of the lanes of patch rows `rows`, read in place from
/// the image's zero-padded copy `padded` (`[C, H + 2p, W + 2p]`) against
/// its output gradient `g` (from the image's first value): with a stride of
/// 1 along the width, patch row (c, i, j) at output row `oy` is `ow`
/// consecutive values of padded row `oy·s + i·d` of channel `c`, from
/// column `j·d`. (Output rows a whole number of lane sets wide keep every
/// value in its lane.)
fn lanes_of_image(
    conv: &Conv2d,
    g: &[f32],
    padded: &[f32],
    rows: Range<usize>,
    part: &mut [[f32; LANES]],
) {
    let s = conv.checked();
    let w = &conv.window;
    let (o, l) = (conv.out_channels, s.positions);
    let [oh, ow] = s.output;
    let [kh, kw] = w.kernel;
    let [hp, wp] = s.padded;
    let grads: Vec<&[f32]> = (0..o).map(|ch| &g[ch * l..(ch + 1) * l]).collect();
    let by_rows = |len: usize, stride: usize| Segments {
        count: oh,
        len,
        stride,
    };
    let taps = kh * kw;
    let patch_rows: Vec<&[f32]> = rows
        .clone()
        .map(|r| {
            let (c, i, j) = (r / taps, (r % taps) / kw, r % kw);
            &padded[c * hp * wp + i * w.dilation[0] * wp + j * w.dilation[1]..]
        })
        .collect();
    add_dots(
        &patch_rows,
        by_rows(ow, w.stride[0] * wp),
        &grads,
        by_rows(ow, ow),
        part,
    );
}

/// Images `n0..n1`'s im2col columns side by side, `[K, G·L]` (image `j`'s
/// in columns `j·L..(j+1)·L`), written channel by channel in parallel.
fn side_by_side(conv: &Conv2d, x: &[f32], n0: usize, n1: usize) -> Vec<f32> {
    let s = conv.checked();
    let w = &conv.window;
    let (l, gl) = (s.positions, (n1 - n0) * s.positions);
    let plane = w.input[0] * w.input[1];
    let taps = w.kernel[0] * w.kernel[1];
    let mut cols = vec![0.0f32; s.patch * gl];
    for_each_chunk_mut(&mut cols, (taps * gl).max(1), |c, rows| {
        for (j, n) in (n0..n1).enumerate() {
            let at = n * s.image + c * plane;
            im2col_channel(w, &x[at..at + plane], rows, gl, j * l, 0..l);
        }
    });
    cols
}

/// The output gradient of images `n0..n1` as `[O, G·L]`.
/// One image's is its own slice, borrowed.
fn gradient_side_by_side(g: &[f32], o: usize, l: usize, n0: usize, n1: usize) -> Cow<'_, [f32]> {
    let count = n1 - n0;
    if count == 1 {
        return Cow::Borrowed(&g[n0 * o * l..n1 * o * l]);
    }
    let mut out = vec![0.0f32; o * count * l];
    for_each_chunk_mut(&mut out, (count * l).max(1), |ch, row| {
        for j in 0..count {
            let at = ((n0 + j) * o + ch) * l;
            row[j * l..(j + 1) * l].copy_from_slice(&g[at..at + l]);
        }
    });
    Cow::Owned(out)
}

/// Groups of images, in order: `(first, end)`.
fn groups(conv: &Conv2d, size: usize) -> impl Iterator<Item = (usize, usize)> {
    let (batch, size) = (conv.batch, size.max(1));
    (0..batch)
        .step_by(size)
        .map(move |n0| (n0, (n0 + size).min(batch)))
}

/// [`conv2d`] for small images: one product per group of them. Each output
/// is still its bias plus the fused sum over the patch in order.
fn grouped_forward(conv: &Conv2d, x: &[f32], w: &[f32], bias: Option<&[f32]>, out: &mut [f32]) {
    let s = conv.checked();
    let (o, k, l) = (conv.out_channels, s.patch, s.positions);
    for (n0, n1) in groups(conv, conv.group()) {
        let gl = (n1 - n0) * l;
        let cols = side_by_side(conv, x, n0, n1);
        let mut y = vec![0.0f32; o * gl];
        for (ch, row) in y.chunks_exact_mut(gl.max(1)).enumerate() {
            row.fill(bias.map_or(0.0, |b| b[ch]));
        }
        gemm(
            MatRef::row_major(w, o, k),
            MatRef::row_major(&cols, k, gl),
            &mut y,
            true,
        );
        for_each_chunk_mut(
            &mut out[n0 * o * l..n1 * o * l],
            (o * l).max(1),
            |j, dst| {
                for (ch, plane) in dst.chunks_exact_mut(l.max(1)).enumerate() {
                    plane.copy_from_slice(&y[ch * gl + j * l..ch * gl + (j + 1) * l]);
                }
            },
        );
    }
}

/// [`conv2d_input_grad`] for small images: `wᵀ` times a group's output
/// gradients at once, then each image's columns added back (col2im).
fn grouped_input_grad(conv: &Conv2d, g: &[f32], w: &[f32], dx: &mut [f32]) {
    let s = conv.checked();
    let (o, k, l) = (conv.out_channels, s.patch, s.positions);
    for (n0, n1) in groups(conv, conv.group()) {
        let gl = (n1 - n0) * l;
        let gs = gradient_side_by_side(g, o, l, n0, n1);
        let mut d = vec![0.0f32; k * gl];
        gemm(
            MatRef::row_major(w, o, k).t(),
            MatRef::row_major(&gs, o, gl),
            &mut d,
            false,
        );
        for_each_chunk_mut(
            &mut dx[n0 * s.image..n1 * s.image],
            s.image.max(1),
            |j, dst| {
                dst.fill(0.0);
                with_columns(k * l, |dcols| {
                    for (r, row) in dcols.chunks_exact_mut(l.max(1)).enumerate() {
                        row.copy_from_slice(&d[r * gl + j * l..r * gl + (j + 1) * l]);
                    }
                    col2im(&conv.window, dcols, dst);
                });
            },
        );
    }
}

/// The summed weight gradient: one product per group of images, the groups
/// in order, so every weight's fused sum runs over images and
/// positions in the same order as one image at a time.
fn grouped_weight_grad(conv: &Conv2d, g: &[f32], x: &[f32], dw: &mut [f32]) {
    let s = conv.checked();
    let (o, k, l) = (conv.out_channels, s.patch, s.positions);
    for (i, (n0, n1)) in groups(conv, conv.weight_group()).enumerate() {
        let gl = (n1 - n0) * l;
        let gs = gradient_side_by_side(g, o, l, n0, n1);
        let cols = side_by_side(conv, x, n0, n1);
        gemm(
            MatRef::row_major(&gs, o, gl),
            MatRef::row_major(&cols, k, gl).t(),
            dw,
            i > 0,
        );
    }
}

/// Per channel, the sum of `g` `[N, C, L]` over images and positions (a
/// bias gradient), or with `per_sample` each image's own (`[N, C]`). Each
/// plane is summed in the fixed tree; images are added in order.
pub fn channel_sums(
    g: &[f32],
    batch: usize,
    channels: usize,
    plane: usize,
    per_sample: bool,
    out: &mut [f32],
) {
    let planes =
        |n: usize, ch: usize| &g[(n * channels + ch) * plane..(n * channels + ch + 1) * plane];
    if per_sample {
        for_each_chunk_mut(&mut out[..batch * channels], channels.max(1), |n, dst| {
            for (ch, v) in dst.iter_mut().enumerate() {
                *v = sum(planes(n, ch));
            }
        });
    } else {
        for_each_chunk_mut(&mut out[..channels], 1, |ch, v| {
            v[0] = (0..batch).fold(0.0, |acc, n| acc + sum(planes(n, ch)));
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(n: usize, seed: u32) -> Vec<f32> {
        let mut s = seed.wrapping_mul(2654435761).wrapping_add(1);
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 17;
                s ^= s << 5;
                (s % 2001) as f32 / 1000.0 - 1.0
            })
            .collect()
    }

    fn conv() -> Conv2d {
        Conv2d {
            batch: 5,
            window: Window {
                channels: 3,
                input: [11, 9],
                kernel: [3, 3],
                stride: [2, 1],
                padding: [1, 1],
                dilation: [1, 1],
            },
            out_channels: 4,
        }
    }

    /// The definition, straight from the formula, fused in (c, i, j) order.
    fn naive(conv: &Conv2d, x: &[f32], w: &[f32]) -> Vec<f32> {
        let s = conv.sizes().unwrap();
        let win = &conv.window;
        let [oh, ow] = s.output;
        let mut out = vec![0.0; s.output_len];
        for n in 0..conv.batch {
            for o in 0..conv.out_channels {
                for oy in 0..oh {
                    for ox in 0..ow {
                        let mut acc = 0.0f32;
                        for c in 0..win.channels {
                            for i in 0..win.kernel[0] {
                                for j in 0..win.kernel[1] {
                                    let y = (oy * win.stride[0] + i * win.dilation[0]) as isize
                                        - win.padding[0] as isize;
                                    let xx = (ox * win.stride[1] + j * win.dilation[1]) as isize
                                        - win.padding[1] as isize;
                                    let v = if y < 0
                                        || xx < 0
                                        || y >= win.input[0] as isize
                                        || xx >= win.input[1] as isize
                                    {
                                        0.0
                                    } else {
                                        x[((n * win.channels + c) * win.input[0] + y as usize)
                                            * win.input[1]
                                            + xx as usize]
                                    };
                                    let wv = w[((o * win.channels + c) * win.kernel[0] + i)
                                        * win.kernel[1]
                                        + j];
                                    acc = wv.mul_add(v, acc);
                                }
                            }
                        }
                        out[((n * conv.out_channels + o) * oh + oy) * ow + ox] = acc;
                    }
                }
            }
        }
        out
    }

    #[test]
    fn forward_equals_the_definition_bit_for_bit() {
        let c = conv();
        let s = c.sizes().unwrap();
        let (x, w) = (values(s.input_len, 1), values(s.weight_len, 2));
        let mut out = vec![0.0; s.output_len];
        conv2d(&c, &x, &w, None, &mut out);
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&out), bits(&naive(&c, &x, &w)));
    }

    #[test]
    fn forward_read_in_place_gives_the_bits_of_im2col_on_every_path() {
        // Full tiles, a row ending mid-tile, dilation, a wide row.
        let windows = [
            ([40, 16], [1, 1]),
            ([33, 15], [1, 1]),
            ([12, 30], [1, 2]),
            ([6, 64], [2, 1]),
            ([10, 8], [1, 1]),
            ([9, 24], [1, 1]),
        ];
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        for (input, dilation) in windows {
            let c = Conv2d {
                batch: 3,
                window: Window {
                    input,
                    dilation,
                    ..conv().window
                },
                ..conv()
            };
            let s = c.sizes().unwrap();
            let (x, w) = (values(s.input_len, 21), values(s.weight_len, 22));
            let bias = [0.5, -0.25, 1.0, 0.0];
            for portable in [false, true] {
                crate::isa::force_portable(portable);
                let mut direct = vec![f32::NAN; s.output_len];
                let ran = crate::direct::conv2d_in_place(&c, &x, &w, Some(&bias), &mut direct);
                let mut columns = vec![f32::NAN; s.output_len];
                each_image_forward(&c, &x, &w, Some(&bias), &mut columns);
                crate::isa::force_portable(false);
                assert!(ran, "{input:?} suits reading in place");
                assert_eq!(
                    bits(&direct),
                    bits(&columns),
                    "{input:?} {dilation:?} {portable}"
                );
            }
            let mut plain = vec![0.0; s.output_len];
            conv2d(&c, &x, &w, None, &mut plain);
            assert_eq!(bits(&plain), bits(&naive(&c, &x, &w)), "{input:?}");
        }
    }

    #[test]
    fn in_place_tiles_of_every_height_and_width_give_the_bits_of_im2col() {
        // 14 outputs: a full tile of 12 rows and an edge; rows of 31 (wide
        // tiles, one ending mid-tile) and of 8 (the small-map tiles).
        for (input, out_channels) in [([4, 31], 14), ([6, 8], 14), ([3, 16], 25)] {
            let c = Conv2d {
                batch: 2,
                window: Window {
                    input,
                    stride: [1, 1],
                    ..conv().window
                },
                out_channels,
            };
            let s = c.sizes().unwrap();
            let (x, w) = (values(s.input_len, 31), values(s.weight_len, 32));
            let bias = values(out_channels, 33);
            let mut columns = vec![f32::NAN; s.output_len];
            each_image_forward(&c, &x, &w, Some(&bias), &mut columns);
            for (avx2, portable) in [(false, false), (true, false), (false, true)] {
                crate::isa::force_avx2(avx2);
                crate::isa::force_portable(portable);
                let mut direct = vec![f32::NAN; s.output_len];
                let ran = crate::direct::conv2d_in_place(&c, &x, &w, Some(&bias), &mut direct);
                crate::isa::force_avx2(false);
                crate::isa::force_portable(false);
                assert!(ran, "{input:?} suits reading in place");
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert_eq!(
                    bits(&direct),
                    bits(&columns),
                    "{input:?} avx2 {avx2} portable {portable}"
                );
            }
        }
    }

    #[test]
    fn a_stride_one_input_gradient_is_the_flipped_convolution_of_the_gradient() {
        let windows = [
            ([16, 16], [1, 1], [1, 1]),
            ([9, 28], [1, 2], [0, 2]),
            ([7, 15], [1, 1], [0, 0]),
        ];
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        for (input, dilation, padding) in windows {
            let c = Conv2d {
                batch: 2,
                window: Window {
                    input,
                    dilation,
                    padding,
                    stride: [1, 1],
                    ..conv().window
                },
                ..conv()
            };
            let t = crate::direct::transposed(&c).expect("stride 1");
            assert!(crate::direct::fills_wide_tiles(&t), "{input:?}");
            let s = c.sizes().unwrap();
            let (g, w) = (values(s.output_len, 31), values(s.weight_len, 32));
            let (o, ch, taps) = (c.out_channels, c.window.channels, 9);
            let mut flipped = vec![0.0; w.len()];
            for ci in 0..ch {
                for oi in 0..o {
                    for tap in 0..taps {
                        flipped[(ci * o + oi) * taps + tap] =
                            w[(oi * ch + ci) * taps + taps - 1 - tap];
                    }
                }
            }
            let want = naive(&t, &g, &flipped);
            for portable in [false, true] {
                crate::isa::force_portable(portable);
                let mut dx = vec![f32::NAN; s.input_len];
                conv2d_input_grad(&c, &g, &w, &mut dx);
                crate::isa::force_portable(false);
                assert_eq!(
                    bits(&dx),
                    bits(&want),
                    "{input:?} {dilation:?} {padding:?} {portable}"
                );
            }
        }
    }

    #[test]
    fn gradients_are_the_adjoints_of_forward() {
        // ⟨conv(x, w), g⟩ = ⟨x, dx(g)⟩ = ⟨w, dw(g)⟩, on small integers (exact).
        let c = conv();
        let s = c.sizes().unwrap();
        let int = |n: usize, m: usize| {
            (0..n)
                .map(|i| ((i * 7 + m) % 5) as f32 - 2.0)
                .collect::<Vec<_>>()
        };
        let (x, w, g) = (
            int(s.input_len, 1),
            int(s.weight_len, 2),
            int(s.output_len, 3),
        );
        let mut y = vec![0.0; s.output_len];
        conv2d(&c, &x, &w, None, &mut y);
        let mut dx = vec![0.0; s.input_len];
        conv2d_input_grad(&c, &g, &w, &mut dx);
        let mut dw = vec![0.0; s.weight_len];
        conv2d_weight_grad(&c, &g, &x, &mut dw, false);
        let dot = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(p, q)| (p * q) as f64).sum::<f64>();
        assert_eq!(dot(&y, &g), dot(&x, &dx));
        assert_eq!(dot(&y, &g), dot(&w, &dw));
        let mut each = vec![0.0; c.batch * s.weight_len];
        conv2d_weight_grad(&c, &g, &x, &mut each, true);
        let summed: Vec<f32> = (0..s.weight_len)
            .map(|i| (0..c.batch).map(|n| each[n * s.weight_len + i]).sum())
            .collect();
        assert_eq!(summed, dw);
    }

    #[test]
    fn grouped_products_give_the_bits_of_one_image_at_a_time() {
        let c = Conv2d {
            batch: 6,
            window: Window {
                input: [5, 4],
                ..conv().window
            },
            ..conv()
        };
        assert!(c.group() > 1);
        let s = c.sizes().unwrap();
        let (x, w, g) = (
            values(s.input_len, 7),
            values(s.weight_len, 8),
            values(s.output_len, 9),
        );
        let bias = [0.25, -0.5, 1.0, 0.0];
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        let (mut a, mut b) = (vec![0.0; s.output_len], vec![0.0; s.output_len]);
        grouped_forward(&c, &x, &w, Some(&bias), &mut a);
        each_image_forward(&c, &x, &w, Some(&bias), &mut b);
        assert_eq!(bits(&a), bits(&b));
        let (mut a, mut b) = (vec![0.0; s.input_len], vec![0.0; s.input_len]);
        grouped_input_grad(&c, &g, &w, &mut a);
        each_image_input_grad(&c, &g, &w, &mut b);
        assert_eq!(bits(&a), bits(&b));
        let (mut a, mut b) = (vec![0.0; s.weight_len], vec![0.0; s.weight_len]);
        grouped_weight_grad(&c, &g, &x, &mut a);
        weight_grad_one_image_at_a_time(&c, &g, &x, &mut b);
        assert_eq!(bits(&a), bits(&b));
    }

    /// Each image's product added to the running sum in turn.
    fn weight_grad_one_image_at_a_time(c: &Conv2d, g: &[f32], x: &[f32], dw: &mut [f32]) {
        let s = c.sizes().unwrap();
        let (o, k, l) = (c.out_channels, s.patch, s.positions);
        let mut cols = vec![0.0; k * l];
        for n in 0..c.batch {
            im2col(&c.window, &x[n * s.image..(n + 1) * s.image], &mut cols);
            gemm(
                MatRef::row_major(&g[n * o * l..(n + 1) * o * l], o, l),
                MatRef::row_major(&cols, k, l).t(),
                dw,
                n > 0,
            );
        }
    }

    #[test]
    fn few_weights_over_large_images_sum_in_eight_lanes() {
        // 20 × 16 and 40 × 32 positions, read in place from padded rows.
        for input in [[40, 16], [80, 32]] {
            lanes_follow_the_definition(Conv2d {
                batch: 3,
                window: Window {
                    input,
                    ..conv().window
                },
                ..conv()
            });
        }
    }

    fn lanes_follow_the_definition(c: Conv2d) {
        assert!(c.weight_grad_in_lanes());
        let s = c.sizes().unwrap();
        let (x, g) = (values(s.input_len, 12), values(s.output_len, 13));
        let (o, k, l) = (c.out_channels, s.patch, s.positions);
        let mut want = vec![0.0f32; o * k];
        let mut cols = vec![0.0; k * l];
        let mut lanes = vec![[0.0f32; LANES]; o * k];
        for n in 0..c.batch {
            im2col(&c.window, &x[n * s.image..(n + 1) * s.image], &mut cols);
            for ch in 0..o {
                for r in 0..k {
                    for p in 0..l {
                        let lane = &mut lanes[ch * k + r][p % LANES];
                        *lane = g[(n * o + ch) * l + p].mul_add(cols[r * l + p], *lane);
                    }
                }
            }
        }
        for (v, lane) in want.iter_mut().zip(&lanes) {
            *v = add_lanes(lane);
        }
        let mut got = vec![0.0; o * k];
        conv2d_weight_grad(&c, &g, &x, &mut got, false);
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&got), bits(&want));
    }

    #[test]
    fn wide_images_give_the_summed_weight_gradient_of_one_image_at_a_time() {
        let c = Conv2d {
            batch: 3,
            window: Window {
                input: [20, 19],
                ..conv().window
            },
            ..conv()
        };
        assert_eq!(c.group(), 1);
        assert!(!c.weight_grad_in_lanes());
        let s = c.sizes().unwrap();
        let (x, g) = (values(s.input_len, 10), values(s.output_len, 11));
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        let (mut a, mut b) = (vec![0.0; s.weight_len], vec![0.0; s.weight_len]);
        conv2d_weight_grad(&c, &g, &x, &mut a, false);
        weight_grad_one_image_at_a_time(&c, &g, &x, &mut b);
        assert_eq!(bits(&a), bits(&b));
    }

    #[cfg(feature = "parallel")]
    #[test]
    fn thread_counts_do_not_change_a_bit() {
        // Grouped images, and images one at a time (whose tasks may run
        // inside each other's products on one thread: no shared scratch).
        let wide = Conv2d {
            batch: 7,
            window: Window {
                input: [81, 19],
                ..conv().window
            },
            ..conv()
        };
        assert_eq!(wide.group(), 1);
        assert!(!wide.weight_grad_in_lanes());
        let padded = Conv2d {
            window: Window {
                input: [40, 16],
                ..conv().window
            },
            ..wide
        };
        // Stride 1: forward and input gradient read in place, weights in lanes.
        let in_place = Conv2d {
            window: Window {
                input: [20, 16],
                stride: [1, 1],
                ..conv().window
            },
            ..wide
        };
        assert!(
            crate::direct::transposed(&in_place)
                .is_some_and(|t| crate::direct::fills_wide_tiles(&t))
        );
        for c in [Conv2d { batch: 7, ..conv() }, wide, padded, in_place] {
            threads_agree(c);
        }
    }

    #[cfg(feature = "parallel")]
    fn threads_agree(c: Conv2d) {
        let s = c.sizes().unwrap();
        let (x, w, g) = (
            values(s.input_len, 4),
            values(s.weight_len, 5),
            values(s.output_len, 6),
        );
        let run = |threads: usize| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap()
                .install(|| {
                    let mut y = vec![0.0; s.output_len];
                    conv2d(&c, &x, &w, Some(&[0.5, -1.0, 0.25, 2.0]), &mut y);
                    let mut dx = vec![0.0; s.input_len];
                    conv2d_input_grad(&c, &g, &w, &mut dx);
                    let mut dw = vec![0.0; s.weight_len];
                    conv2d_weight_grad(&c, &g, &x, &mut dw, false);
                    let mut db = vec![0.0; 4];
                    channel_sums(&g, c.batch, 4, s.positions, false, &mut db);
                    [y, dx, dw, db]
                        .concat()
                        .iter()
                        .map(|v| v.to_bits())
                        .collect::<Vec<_>>()
                })
        };
        let one = run(1);
        for threads in [2, 3, 8] {
            assert_eq!(run(threads), one, "{threads} threads");
        }
    }
}
