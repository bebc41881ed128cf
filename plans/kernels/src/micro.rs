//! Register tiles: `MR × NR` outputs of `C` updated from packed panels of
//! `A` (`MR` values per depth) and `B` (`NR` values per depth).
//!
//! Each output is `c ← fma(a_p, b_p, c)` for p = 0, 1, … in order, starting
//! from `C` or from +0.0; the tile's shape and the vector width only decide
//! how many outputs advance together, never the order one output sums in.
//! That is why every path gives the same bits.

/// A register tile for one instruction set.
pub(crate) trait Micro {
    /// Rows of the tile.
    const MR: usize;
    /// Columns of the tile.
    const NR: usize;

    /// Update the full tile at `c` (row stride `ldc`) from `kc` depths of the
    /// packed panels `ap` (`kc·MR` values) and `bp` (`kc·NR` values),
    /// starting from zero when `fresh`.
    ///
    /// # Safety
    /// `ap` and `bp` hold at least `kc·MR` and `kc·NR` values; `c` points at
    /// `MR` rows of `NR` writable values `ldc` apart; the CPU has the
    /// instruction set the implementation needs.
    unsafe fn tile(kc: usize, ap: *const f32, bp: *const f32, c: *mut f32, ldc: usize, fresh: bool);
}

/// Any CPU: scalar `mul_add`, 4 × 8.
pub(crate) struct Portable;

impl Micro for Portable {
    const MR: usize = 4;
    const NR: usize = 8;

    unsafe fn tile(
        kc: usize,
        ap: *const f32,
        bp: *const f32,
        c: *mut f32,
        ldc: usize,
        fresh: bool,
    ) {
        // SAFETY: the caller guarantees the panel lengths and the tile.
        let (ap, bp) = unsafe {
            (
                std::slice::from_raw_parts(ap, kc * Self::MR),
                std::slice::from_raw_parts(bp, kc * Self::NR),
            )
        };
        let mut acc = [[0.0f32; 8]; 4];
        if !fresh {
            for (r, row) in acc.iter_mut().enumerate() {
                for (j, v) in row.iter_mut().enumerate() {
                    // SAFETY: inside the caller's tile.
                    *v = unsafe { *c.add(r * ldc + j) };
                }
            }
        }
        for (a, b) in ap.chunks_exact(Self::MR).zip(bp.chunks_exact(Self::NR)) {
            for (row, &av) in acc.iter_mut().zip(a) {
                for (v, &bv) in row.iter_mut().zip(b) {
                    *v = av.mul_add(bv, *v);
                }
            }
        }
        for (r, row) in acc.iter().enumerate() {
            for (j, &v) in row.iter().enumerate() {
                // SAFETY: inside the caller's tile.
                unsafe { *c.add(r * ldc + j) = v };
            }
        }
    }
}

/// x86-64 with AVX2 and FMA: 6 × 16, twelve 8-lane accumulators.
#[cfg(target_arch = "x86_64")]
pub(crate) struct Avx2Fma;

#[cfg(target_arch = "x86_64")]
impl Micro for Avx2Fma {
    const MR: usize = 6;
    const NR: usize = 16;

    unsafe fn tile(
        kc: usize,
        ap: *const f32,
        bp: *const f32,
        c: *mut f32,
        ldc: usize,
        fresh: bool,
    ) {
        // SAFETY: forwarded from the caller, who checked the CPU (isa::active).
        unsafe { avx2_6x16(kc, ap, bp, c, ldc, fresh) }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn avx2_6x16(
    kc: usize,
    ap: *const f32,
    bp: *const f32,
    c: *mut f32,
    ldc: usize,
    fresh: bool,
) {
    use std::arch::x86_64::*;
    let mut acc = [[_mm256_setzero_ps(); 2]; 6];
    // SAFETY (whole body): the caller guarantees kc·6 values at `ap`, kc·16
    // at `bp`, and a 6 × 16 tile at `c` with row stride `ldc`.
    unsafe {
        if !fresh {
            for (r, lanes) in acc.iter_mut().enumerate() {
                lanes[0] = _mm256_loadu_ps(c.add(r * ldc));
                lanes[1] = _mm256_loadu_ps(c.add(r * ldc + 8));
            }
        }
        for p in 0..kc {
            let b0 = _mm256_loadu_ps(bp.add(p * 16));
            let b1 = _mm256_loadu_ps(bp.add(p * 16 + 8));
            let a = ap.add(p * 6);
            for (r, lanes) in acc.iter_mut().enumerate() {
                let av = _mm256_broadcast_ss(&*a.add(r));
                lanes[0] = _mm256_fmadd_ps(av, b0, lanes[0]);
                lanes[1] = _mm256_fmadd_ps(av, b1, lanes[1]);
            }
        }
        for (r, lanes) in acc.iter().enumerate() {
            _mm256_storeu_ps(c.add(r * ldc), lanes[0]);
            _mm256_storeu_ps(c.add(r * ldc + 8), lanes[1]);
        }
    }
}
