//! A convolution's forward pass read in place, without im2col.
//!
//! With a stride of 1 along the width, im2col's value for patch row
//! (c, i, j) at output position (oy, ox) is the zero-padded input at row
//! `oy·s + i·d`, column `ox + j·d`: consecutive positions of an output row
//! are consecutive values of one padded input row. So a register tile's
//! `NR` positions at depth (c, i, j) are read straight from a padded copy of
//! the image, at an offset per depth, against the packed weights. Every
//! output is its bias, then fused multiply-adds over (c, i, j) in order:
//! the same bits as the product over im2col columns, without making,
//! storing and packing those columns (for a convolution of few channels,
//! moving them cost more than the arithmetic).

use crate::conv::Conv2d;
use crate::gemm::MatRef;
use crate::im2col::{Window, pad_plane};
use crate::isa::active;
use crate::micro::{Micro, PanelA, PanelB, Portable, edge_tile};
use crate::pack::pack;
use crate::parallel::for_each_chunk_mut;

/// Run [`crate::conv::conv2d`] in place when the convolution [`suits`] it;
/// `false` when it does not, and nothing was written.
pub(crate) fn conv2d_in_place(
    conv: &Conv2d,
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    out: &mut [f32],
) -> bool {
    match active() {
        #[cfg(target_arch = "x86_64")]
        crate::isa::Isa::Avx512 if fills_wide_tiles(conv) => {
            run::<crate::micro::Avx512x12x16>(conv, x, w, bias, out)
        }
        #[cfg(target_arch = "x86_64")]
        crate::isa::Isa::Avx2Fma if fills_wide_tiles(conv) => {
            run::<crate::micro::Avx2Fma>(conv, x, w, bias, out)
        }
        #[cfg(target_arch = "x86_64")]
        crate::isa::Isa::Avx2Fma | crate::isa::Isa::Avx512 => {
            run::<crate::micro::Avx2Fma12x8>(conv, x, w, bias, out)
        }
        _ => run::<Portable>(conv, x, w, bias, out),
    }
}

/// Whether output rows fill tiles of [`RULE_WIDTH`] with at most one value
/// in eight wasted: the rule for the input gradient read in place.
pub(crate) fn fills_wide_tiles(conv: &Conv2d) -> bool {
    conv.sizes().is_some_and(|s| {
        let ow = s.output[1];
        ow > 0 && ow.next_multiple_of(RULE_WIDTH) * 7 <= ow * 8
    })
}

/// Run [`crate::conv::conv2d_input_grad`] in place when the convolution
/// has a stride of 1 and its [`transposed`] form [`fills_wide_tiles`];
/// `false` when not, and nothing was written.
///
/// The input gradient of a stride-1 convolution is itself a convolution:
/// of the output gradient, padded by `d·(k−1) − p`, with the weights'
/// channels swapped and their taps flipped. Each input gradient value is
/// then one fused sum over (output channel, tap) in order, instead of
/// im2col's adjoint adding one rounded product per tap.
pub(crate) fn input_grad_in_place(conv: &Conv2d, g: &[f32], w: &[f32], dx: &mut [f32]) -> bool {
    // A rule on the shape alone (not on which tiles this CPU has): the
    // bits differ from im2col's adjoint.
    let Some(t) = transposed(conv).filter(fills_wide_tiles) else {
        return false;
    };
    let (o, c) = (conv.out_channels, conv.window.channels);
    let [kh, kw] = conv.window.kernel;
    let taps = kh * kw;
    let mut flipped = vec![0.0f32; o * c * taps];
    for (ci, to) in flipped.chunks_exact_mut((o * taps).max(1)).enumerate() {
        for (oi, taps_out) in to.chunks_exact_mut(taps.max(1)).enumerate() {
            let from = &w[(oi * c + ci) * taps..(oi * c + ci + 1) * taps];
            for (v, f) in taps_out.iter_mut().zip(from.iter().rev()) {
                *v = *f;
            }
        }
    }
    conv2d_in_place(&t, g, &flipped, None, dx)
}

/// The convolution whose forward pass is `conv`'s input gradient: over the
/// output gradient (`O` channels of `oh × ow`), `C` outputs, the same kernel
/// and dilation, stride 1 and padding `d·(k−1) − p`. `None` unless `conv`
/// has a stride of 1 and a padding of at most `d·(k−1)`.
pub(crate) fn transposed(conv: &Conv2d) -> Option<Conv2d> {
    let w = &conv.window;
    let s = conv.sizes()?;
    if w.stride != [1, 1] {
        return None;
    }
    let mut padding = [0; 2];
    for (d, pad) in padding.iter_mut().enumerate() {
        *pad = w.dilation[d]
            .checked_mul(w.kernel[d] - 1)?
            .checked_sub(w.padding[d])?;
    }
    let t = Conv2d {
        batch: conv.batch,
        window: Window {
            channels: conv.out_channels,
            input: s.output,
            kernel: w.kernel,
            stride: [1, 1],
            padding,
            dilation: w.dilation,
        },
        out_channels: w.channels,
    };
    (t.sizes()?.output == w.input).then_some(t)
}

/// Tile width [`fills_wide_tiles`] assumes, whatever the CPU's: the input
/// gradient read in place sums in another order than im2col's adjoint, so
/// which way it goes must not depend on the host (which tile runs it may:
/// every tile gives the same bits).
const RULE_WIDTH: usize = 16;

/// Whether `conv`'s forward pass suits reading in place: a stride of 1
/// along the width, and output rows that fill tiles of [`RULE_WIDTH`] with
/// at most one value in eight wasted, or a whole number of 8-wide tiles
/// (small maps, on a 12 × 8 tile). The bits are the same either way.
pub(crate) fn suits(conv: &Conv2d) -> bool {
    conv.window.stride[1] == 1
        && (fills_wide_tiles(conv)
            || conv
                .sizes()
                .is_some_and(|s| s.output[1] > 0 && s.output[1].is_multiple_of(8)))
}

/// Floats of scratch [`conv2d_in_place`] and [`input_grad_in_place`] need
/// per thread (a padded image) and once (packed and flipped weights), at
/// most.
pub(crate) fn scratch(conv: &Conv2d) -> Option<usize> {
    let own = |conv: &Conv2d| {
        let s = conv.sizes()?;
        let weights = conv.out_channels.checked_add(16)?.checked_mul(s.patch)?;
        padded_len(conv)?.checked_add(weights)
    };
    let input_grad = match transposed(conv) {
        // The flipped weights, and the transposed convolution's own.
        Some(t) => own(&t)?.checked_add(conv.sizes()?.weight_len)?,
        None => 0,
    };
    own(conv)?.checked_add(input_grad)
}

/// Floats of one padded image, with a tile's width of slack after it (a
/// tile at the end of the last row reads past the row, values it discards).
fn padded_len(conv: &Conv2d) -> Option<usize> {
    let [hp, wp] = conv.sizes()?.padded;
    conv.window
        .channels
        .checked_mul(hp)?
        .checked_mul(wp)?
        .checked_add(16)
}

/// What every image's pass shares: the geometry, the packed weights and
/// where each depth's values start.
struct Plan<'c> {
    conv: &'c Conv2d,
    weights: Vec<f32>,
    offsets: Vec<usize>,
    padded_len: usize,
}

fn run<K: Micro>(
    conv: &Conv2d,
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    out: &mut [f32],
) -> bool {
    debug_assert!(K::NR <= RULE_WIDTH && K::MR * K::NR <= 16 * 16);
    if !suits(conv) {
        return false;
    }
    let s = conv.sizes().expect("checked by `suits`");
    let win = &conv.window;
    let (o, k, l) = (conv.out_channels, s.patch, s.positions);
    let [oh, ow] = s.output;
    let [kh, kw] = win.kernel;
    let [hp, wp] = s.padded;
    // Where depth (c, i, j)'s values start, from an output row's start.
    let offsets: Vec<usize> = (0..k)
        .map(|p| {
            let (c, tap) = (p / (kh * kw), p % (kh * kw));
            (c * hp + (tap / kw) * win.dilation[0]) * wp + (tap % kw) * win.dilation[1]
        })
        .collect();
    let plan = Plan {
        conv,
        weights: packed_weights(MatRef::row_major(w, o, k), K::MR),
        padded_len: padded_len(conv).expect("checked by `sizes`"),
        offsets,
    };
    let last_read = plan.offsets.last().map_or(0, |&o| o)
        + (oh - 1) * win.stride[0] * wp
        + ow.next_multiple_of(K::NR);
    assert!(
        last_read <= plan.padded_len,
        "tiles read inside the padded image"
    );
    for_each_chunk_mut(&mut out[..s.output_len], (o * l).max(1), |n, dst| {
        for (ch, plane) in dst.chunks_exact_mut(l.max(1)).enumerate() {
            plane.fill(bias.map_or(0.0, |b| b[ch]));
        }
        one_image::<K>(&plan, &x[n * s.image..(n + 1) * s.image], dst);
    });
    true
}

/// One image's outputs `dst` (`[O, oh·ow]`, starting at their biases) from
/// a zero-padded copy of `image`, tile by tile.
fn one_image<K: Micro>(plan: &Plan<'_>, image: &[f32], dst: &mut [f32]) {
    let conv = plan.conv;
    let win = &conv.window;
    let s = conv.sizes().expect("checked by `suits`");
    let (o, k, l) = (conv.out_channels, s.patch, s.positions);
    let [oh, ow] = s.output;
    let [hp, wp] = s.padded;
    // The padded channels, then a tile's width of slack (zero).
    let mut padded = vec![0.0f32; plan.padded_len];
    let plane = win.input[0] * win.input[1];
    for (c, out) in padded
        .chunks_exact_mut((hp * wp).max(1))
        .take(win.channels)
        .enumerate()
    {
        pad_plane(win, &image[c * plane..(c + 1) * plane], out);
    }
    let mut edge = [0.0f32; 16 * 16];
    for i0 in (0..o).step_by(K::MR) {
        let a = PanelA {
            ptr: plan.weights[i0 * k..].as_ptr(),
            rs: 1,
            cs: K::MR,
        };
        let rows = K::MR.min(o - i0);
        for oy in 0..oh {
            let row = oy * win.stride[0] * wp;
            for x0 in (0..ow).step_by(K::NR) {
                let b = PanelB {
                    ptr: padded[row + x0..].as_ptr(),
                    offsets: Some(plan.offsets.as_ptr()),
                };
                let cols = K::NR.min(ow - x0);
                let at = dst[i0 * l + oy * ow + x0..].as_mut_ptr();
                // SAFETY: A's panel holds k depths of MR rows (packed, zero
                // past o); B reads NR values at each depth's offset inside
                // `padded` (`last_read` checked by `run`); the tile's
                // `rows × cols` lie inside this image's output (row stride
                // l); `isa::active` chose K for this CPU.
                unsafe {
                    if rows == K::MR && cols == K::NR {
                        K::tile(k, a, b, at, l, false);
                    } else {
                        edge_tile::<K>(k, a, b, at, l, rows, cols, false, &mut edge);
                    }
                }
            }
        }
    }
}

/// The weights `[O, K]` in panels of `mr` rows over the whole depth,
/// zero past the last row.
fn packed_weights(w: MatRef<'_>, mr: usize) -> Vec<f32> {
    let (o, k) = (w.rows(), w.cols());
    let mut packed = vec![0.0f32; o.next_multiple_of(mr) * k];
    for_each_chunk_mut(&mut packed, (k * mr).max(1), |panel, dst| {
        let r0 = panel * mr;
        pack(&w, r0, mr.min(o - r0), 0, k, mr, dst);
    });
    packed
}
