//! Packing: a block of a matrix copied into the panels register tiles
//! read (for each depth, `width` consecutive values of consecutive rows).
//!
//! Pure data movement, so every path gives the same bits; only the speed
//! differs. A matrix whose rows are contiguous along the depth (the
//! transposed operand of a weight gradient) needs a transpose: on x86-64
//! with AVX2 it runs as 8 × 8 register transposes.

use crate::gemm::MatRef;
#[cfg(target_arch = "x86_64")]
use crate::isa::active;

/// Panels of `width` rows of `m[r0..r0+rows, p0..p0+kc]`: for each depth,
/// `width` consecutive values, zero past the last row. (B is packed as the
/// rows of its transpose.)
pub(crate) fn pack(
    m: &MatRef<'_>,
    r0: usize,
    rows: usize,
    p0: usize,
    kc: usize,
    width: usize,
    out: &mut [f32],
) {
    match width {
        4 => pack_panels::<4>(m, r0, rows, p0, kc, out),
        6 => pack_panels::<6>(m, r0, rows, p0, kc, out),
        8 => pack_panels::<8>(m, r0, rows, p0, kc, out),
        12 => pack_panels::<12>(m, r0, rows, p0, kc, out),
        16 => pack_panels::<16>(m, r0, rows, p0, kc, out),
        32 => pack_panels::<32>(m, r0, rows, p0, kc, out),
        _ => unreachable!("register tiles are 4, 6, 8, 12, 16 or 32 wide"),
    }
}

/// [`pack`] for panels `W` wide: fixed-size moves the compiler turns into
/// vector loads and stores instead of a copy call per depth.
fn pack_panels<const W: usize>(
    m: &MatRef<'_>,
    r0: usize,
    rows: usize,
    p0: usize,
    kc: usize,
    out: &mut [f32],
) {
    for (panel, i0) in (0..rows).step_by(W).enumerate() {
        let dst = &mut out[panel * W * kc..(panel + 1) * W * kc];
        let height = W.min(rows - i0);
        if m.row_stride == 1 {
            // Each depth's values are contiguous: one move of W per depth.
            for (p, col) in dst.chunks_exact_mut(W).enumerate() {
                let start = (p0 + p) * m.col_stride + r0 + i0;
                if height == W {
                    let src: &[f32; W] = m.data[start..start + W].try_into().expect("W values");
                    col.copy_from_slice(src);
                } else {
                    col[..height].copy_from_slice(&m.data[start..start + height]);
                    col[height..].fill(0.0);
                }
            }
        } else if m.col_stride == 1 {
            // Each row's depths are contiguous: transpose blocks of 8 depths.
            #[cfg(target_arch = "x86_64")]
            if matches!(W, 6 | 8 | 16) && active().avx2() {
                transpose_rows_avx2::<W>(m, r0 + i0, height, p0, kc, dst);
                continue;
            }
            transpose_rows::<W>(m, r0 + i0, height, p0, kc, dst);
        } else {
            for (p, col) in dst.chunks_exact_mut(W).enumerate() {
                for (r, v) in col.iter_mut().enumerate() {
                    *v = if r < height {
                        m.at(r0 + i0 + r, p0 + p)
                    } else {
                        0.0
                    };
                }
            }
        }
    }
}

/// `height` rows (from `row`) of a matrix whose rows are contiguous, depths
/// `p0..p0+kc`, written depth-major into `dst` (`W` values per depth, zero
/// past `height`).
fn transpose_rows<const W: usize>(
    m: &MatRef<'_>,
    row: usize,
    height: usize,
    p0: usize,
    kc: usize,
    dst: &mut [f32],
) {
    const B: usize = 8;
    let full = kc / B * B;
    let mut block = [[0.0f32; W]; B];
    for p in (0..full).step_by(B) {
        for r in 0..height {
            let start = (row + r) * m.row_stride + p0 + p;
            let src: &[f32; B] = m.data[start..start + B].try_into().expect("B values");
            for (line, &v) in block.iter_mut().zip(src) {
                line[r] = v;
            }
        }
        for (q, line) in block.iter().enumerate() {
            dst[(p + q) * W..(p + q + 1) * W].copy_from_slice(line);
        }
    }
    for p in full..kc {
        let col = &mut dst[p * W..(p + 1) * W];
        for (r, v) in col.iter_mut().enumerate() {
            *v = if r < height {
                m.data[(row + r) * m.row_stride + p0 + p]
            } else {
                0.0
            };
        }
    }
}

/// [`transpose_rows`] on AVX2, for panels 6, 8 or 16 wide: each block of 8
/// depths by up to 8 rows transposed in registers.
#[cfg(target_arch = "x86_64")]
fn transpose_rows_avx2<const W: usize>(
    m: &MatRef<'_>,
    row: usize,
    height: usize,
    p0: usize,
    kc: usize,
    dst: &mut [f32],
) {
    let full = kc / 8 * 8;
    let stride = m.row_stride;
    let last = (row + height - 1) * stride + p0 + full;
    assert!(height <= W && dst.len() >= kc * W && (full == 0 || m.data.len() >= last));
    let zero = [0.0f32; 8];
    for half in 0..W.div_ceil(8) {
        let lanes = 8.min(W - half * 8);
        let mut sources = [zero.as_ptr(); 8];
        for (r, src) in sources.iter_mut().enumerate().take(lanes) {
            let at = half * 8 + r;
            if at < height {
                *src = m.data[(row + at) * stride + p0..].as_ptr();
            }
        }
        let moved = |p: usize, src: *const f32| {
            if src == zero.as_ptr() {
                src
            } else {
                src.wrapping_add(p)
            }
        };
        for p in (0..full).step_by(8) {
            let rows = sources.map(|src| moved(p, src));
            // SAFETY: every source row holds the 8 depths from `p` (checked
            // above: rows below `height` reach `last`; the rest read `zero`);
            // the 8 depths' `lanes` values lie inside `dst` (kc·W values);
            // `isa::active` found AVX2.
            unsafe { transpose_8x8(rows, dst[p * W + half * 8..].as_mut_ptr(), W, lanes) };
        }
    }
    for p in full..kc {
        let col = &mut dst[p * W..(p + 1) * W];
        for (r, v) in col.iter_mut().enumerate() {
            *v = if r < height {
                m.data[(row + r) * stride + p0 + p]
            } else {
                0.0
            };
        }
    }
}

/// Eight rows of 8 values (`rows[r]`) written as 8 columns of their first
/// `lanes` (8 or 6) rows: `out[q·ld + r] = rows[r][q]` for `r < lanes`.
///
/// # Safety
/// Each row pointer reads 8 floats; `out` writes 7·ld + lanes; the CPU has
/// AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn transpose_8x8(rows: [*const f32; 8], out: *mut f32, ld: usize, lanes: usize) {
    use std::arch::x86_64::*;
    // SAFETY (whole body): the caller's promise.
    unsafe {
        let r = rows.map(|p| _mm256_loadu_ps(p));
        let t0 = _mm256_unpacklo_ps(r[0], r[1]);
        let t1 = _mm256_unpackhi_ps(r[0], r[1]);
        let t2 = _mm256_unpacklo_ps(r[2], r[3]);
        let t3 = _mm256_unpackhi_ps(r[2], r[3]);
        let t4 = _mm256_unpacklo_ps(r[4], r[5]);
        let t5 = _mm256_unpackhi_ps(r[4], r[5]);
        let t6 = _mm256_unpacklo_ps(r[6], r[7]);
        let t7 = _mm256_unpackhi_ps(r[6], r[7]);
        let u0 = _mm256_shuffle_ps::<0x44>(t0, t2);
        let u1 = _mm256_shuffle_ps::<0xEE>(t0, t2);
        let u2 = _mm256_shuffle_ps::<0x44>(t1, t3);
        let u3 = _mm256_shuffle_ps::<0xEE>(t1, t3);
        let u4 = _mm256_shuffle_ps::<0x44>(t4, t6);
        let u5 = _mm256_shuffle_ps::<0xEE>(t4, t6);
        let u6 = _mm256_shuffle_ps::<0x44>(t5, t7);
        let u7 = _mm256_shuffle_ps::<0xEE>(t5, t7);
        let columns = [
            _mm256_permute2f128_ps::<0x20>(u0, u4),
            _mm256_permute2f128_ps::<0x20>(u1, u5),
            _mm256_permute2f128_ps::<0x20>(u2, u6),
            _mm256_permute2f128_ps::<0x20>(u3, u7),
            _mm256_permute2f128_ps::<0x31>(u0, u4),
            _mm256_permute2f128_ps::<0x31>(u1, u5),
            _mm256_permute2f128_ps::<0x31>(u2, u6),
            _mm256_permute2f128_ps::<0x31>(u3, u7),
        ];
        if lanes == 8 {
            for (q, column) in columns.into_iter().enumerate() {
                _mm256_storeu_ps(out.add(q * ld), column);
            }
        } else {
            // Six lanes (a 6-wide panel): four, then two. (A masked store
            // would do, but it is microcoded and slow on some CPUs.)
            debug_assert_eq!(lanes, 6);
            for (q, column) in columns.into_iter().enumerate() {
                let at = out.add(q * ld);
                _mm_storeu_ps(at, _mm256_castps256_ps128(column));
                _mm_storel_epi64(
                    at.add(4).cast(),
                    _mm_castps_si128(_mm256_extractf128_ps::<1>(column)),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::isa::force_portable;

    fn bits(v: &[f32]) -> Vec<u32> {
        v.iter().map(|x| x.to_bits()).collect()
    }

    #[test]
    fn transposing_packs_give_the_portable_bits() {
        let (rows, depth) = (37, 300);
        let data: Vec<f32> = (0..rows * depth).map(|i| i as f32).collect();
        let m = MatRef::row_major(&data, rows, depth).t().t();
        let cases = [
            (0, 16, 0, 256),
            (16, 16, 256, 44),
            (32, 5, 3, 13),
            (30, 7, 0, 7),
        ];
        for width in [6, 8, 16] {
            for (r0, height, p0, kc) in cases {
                let height: usize = height.min(width);
                let packed = |portable: bool| {
                    force_portable(portable);
                    // One panel, and a sentinel after it that must stay.
                    let mut out = vec![f32::NAN; kc * width + 2];
                    pack(&m, r0, height, p0, kc, width, &mut out[..kc * width]);
                    force_portable(false);
                    out
                };
                let fast = packed(false);
                let what = format!("width {width}, rows {r0}+{height}, depths {p0}+{kc}");
                assert_eq!(bits(&fast), bits(&packed(true)), "{what}");
                assert!(fast[kc * width..].iter().all(|v| v.is_nan()), "{what}");
                for p in 0..kc {
                    for r in 0..width {
                        let want = if r < height {
                            data[(r0 + r) * depth + p0 + p]
                        } else {
                            0.0
                        };
                        assert_eq!(fast[p * width + r], want, "{what}");
                    }
                }
            }
        }
    }
}
