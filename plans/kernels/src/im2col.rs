//! Convolution as a matrix product: `im2col` lays out every receptive field
//! of one image as a column, `col2im` adds columns back into an image (the
//! adjoint, for the input gradient).

use std::ops::Range;

/// The geometry of a 2-D convolution or pooling window over one image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// Input channels.
    pub channels: usize,
    /// Input height and width.
    pub input: [usize; 2],
    /// Kernel height and width.
    pub kernel: [usize; 2],
    /// Stride along height and width.
    pub stride: [usize; 2],
    /// Zero padding added on both sides of height and width.
    pub padding: [usize; 2],
    /// Spacing between kernel taps along height and width.
    pub dilation: [usize; 2],
}

impl Window {
    /// Output height and width, or `None` when the (dilated) kernel does not
    /// fit in the padded input, a stride or dilation is zero, or a size
    /// overflows.
    pub fn output(&self) -> Option<[usize; 2]> {
        let padded = self.padded()?;
        let mut out = [0; 2];
        for (d, out) in out.iter_mut().enumerate() {
            if self.stride[d] == 0 || self.dilation[d] == 0 || self.kernel[d] == 0 {
                return None;
            }
            // Checked: a plan may ask for any size; one that overflows fits nothing.
            let span = self.dilation[d]
                .checked_mul(self.kernel[d] - 1)?
                .checked_add(1)?;
            if span > padded[d] {
                return None;
            }
            *out = (padded[d] - span) / self.stride[d] + 1;
        }
        Some(out)
    }

    /// Height and width of the input with its zero padding on both sides,
    /// or `None` when they overflow.
    pub fn padded(&self) -> Option<[usize; 2]> {
        let side = |d: usize| self.padding[d].checked_mul(2)?.checked_add(self.input[d]);
        Some([side(0)?, side(1)?])
    }

    /// Rows of the column matrix: channels × kernel height × kernel width.
    pub fn patch(&self) -> usize {
        self.channels * self.kernel[0] * self.kernel[1]
    }

    /// Input coordinate of output position `o`, tap `k`, along dimension `d`,
    /// or `None` in the padding.
    #[inline(always)]
    fn source(&self, d: usize, o: usize, k: usize) -> Option<usize> {
        let pos = (o * self.stride[d] + k * self.dilation[d]).checked_sub(self.padding[d])?;
        (pos < self.input[d]).then_some(pos)
    }
}

/// `cols[(c·kh + i)·kw + j, oy·ow + ox] = image[c, oy·s + i·d − p, ox·s + j·d − p]`
/// (zero in the padding) for one `[C, H, W]` image; `cols` is
/// `patch × (oh·ow)`, row-major.
pub fn im2col(w: &Window, image: &[f32], cols: &mut [f32]) {
    let positions = w.output().map_or(0, |[oh, ow]| oh * ow);
    let plane = w.input[0] * w.input[1];
    let rows = w.kernel[0] * w.kernel[1];
    for c in 0..w.channels {
        let out = &mut cols[c * rows * positions..(c + 1) * rows * positions];
        im2col_channel(
            w,
            &image[c * plane..(c + 1) * plane],
            out,
            positions,
            0,
            0..positions,
        );
    }
}

/// The `kh·kw` rows of [`im2col`] that one channel's `plane` gives, for
/// output positions `positions` only, written into `rows` at row stride
/// `ld` from column `offset`: images laid side by side in one matrix each
/// take their own columns, and a wide image can be taken a block of
/// positions at a time.
pub fn im2col_channel(
    w: &Window,
    plane: &[f32],
    rows: &mut [f32],
    ld: usize,
    offset: usize,
    positions: Range<usize>,
) {
    let len = positions.len();
    for i in 0..w.kernel[0] {
        for j in 0..w.kernel[1] {
            let row = i * w.kernel[1] + j;
            let out = &mut rows[row * ld + offset..row * ld + offset + len];
            im2col_row(w, plane, [i, j], out, positions.clone());
        }
    }
}

/// One row of [`im2col`]: tap `[i, j]` of one channel's `plane`, for output
/// positions `positions`, into `out` (their length).
fn im2col_row(
    w: &Window,
    plane: &[f32],
    [i, j]: [usize; 2],
    out: &mut [f32],
    positions: Range<usize>,
) {
    let [_, ow] = w.output().expect("checked window");
    if positions.is_empty() {
        return;
    }
    let wd = w.input[1];
    for oy in positions.start / ow..=(positions.end - 1) / ow {
        // The output row's part inside `positions`, as ox and as columns.
        let first = positions.start.max(oy * ow);
        let end = positions.end.min((oy + 1) * ow);
        let xs = first - oy * ow..end - oy * ow;
        let dst = &mut out[first - positions.start..end - positions.start];
        let Some(y) = w.source(0, oy, i) else {
            dst.fill(0.0);
            continue;
        };
        let src = &plane[y * wd..(y + 1) * wd];
        if w.stride[1] == 1 {
            // Stride 1: the valid ox form one interval, copied in one go.
            let shift = j * w.dilation[1];
            let lo = w.padding[1].saturating_sub(shift).clamp(xs.start, xs.end);
            let hi = (wd + w.padding[1]).saturating_sub(shift).clamp(lo, xs.end);
            let (lo_at, hi_at) = (lo - xs.start, hi - xs.start);
            dst[..lo_at].fill(0.0);
            if hi > lo {
                let start = lo + shift - w.padding[1];
                dst[lo_at..hi_at].copy_from_slice(&src[start..start + hi - lo]);
            }
            dst[hi_at..].fill(0.0);
        } else {
            for (v, ox) in dst.iter_mut().zip(xs) {
                *v = w.source(1, ox, j).map_or(0.0, |x| src[x]);
            }
        }
    }
}

/// One channel's `[H, W]` plane into `out` (`[H + 2p, W + 2p]`), its border
/// zero: every value written once.
pub(crate) fn pad_plane(w: &Window, plane: &[f32], out: &mut [f32]) {
    let [h, wd] = w.input;
    let [ph, pw] = w.padding;
    let [_, wp] = w.padded().expect("checked window");
    let (top, rest) = out.split_at_mut(ph * wp);
    top.fill(0.0);
    for (row, src) in rest
        .chunks_exact_mut(wp.max(1))
        .zip(plane.chunks_exact(wd.max(1)))
        .take(h)
    {
        row[..pw].fill(0.0);
        row[pw..pw + wd].copy_from_slice(src);
        row[pw + wd..].fill(0.0);
    }
    rest[h * wp..].fill(0.0);
}

/// The adjoint of [`im2col`]: adds every column entry back to the image
/// position it was read from, in a fixed order.
pub fn col2im(w: &Window, cols: &[f32], image: &mut [f32]) {
    let [oh, ow] = w.output().expect("checked window");
    let [h, wd] = w.input;
    let mut row = 0;
    for c in 0..w.channels {
        let plane = &mut image[c * h * wd..(c + 1) * h * wd];
        for i in 0..w.kernel[0] {
            for j in 0..w.kernel[1] {
                let col = &cols[row * oh * ow..(row + 1) * oh * ow];
                for oy in 0..oh {
                    let Some(y) = w.source(0, oy, i) else {
                        continue;
                    };
                    let dst = &mut plane[y * wd..(y + 1) * wd];
                    let src = &col[oy * ow..(oy + 1) * ow];
                    if w.stride[1] == 1 {
                        let shift = j * w.dilation[1];
                        let lo = w.padding[1].saturating_sub(shift).min(ow);
                        let hi = (wd + w.padding[1]).saturating_sub(shift).clamp(lo, ow);
                        if hi > lo {
                            let start = lo + shift - w.padding[1];
                            for (d, s) in dst[start..start + hi - lo].iter_mut().zip(&src[lo..hi]) {
                                *d += s;
                            }
                        }
                    } else {
                        for (ox, v) in src.iter().enumerate() {
                            if let Some(x) = w.source(1, ox, j) {
                                dst[x] += v;
                            }
                        }
                    }
                }
                row += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_size_follows_pytorch() {
        let w = Window {
            channels: 1,
            input: [28, 28],
            kernel: [5, 5],
            stride: [1, 1],
            padding: [2, 2],
            dilation: [1, 1],
        };
        assert_eq!(w.output(), Some([28, 28]));
        let w = Window {
            stride: [2, 3],
            padding: [0, 1],
            dilation: [2, 1],
            ..w
        };
        // (28 − 9)/2 + 1 = 10; (30 − 5)/3 + 1 = 9
        assert_eq!(w.output(), Some([10, 9]));
        assert_eq!(
            Window {
                kernel: [40, 1],
                ..w
            }
            .output(),
            None
        );
    }

    #[test]
    fn col2im_is_the_adjoint_of_im2col() {
        // ⟨im2col(x), y⟩ = ⟨x, col2im(y)⟩ for integer-valued x and y (exact).
        let w = Window {
            channels: 2,
            input: [5, 6],
            kernel: [3, 2],
            stride: [2, 1],
            padding: [1, 1],
            dilation: [1, 2],
        };
        let [oh, ow] = w.output().unwrap();
        let x: Vec<f32> = (0..2 * 5 * 6).map(|i| (i % 7) as f32 - 3.0).collect();
        let y: Vec<f32> = (0..w.patch() * oh * ow)
            .map(|i| (i % 5) as f32 - 2.0)
            .collect();
        let mut cols = vec![0.0; y.len()];
        im2col(&w, &x, &mut cols);
        let mut back = vec![0.0; x.len()];
        col2im(&w, &y, &mut back);
        let lhs: f32 = cols.iter().zip(&y).map(|(a, b)| a * b).sum();
        let rhs: f32 = x.iter().zip(&back).map(|(a, b)| a * b).sum();
        assert_eq!(lhs, rhs);
    }
}
