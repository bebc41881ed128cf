//! Register tiles: `MR × NR` outputs of `C` updated from a panel of `A`
//! (`MR` rows) and a packed panel of `B` (`NR` values per depth).
//!
//! Each output is `c ← fma(a_p, b_p, c)` for p = 0, 1, … in order, starting
//! from `C` or from +0.0; the tile's shape and the vector width only decide
//! how many outputs advance together, never the order one output sums in.
//! That is why every path gives the same bits.

/// `MR` rows of A as a register tile reads them: the value at row `r`,
/// depth `p` is at `ptr + r·rs + p·cs`. A packed panel has `rs = 1`,
/// `cs = MR`; a matrix read in place has its own strides.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PanelA {
    pub ptr: *const f32,
    pub rs: usize,
    pub cs: usize,
}

/// `kc` depths of B as a register tile reads them: the `NR` values of depth
/// `p` start at `ptr + p·NR` (a packed panel) or, given `offsets`, at
/// `ptr + offsets[p]` (rows gathered in place, e.g. from a padded image).
#[derive(Debug, Clone, Copy)]
pub(crate) struct PanelB {
    pub ptr: *const f32,
    pub offsets: Option<*const usize>,
}

impl PanelB {
    /// A packed panel.
    pub fn packed(ptr: *const f32) -> PanelB {
        PanelB { ptr, offsets: None }
    }

    /// Where depth `p`'s values start, for tiles `nr` wide.
    ///
    /// # Safety
    /// `p` is one of the panel's depths.
    #[inline(always)]
    unsafe fn at(&self, p: usize, nr: usize) -> *const f32 {
        // SAFETY: the caller's promise.
        unsafe {
            match self.offsets {
                Some(offsets) => self.ptr.add(*offsets.add(p)),
                None => self.ptr.add(p * nr),
            }
        }
    }
}

/// A register tile for one instruction set.
pub(crate) trait Micro {
    /// Rows of the tile.
    const MR: usize;
    /// Columns of the tile.
    const NR: usize;

    /// Update the full tile at `c` (row stride `ldc`) from `kc` depths of
    /// the panels `a` and `b`, starting from zero when `fresh`.
    ///
    /// # Safety
    /// `a` reads `MR` rows and `kc` depths; `b` reads `NR` values at each of
    /// `kc` depths; `c` points at `MR` rows of `NR` writable values `ldc`
    /// apart; the CPU has the instruction set the implementation needs.
    unsafe fn tile(kc: usize, a: PanelA, b: PanelB, c: *mut f32, ldc: usize, fresh: bool);
}

/// A tile cut by C's edge: through a full-size buffer.
///
/// # Safety
/// As for [`Micro::tile`], with only `rows × cols` of the tile inside C.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn edge_tile<K: Micro>(
    kc: usize,
    a: PanelA,
    b: PanelB,
    c: *mut f32,
    ldc: usize,
    rows: usize,
    cols: usize,
    fresh: bool,
    buf: &mut [f32],
) {
    let nr = K::NR;
    for r in 0..rows {
        for j in 0..cols {
            // SAFETY: (r, j) is inside C's part of the tile.
            buf[r * nr + j] = unsafe { *c.add(r * ldc + j) };
        }
    }
    // SAFETY: `buf` is a full MR × NR tile with row stride NR.
    unsafe { K::tile(kc, a, b, buf.as_mut_ptr(), nr, fresh) };
    for r in 0..rows {
        for j in 0..cols {
            // SAFETY: as above.
            unsafe { *c.add(r * ldc + j) = buf[r * nr + j] };
        }
    }
}

/// Any CPU: scalar `mul_add`, 4 × 8.
pub(crate) struct Portable;

impl Micro for Portable {
    const MR: usize = 4;
    const NR: usize = 8;

    unsafe fn tile(kc: usize, a: PanelA, b: PanelB, c: *mut f32, ldc: usize, fresh: bool) {
        let mut acc = [[0.0f32; 8]; 4];
        if !fresh {
            for (r, row) in acc.iter_mut().enumerate() {
                for (j, v) in row.iter_mut().enumerate() {
                    // SAFETY: inside the caller's tile.
                    *v = unsafe { *c.add(r * ldc + j) };
                }
            }
        }
        for p in 0..kc {
            // SAFETY: the caller guarantees NR values of B at each depth.
            let b = unsafe { std::slice::from_raw_parts(b.at(p, Self::NR), Self::NR) };
            for (r, row) in acc.iter_mut().enumerate() {
                // SAFETY: row r < MR, depth p < kc: inside the caller's panel.
                let av = unsafe { *a.ptr.add(r * a.rs + p * a.cs) };
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

    unsafe fn tile(kc: usize, a: PanelA, b: PanelB, c: *mut f32, ldc: usize, fresh: bool) {
        let packed_a = a.rs == 1 && a.cs == Self::MR;
        // SAFETY: forwarded from the caller, who checked the CPU (isa::active).
        unsafe {
            match (packed_a, b.offsets.is_some()) {
                (true, false) => avx2_6x16::<true, false>(kc, a, b, c, ldc, fresh),
                (false, false) => avx2_6x16::<false, false>(kc, a, b, c, ldc, fresh),
                (true, true) => avx2_6x16::<true, true>(kc, a, b, c, ldc, fresh),
                (false, true) => avx2_6x16::<false, true>(kc, a, b, c, ldc, fresh),
            }
        }
    }
}

/// The AVX2 tile, for a packed panel of A (`PACKED`: one pointer, fixed
/// offsets) or one read in place (six row pointers stepping `cs`), and a
/// packed panel of B or one gathered at offsets (`GATHER`).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn avx2_6x16<const PACKED: bool, const GATHER: bool>(
    kc: usize,
    a: PanelA,
    b: PanelB,
    c: *mut f32,
    ldc: usize,
    fresh: bool,
) {
    use std::arch::x86_64::*;
    let mut acc = [[_mm256_setzero_ps(); 2]; 6];
    let rows: [*const f32; 6] = std::array::from_fn(|r| a.ptr.wrapping_add(r * a.rs));
    // SAFETY (whole body): the caller guarantees 6 rows and kc depths at
    // `a`, 16 values at each of kc depths of `b` (offsets given when
    // GATHER), and a 6 × 16 tile at `c` with row stride `ldc`.
    unsafe {
        if !fresh {
            for (r, lanes) in acc.iter_mut().enumerate() {
                lanes[0] = _mm256_loadu_ps(c.add(r * ldc));
                lanes[1] = _mm256_loadu_ps(c.add(r * ldc + 8));
            }
        }
        let offsets = b.offsets.unwrap_or(std::ptr::null());
        for p in 0..kc {
            let bp = if GATHER {
                b.ptr.add(*offsets.add(p))
            } else {
                b.ptr.add(p * 16)
            };
            let b0 = _mm256_loadu_ps(bp);
            let b1 = _mm256_loadu_ps(bp.add(8));
            for (r, lanes) in acc.iter_mut().enumerate() {
                let at = if PACKED {
                    a.ptr.add(p * 6 + r)
                } else {
                    rows[r].add(p * a.cs)
                };
                let av = _mm256_broadcast_ss(&*at);
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

/// x86-64 with AVX2 and FMA, for rows of 8 outputs (small maps read in
/// place): 12 × 8, twelve 8-lane accumulators.
#[cfg(target_arch = "x86_64")]
pub(crate) struct Avx2Fma12x8;

#[cfg(target_arch = "x86_64")]
impl Micro for Avx2Fma12x8 {
    const MR: usize = 12;
    const NR: usize = 8;

    unsafe fn tile(kc: usize, a: PanelA, b: PanelB, c: *mut f32, ldc: usize, fresh: bool) {
        // SAFETY: forwarded from the caller, who checked the CPU (isa::active).
        unsafe { avx2_12x8(kc, a, b, c, ldc, fresh) }
    }
}

/// The 12 × 8 AVX2 tile, for any panel of A and either kind of B.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn avx2_12x8(kc: usize, a: PanelA, b: PanelB, c: *mut f32, ldc: usize, fresh: bool) {
    use std::arch::x86_64::*;
    let mut acc = [_mm256_setzero_ps(); 12];
    // SAFETY (whole body): the caller guarantees 12 rows and kc depths at
    // `a`, 8 values at each of kc depths of `b`, and a 12 × 8 tile at `c`
    // with row stride `ldc`.
    unsafe {
        if !fresh {
            for (r, lanes) in acc.iter_mut().enumerate() {
                *lanes = _mm256_loadu_ps(c.add(r * ldc));
            }
        }
        for p in 0..kc {
            let bv = _mm256_loadu_ps(b.at(p, 8));
            let at = a.ptr.add(p * a.cs);
            for (r, lanes) in acc.iter_mut().enumerate() {
                let av = _mm256_broadcast_ss(&*at.add(r * a.rs));
                *lanes = _mm256_fmadd_ps(av, bv, *lanes);
            }
        }
        for (r, lanes) in acc.iter().enumerate() {
            _mm256_storeu_ps(c.add(r * ldc), *lanes);
        }
    }
}

/// x86-64 with AVX-512F: 6 × 32, twelve 16-lane accumulators.
#[cfg(target_arch = "x86_64")]
pub(crate) struct Avx512;

#[cfg(target_arch = "x86_64")]
impl Micro for Avx512 {
    const MR: usize = 6;
    const NR: usize = 32;

    unsafe fn tile(kc: usize, a: PanelA, b: PanelB, c: *mut f32, ldc: usize, fresh: bool) {
        let packed_a = a.rs == 1 && a.cs == Self::MR;
        // SAFETY: forwarded from the caller, who checked the CPU (isa::active).
        unsafe {
            match (packed_a, b.offsets.is_some()) {
                (true, false) => avx512_6x32::<true, false>(kc, a, b, c, ldc, fresh),
                (false, false) => avx512_6x32::<false, false>(kc, a, b, c, ldc, fresh),
                (true, true) => avx512_6x32::<true, true>(kc, a, b, c, ldc, fresh),
                (false, true) => avx512_6x32::<false, true>(kc, a, b, c, ldc, fresh),
            }
        }
    }
}

/// The AVX-512 tile: [`avx2_6x16`] with vectors twice as wide. Each output
/// still takes its fused products in depth order, so the bits are those of
/// every other tile.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn avx512_6x32<const PACKED: bool, const GATHER: bool>(
    kc: usize,
    a: PanelA,
    b: PanelB,
    c: *mut f32,
    ldc: usize,
    fresh: bool,
) {
    use std::arch::x86_64::*;
    let mut acc = [[_mm512_setzero_ps(); 2]; 6];
    let rows: [*const f32; 6] = std::array::from_fn(|r| a.ptr.wrapping_add(r * a.rs));
    // SAFETY (whole body): the caller guarantees 6 rows and kc depths at
    // `a`, 32 values at each of kc depths of `b` (offsets given when
    // GATHER), and a 6 × 32 tile at `c` with row stride `ldc`.
    unsafe {
        if !fresh {
            for (r, lanes) in acc.iter_mut().enumerate() {
                lanes[0] = _mm512_loadu_ps(c.add(r * ldc));
                lanes[1] = _mm512_loadu_ps(c.add(r * ldc + 16));
            }
        }
        let offsets = b.offsets.unwrap_or(std::ptr::null());
        for p in 0..kc {
            let bp = if GATHER {
                b.ptr.add(*offsets.add(p))
            } else {
                b.ptr.add(p * 32)
            };
            let b0 = _mm512_loadu_ps(bp);
            let b1 = _mm512_loadu_ps(bp.add(16));
            for (r, lanes) in acc.iter_mut().enumerate() {
                let at = if PACKED {
                    a.ptr.add(p * 6 + r)
                } else {
                    rows[r].add(p * a.cs)
                };
                let av = _mm512_set1_ps(*at);
                lanes[0] = _mm512_fmadd_ps(av, b0, lanes[0]);
                lanes[1] = _mm512_fmadd_ps(av, b1, lanes[1]);
            }
        }
        for (r, lanes) in acc.iter().enumerate() {
            _mm512_storeu_ps(c.add(r * ldc), lanes[0]);
            _mm512_storeu_ps(c.add(r * ldc + 16), lanes[1]);
        }
    }
}

/// x86-64 with AVX-512F, for convolutions read in place: 12 × 16, one
/// 16-lane accumulator per row, so an output row of 16 (or a little
/// fewer) positions fills the tile where [`Avx512`]'s 32 would half waste.
#[cfg(target_arch = "x86_64")]
pub(crate) struct Avx512x12x16;

#[cfg(target_arch = "x86_64")]
impl Micro for Avx512x12x16 {
    const MR: usize = 12;
    const NR: usize = 16;

    unsafe fn tile(kc: usize, a: PanelA, b: PanelB, c: *mut f32, ldc: usize, fresh: bool) {
        // SAFETY: forwarded from the caller, who checked the CPU (isa::active).
        unsafe { avx512_12x16(kc, a, b, c, ldc, fresh) }
    }
}

/// The 12 × 16 AVX-512 tile, for any panel of A and either kind of B:
/// [`avx2_12x8`] with vectors twice as wide, the same bits.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn avx512_12x16(kc: usize, a: PanelA, b: PanelB, c: *mut f32, ldc: usize, fresh: bool) {
    use std::arch::x86_64::*;
    let mut acc = [_mm512_setzero_ps(); 12];
    // SAFETY (whole body): the caller guarantees 12 rows and kc depths at
    // `a`, 16 values at each of kc depths of `b`, and a 12 × 16 tile at `c`
    // with row stride `ldc`.
    unsafe {
        if !fresh {
            for (r, lanes) in acc.iter_mut().enumerate() {
                *lanes = _mm512_loadu_ps(c.add(r * ldc));
            }
        }
        for p in 0..kc {
            let bv = _mm512_loadu_ps(b.at(p, 16));
            let at = a.ptr.add(p * a.cs);
            for (r, lanes) in acc.iter_mut().enumerate() {
                let av = _mm512_set1_ps(*at.add(r * a.rs));
                *lanes = _mm512_fmadd_ps(av, bv, *lanes);
            }
        }
        for (r, lanes) in acc.iter().enumerate() {
            _mm512_storeu_ps(c.add(r * ldc), *lanes);
        }
    }
}
