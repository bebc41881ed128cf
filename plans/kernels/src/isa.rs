//! Which instruction set the kernels run on.
//!
//! Fused multiply-add is the one rule every path keeps: `a·b + c` is
//! computed exactly and rounded once. x86-64 CPUs with AVX2 and FMA use
//! their vector FMA (16 lanes wide for matrix products where the CPU has
//! AVX-512F); every other CPU uses [`f32::mul_add`], which is a
//! hardware instruction where the target has one (aarch64) and a correctly
//! rounded library `fmaf` where it does not (x86-64 without FMA). Both give
//! the same bits; only the speed differs. Tests force the portable path
//! with [`force_portable`] to check exactly that.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

/// An instruction set the kernels have a path for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isa {
    /// x86-64 with AVX2 and FMA: 8-lane vectors, hardware fused multiply-add.
    Avx2Fma,
    /// x86-64 with AVX-512F as well: matrix products and convolutions
    /// read in place over wide rows on 16-lane vectors (the other kernels
    /// keep their AVX2 paths).
    Avx512,
    /// Any CPU: `f32::mul_add` (hardware FMA where the target has it,
    /// correctly rounded software otherwise), vectorised by the compiler.
    Portable,
}

impl Isa {
    /// Whether the AVX2 and FMA paths may run (every x86-64 path but the
    /// portable one).
    pub fn avx2(self) -> bool {
        matches!(self, Isa::Avx2Fma | Isa::Avx512)
    }

    /// A short name for logs and benchmark reports.
    pub fn name(self) -> &'static str {
        match self {
            Isa::Avx2Fma => "avx2+fma",
            Isa::Avx512 => "avx512f+fma",
            Isa::Portable => {
                if cfg!(target_arch = "aarch64") {
                    "portable (neon fma)"
                } else {
                    "portable (software fma)"
                }
            }
        }
    }
}

static FORCE_PORTABLE: AtomicBool = AtomicBool::new(false);
static FORCE_AVX2: AtomicBool = AtomicBool::new(false);

/// Run every kernel on the portable path from now on (`true`), or go back
/// to the best path this CPU has (`false`). For tests and benchmarks that
/// compare the two; results are the same bits either way.
pub fn force_portable(on: bool) {
    FORCE_PORTABLE.store(on, Ordering::SeqCst);
}

/// Run matrix products and convolutions on the AVX2 tiles even where the
/// CPU has AVX-512
/// (`true`), or go back (`false`): for tests that compare the two on an
/// AVX-512 machine. The same bits either way.
pub fn force_avx2(on: bool) {
    FORCE_AVX2.store(on, Ordering::SeqCst);
}

/// The best instruction set this CPU offers, detected once.
pub fn detected() -> Isa {
    static DETECTED: OnceLock<Isa> = OnceLock::new();
    *DETECTED.get_or_init(detect)
}

/// The instruction set kernels use now: [`detected`] unless forced portable.
pub fn active() -> Isa {
    match detected() {
        _ if FORCE_PORTABLE.load(Ordering::Relaxed) => Isa::Portable,
        Isa::Avx512 if FORCE_AVX2.load(Ordering::Relaxed) => Isa::Avx2Fma,
        isa => isa,
    }
}

#[cfg(target_arch = "x86_64")]
fn detect() -> Isa {
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        if std::arch::is_x86_feature_detected!("avx512f") {
            Isa::Avx512
        } else {
            Isa::Avx2Fma
        }
    } else {
        Isa::Portable
    }
}

#[cfg(not(target_arch = "x86_64"))]
fn detect() -> Isa {
    Isa::Portable
}
