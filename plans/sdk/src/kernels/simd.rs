//! Four f32 lanes, the one vector type the kernels use.
//!
//! In wasm it is simd128's `v128`; on x86_64 it is SSE's `__m128` (part of the
//! baseline, so no run-time detection); elsewhere plain arrays. Only lane-wise
//! IEEE additions and multiplications are exposed — never a fused
//! multiply-add — so every build computes the same bits.

// `add`/`mul` are lane-wise methods, deliberately not operator traits.
#![allow(clippy::should_implement_trait)]

#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
mod imp {
    use core::arch::wasm32::*;

    /// Four f32 lanes.
    #[derive(Clone, Copy)]
    pub struct F32x4(v128);

    impl F32x4 {
        #[inline(always)]
        pub fn splat(v: f32) -> Self {
            F32x4(f32x4_splat(v))
        }
        /// Loads four floats from `s[0..4]`.
        #[inline(always)]
        pub fn load(s: &[f32]) -> Self {
            assert!(s.len() >= 4);
            // SAFETY: four readable floats were just checked; v128_load is unaligned.
            F32x4(unsafe { v128_load(s.as_ptr() as *const v128) })
        }
        /// Stores four floats into `s[0..4]`.
        #[inline(always)]
        pub fn store(self, s: &mut [f32]) {
            assert!(s.len() >= 4);
            // SAFETY: four writable floats were just checked; v128_store is unaligned.
            unsafe { v128_store(s.as_mut_ptr() as *mut v128, self.0) }
        }
        #[inline(always)]
        pub fn add(self, o: Self) -> Self {
            F32x4(f32x4_add(self.0, o.0))
        }
        /// Lane `L` in all four lanes.
        #[inline(always)]
        pub fn lane<const L: usize>(self) -> Self {
            F32x4(f32x4_splat(f32x4_extract_lane::<L>(self.0)))
        }
        /// The transpose of the 4×4 matrix whose rows are `r`.
        #[inline(always)]
        pub fn transpose(r: [Self; 4]) -> [Self; 4] {
            let t0 = i32x4_shuffle::<0, 4, 1, 5>(r[0].0, r[1].0);
            let t1 = i32x4_shuffle::<2, 6, 3, 7>(r[0].0, r[1].0);
            let t2 = i32x4_shuffle::<0, 4, 1, 5>(r[2].0, r[3].0);
            let t3 = i32x4_shuffle::<2, 6, 3, 7>(r[2].0, r[3].0);
            [
                F32x4(i32x4_shuffle::<0, 1, 4, 5>(t0, t2)),
                F32x4(i32x4_shuffle::<2, 3, 6, 7>(t0, t2)),
                F32x4(i32x4_shuffle::<0, 1, 4, 5>(t1, t3)),
                F32x4(i32x4_shuffle::<2, 3, 6, 7>(t1, t3)),
            ]
        }
        #[inline(always)]
        pub fn mul(self, o: Self) -> Self {
            F32x4(f32x4_mul(self.0, o.0))
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod imp {
    use core::arch::x86_64::*;

    /// Four f32 lanes.
    #[derive(Clone, Copy)]
    pub struct F32x4(__m128);

    impl F32x4 {
        #[inline(always)]
        pub fn splat(v: f32) -> Self {
            // SAFETY: SSE is part of the x86_64 baseline.
            F32x4(unsafe { _mm_set1_ps(v) })
        }
        /// Loads four floats from `s[0..4]`.
        #[inline(always)]
        pub fn load(s: &[f32]) -> Self {
            assert!(s.len() >= 4);
            // SAFETY: four readable floats were just checked; loadu is unaligned.
            F32x4(unsafe { _mm_loadu_ps(s.as_ptr()) })
        }
        /// Stores four floats into `s[0..4]`.
        #[inline(always)]
        pub fn store(self, s: &mut [f32]) {
            assert!(s.len() >= 4);
            // SAFETY: four writable floats were just checked; storeu is unaligned.
            unsafe { _mm_storeu_ps(s.as_mut_ptr(), self.0) }
        }
        #[inline(always)]
        pub fn add(self, o: Self) -> Self {
            // SAFETY: SSE is part of the x86_64 baseline.
            F32x4(unsafe { _mm_add_ps(self.0, o.0) })
        }
        /// The transpose of the 4×4 matrix whose rows are `r`.
        #[inline(always)]
        pub fn transpose(r: [Self; 4]) -> [Self; 4] {
            // SAFETY: SSE is part of the x86_64 baseline.
            unsafe {
                let t0 = _mm_unpacklo_ps(r[0].0, r[1].0);
                let t1 = _mm_unpackhi_ps(r[0].0, r[1].0);
                let t2 = _mm_unpacklo_ps(r[2].0, r[3].0);
                let t3 = _mm_unpackhi_ps(r[2].0, r[3].0);
                [
                    F32x4(_mm_movelh_ps(t0, t2)),
                    F32x4(_mm_movehl_ps(t2, t0)),
                    F32x4(_mm_movelh_ps(t1, t3)),
                    F32x4(_mm_movehl_ps(t3, t1)),
                ]
            }
        }
        /// Lane `L` in all four lanes.
        #[inline(always)]
        pub fn lane<const L: usize>(self) -> Self {
            // SAFETY: SSE is part of the x86_64 baseline.
            F32x4(unsafe {
                match L {
                    0 => _mm_shuffle_ps::<0x00>(self.0, self.0),
                    1 => _mm_shuffle_ps::<0x55>(self.0, self.0),
                    2 => _mm_shuffle_ps::<0xAA>(self.0, self.0),
                    _ => _mm_shuffle_ps::<0xFF>(self.0, self.0),
                }
            })
        }
        #[inline(always)]
        pub fn mul(self, o: Self) -> Self {
            // SAFETY: SSE is part of the x86_64 baseline.
            F32x4(unsafe { _mm_mul_ps(self.0, o.0) })
        }
    }
}

#[cfg(not(any(
    all(target_arch = "wasm32", target_feature = "simd128"),
    target_arch = "x86_64"
)))]
mod imp {
    /// Four f32 lanes.
    #[derive(Clone, Copy)]
    pub struct F32x4([f32; 4]);

    impl F32x4 {
        #[inline(always)]
        pub fn splat(v: f32) -> Self {
            F32x4([v; 4])
        }
        /// Loads four floats from `s[0..4]`.
        #[inline(always)]
        pub fn load(s: &[f32]) -> Self {
            F32x4([s[0], s[1], s[2], s[3]])
        }
        /// Stores four floats into `s[0..4]`.
        #[inline(always)]
        pub fn store(self, s: &mut [f32]) {
            s[..4].copy_from_slice(&self.0);
        }
        #[inline(always)]
        pub fn add(self, o: Self) -> Self {
            F32x4(core::array::from_fn(|i| self.0[i] + o.0[i]))
        }
        /// Lane `L` in all four lanes.
        #[inline(always)]
        pub fn lane<const L: usize>(self) -> Self {
            F32x4([self.0[L]; 4])
        }
        /// The transpose of the 4×4 matrix whose rows are `r`.
        #[inline(always)]
        pub fn transpose(r: [Self; 4]) -> [Self; 4] {
            core::array::from_fn(|i| F32x4(core::array::from_fn(|j| r[j].0[i])))
        }
        #[inline(always)]
        pub fn mul(self, o: Self) -> Self {
            F32x4(core::array::from_fn(|i| self.0[i] * o.0[i]))
        }
    }
}

pub use imp::F32x4;

/// y[i] += a · x[i], four lanes at a time.
#[inline]
pub fn axpy(a: f32, x: &[f32], y: &mut [f32]) {
    let n = x.len().min(y.len());
    let va = F32x4::splat(a);
    let mut i = 0;
    while i + 4 <= n {
        F32x4::load(&y[i..])
            .add(va.mul(F32x4::load(&x[i..])))
            .store(&mut y[i..]);
        i += 4;
    }
    while i < n {
        y[i] += a * x[i];
        i += 1;
    }
}

/// y[i] += x[i], four lanes at a time.
#[inline]
pub fn add_assign(y: &mut [f32], x: &[f32]) {
    let n = x.len().min(y.len());
    let mut i = 0;
    while i + 4 <= n {
        F32x4::load(&y[i..])
            .add(F32x4::load(&x[i..]))
            .store(&mut y[i..]);
        i += 4;
    }
    while i < n {
        y[i] += x[i];
        i += 1;
    }
}

/// dst ← src, four lanes at a time. For the short runs of im2col and
/// packing: in wasm a `copy_from_slice` of unknown length becomes a
/// `memory.copy`, which wasmtime runs as a host call.
#[inline]
pub fn copy(dst: &mut [f32], src: &[f32]) {
    let n = dst.len().min(src.len());
    let mut i = 0;
    while i + 4 <= n {
        F32x4::load(&src[i..]).store(&mut dst[i..]);
        i += 4;
    }
    // Three elements at most; an explicit loop, not a memcpy call.
    #[allow(clippy::manual_memcpy)]
    for k in i..n {
        dst[k] = src[k];
    }
}

/// dst ← 0, four lanes at a time (see [`copy`]).
#[inline]
pub fn zero(dst: &mut [f32]) {
    let zeros = F32x4::splat(0.0);
    let mut i = 0;
    while i + 4 <= dst.len() {
        zeros.store(&mut dst[i..]);
        i += 4;
    }
    for v in &mut dst[i..] {
        *v = 0.0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transpose_swaps_rows_and_columns() {
        let m: Vec<f32> = (0..16).map(|i| i as f32).collect();
        let rows = [0, 1, 2, 3].map(|r| F32x4::load(&m[r * 4..]));
        let mut out = [0.0f32; 16];
        for (r, v) in F32x4::transpose(rows).into_iter().enumerate() {
            v.store(&mut out[r * 4..]);
        }
        for r in 0..4 {
            for c in 0..4 {
                assert_eq!(out[r * 4 + c], m[c * 4 + r]);
            }
        }
    }
}
