//! Matrix products `C ← A·B` or `C ← C + A·B`, with transposes for free.
//!
//! Every element of `C` is the fused left-to-right sum
//! `fma(a_{k-1}, b_{k-1}, … fma(a_0, b_0, c))` over the inner dimension in
//! order, whatever the tiling, the packing, the thread count or the vector
//! width; that is what makes the product fast *and* the same bits on every
//! node. The work is split into tiles of `C` (rows × columns), each owned by
//! one task: a task packs the panels of `A` and `B` its tile reads, one depth
//! block at a time, and runs register tiles ([`crate::micro`]) over them.

use std::cell::RefCell;
use std::ops::Range;

use crate::isa::active;
use crate::micro::{Micro, PanelA, PanelB, Portable, edge_tile};
use crate::pack::pack;
use crate::parallel::{SharedMut, for_each_chunk_mut, for_each_task, threads};

/// Depth of one packed block of the inner dimension.
const KC: usize = 256;
/// Most rows of C one task owns.
const MB_MAX: usize = 96;
/// Most columns of C one task owns.
const NB_MAX: usize = 512;
/// Products smaller than this many multiply-adds run on one thread: handing
/// them out costs more than it saves.
const SERIAL_FMAS: usize = 1 << 18;

/// A read-only matrix view with arbitrary strides, so transposes cost nothing.
#[derive(Clone, Copy, Debug)]
pub struct MatRef<'a> {
    pub(crate) data: &'a [f32],
    rows: usize,
    cols: usize,
    pub(crate) row_stride: usize,
    pub(crate) col_stride: usize,
}

impl<'a> MatRef<'a> {
    /// A row-major `rows × cols` matrix over `data`, or `None` when `data`
    /// is too short.
    pub fn new(data: &'a [f32], rows: usize, cols: usize) -> Option<Self> {
        (rows.checked_mul(cols)? <= data.len()).then_some(MatRef {
            data,
            rows,
            cols,
            row_stride: cols,
            col_stride: 1,
        })
    }

    /// A row-major `rows × cols` matrix over `data`.
    ///
    /// # Panics
    /// When `data` holds fewer than `rows·cols` values (a caller's bug:
    /// shapes from outside are checked before a view is made).
    pub fn row_major(data: &'a [f32], rows: usize, cols: usize) -> Self {
        Self::new(data, rows, cols).expect("matrix data shorter than its shape")
    }

    /// The transpose, sharing the data.
    pub fn t(self) -> Self {
        MatRef {
            data: self.data,
            rows: self.cols,
            cols: self.rows,
            row_stride: self.col_stride,
            col_stride: self.row_stride,
        }
    }

    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Number of columns.
    pub fn cols(&self) -> usize {
        self.cols
    }

    #[inline(always)]
    pub(crate) fn at(&self, r: usize, c: usize) -> f32 {
        self.data[r * self.row_stride + c * self.col_stride]
    }
}

/// `C ← A·B`, or `C ← C + A·B` when `accumulate`, for a row-major `C` of
/// `a.rows() × b.cols()` (its previous values are not read unless accumulating).
///
/// # Panics
/// When the inner dimensions differ or `c` is too short (callers check
/// shapes first).
pub fn gemm(a: MatRef<'_>, b: MatRef<'_>, c: &mut [f32], accumulate: bool) {
    gemm_into(a, b, c, b.cols, accumulate);
}

/// [`gemm`] into a `C` whose rows are `ldc` apart (a block of columns of a
/// wider matrix); values between rows are left alone.
///
/// # Panics
/// When the inner dimensions differ, `ldc` is narrower than C or `c` is
/// too short (callers check shapes first).
pub fn gemm_into(a: MatRef<'_>, b: MatRef<'_>, c: &mut [f32], ldc: usize, accumulate: bool) {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    assert_eq!(b.rows, k, "inner dimensions differ");
    assert!(ldc >= n, "rows of C overlap");
    if m == 0 || n == 0 {
        return;
    }
    assert!(c.len() >= (m - 1) * ldc + n, "output too short");
    if k == 0 {
        if !accumulate {
            for row in 0..m {
                c[row * ldc..row * ldc + n].fill(0.0);
            }
        }
        return;
    }
    match active() {
        #[cfg(target_arch = "x86_64")]
        crate::isa::Isa::Avx2Fma => tiled::<crate::micro::Avx2Fma>(a, b, c, ldc, accumulate),
        #[cfg(target_arch = "x86_64")]
        crate::isa::Isa::Avx512 => tiled::<crate::micro::Avx512>(a, b, c, ldc, accumulate),
        _ => tiled::<Portable>(a, b, c, ldc, accumulate),
    }
}

/// How C is cut into tasks: tiles of `mb × nb`.
#[derive(Debug, Clone, Copy)]
struct Tiling {
    mb: usize,
    nb: usize,
    row_tiles: usize,
    col_tiles: usize,
}

impl Tiling {
    /// Tiles as large as the caches like, halved (columns first, they are
    /// cheaper to split) until every thread has a few to take.
    fn choose(m: usize, k: usize, n: usize, mr: usize, nr: usize) -> Tiling {
        let mut mb = m.next_multiple_of(mr).min(MB_MAX.next_multiple_of(mr));
        let mut nb = n.next_multiple_of(nr).min(NB_MAX);
        let threads = threads();
        let wanted = if threads > 1 && m * k * n >= SERIAL_FMAS {
            threads * 3
        } else {
            1
        };
        let count = |mb: usize, nb: usize| m.div_ceil(mb) * n.div_ceil(nb);
        while count(mb, nb) < wanted {
            if nb >= 4 * nr && nb / nr >= mb / mr {
                nb = (nb / 2).next_multiple_of(nr);
            } else if mb >= 4 * mr {
                mb = (mb / 2).next_multiple_of(mr);
            } else if nb > nr {
                nb = (nb / 2).next_multiple_of(nr);
            } else {
                break;
            }
        }
        Tiling {
            mb,
            nb,
            row_tiles: m.div_ceil(mb),
            col_tiles: n.div_ceil(nb),
        }
    }
}

thread_local! {
    /// Each thread's packing space, reused across products: every value a
    /// register tile reads is written by packing first, so it is never
    /// cleared. Taken out while a product runs, so a product nested on the
    /// same thread (rayon runs another task while one waits) packs into a
    /// space of its own.
    static PACKS: RefCell<(Vec<f32>, Vec<f32>)> = const { RefCell::new((Vec::new(), Vec::new())) };
}

/// Packing space above this many floats is given back after the product
/// instead of kept for the next one.
const KEEP_FLOATS: usize = 1 << 18;

/// Floats of packing space a product of `m × k` by `k × n` uses: one block
/// of both operands, padded to the widest register tile.
pub fn scratch(m: usize, k: usize, n: usize) -> usize {
    let widest = 32;
    m.next_multiple_of(widest)
        .saturating_add(n.min(NB_MAX).next_multiple_of(widest))
        .saturating_mul(k.min(KC))
}

/// Block by block: C's columns in chunks of [`NB_MAX`], the depth in blocks
/// of [`KC`]; each block of both operands is packed once (however many
/// tiles read it), then every tile of the chunk is updated from it. A block
/// is packed just before it is used, so it is still in cache when the tiles
/// read it.
fn tiled<K: Micro>(a: MatRef<'_>, b: MatRef<'_>, c: &mut [f32], ldc: usize, accumulate: bool) {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    let tiling = Tiling::choose(m, k, n.min(NB_MAX), K::MR, K::NR);
    let (mut space_a, mut space_b) = PACKS.with(|packs| std::mem::take(&mut *packs.borrow_mut()));
    let out = SharedMut(c.as_mut_ptr());
    for jc in (0..n).step_by(NB_MAX) {
        let chunk = jc..jc + NB_MAX.min(n - jc);
        for p0 in (0..k).step_by(KC) {
            let depth = p0..p0 + KC.min(k - p0);
            let pa = BlockA::new(&a, n, depth.clone(), K::MR, &mut space_a);
            let pb = Packed::new(&b.t(), chunk.clone(), depth, K::NR, &mut space_b);
            let fresh = p0 == 0 && !accumulate;
            let chunk_c = SharedMut(out.0.wrapping_add(jc));
            for_each_task(tiling.row_tiles * tiling.col_tiles, |task| {
                let (i0, j0) = (
                    (task / tiling.col_tiles) * tiling.mb,
                    (task % tiling.col_tiles) * tiling.nb,
                );
                if j0 >= chunk.len() {
                    return;
                }
                let tile = Block {
                    i0,
                    j0,
                    mb: tiling.mb.min(m - i0),
                    nb: tiling.nb.min(chunk.len() - j0),
                };
                // SAFETY: tiles are disjoint, so this task alone writes its
                // tile of C, which lies inside `c` (m rows ldc apart, checked
                // by `gemm_into`).
                unsafe { block::<K>(&pa, &pb, chunk_c, ldc, tile, fresh) };
            });
        }
    }
    for space in [&mut space_a, &mut space_b] {
        if space.len() > KEEP_FLOATS {
            *space = Vec::new();
        }
    }
    PACKS.with(|packs| *packs.borrow_mut() = (space_a, space_b));
}

/// One depth block of a matrix packed for register tiles: its rows in
/// panels of `width`, each panel `kc · width` values, depth-major, zero
/// past the last row.
struct Packed<'a> {
    data: &'a [f32],
    width: usize,
    kc: usize,
}

impl<'a> Packed<'a> {
    /// Rows `rows` and depths `depth` of `m` packed into `space` (grown as
    /// needed), one panel per task.
    fn new(
        m: &MatRef<'_>,
        rows: Range<usize>,
        depth: Range<usize>,
        width: usize,
        space: &'a mut Vec<f32>,
    ) -> Packed<'a> {
        let kc = depth.len();
        let len = rows.len().next_multiple_of(width) * kc;
        grow(space, len);
        let data = &mut space[..len];
        for_each_chunk_mut(data, kc * width, |panel, dst| {
            let r0 = panel * width;
            let height = width.min(rows.len() - r0);
            pack(m, rows.start + r0, height, depth.start, kc, width, dst);
        });
        Packed { data, width, kc }
    }

    /// The panel starting at row `r0` (a multiple of the width).
    fn panel(&self, r0: usize) -> *const f32 {
        self.data[r0 * self.kc..][..self.kc * self.width].as_ptr()
    }
}

/// Products at most this many columns wide read A in place (when a
/// dimension of A is contiguous): each value of A is then read by a few
/// column panels only, fewer reads than packing it would cost.
const IN_PLACE_COLUMNS: usize = 256;

/// One depth block of A as the tiles read it: packed, or in place with only
/// its last rows packed (those that do not fill a panel).
enum BlockA<'a, 'm> {
    Packed(Packed<'a>),
    InPlace {
        m: MatRef<'m>,
        p0: usize,
        kc: usize,
        full_rows: usize,
        tail: Packed<'a>,
    },
}

impl<'a, 'm> BlockA<'a, 'm> {
    /// Depths `depth` of `a` for a product `n` columns wide, on tiles `mr`
    /// rows high.
    fn new(
        a: &MatRef<'m>,
        n: usize,
        depth: Range<usize>,
        mr: usize,
        space: &'a mut Vec<f32>,
    ) -> BlockA<'a, 'm> {
        if n > IN_PLACE_COLUMNS || (a.row_stride != 1 && a.col_stride != 1) {
            return BlockA::Packed(Packed::new(a, 0..a.rows, depth, mr, space));
        }
        let full_rows = a.rows / mr * mr;
        BlockA::InPlace {
            m: *a,
            p0: depth.start,
            kc: depth.len(),
            full_rows,
            tail: Packed::new(a, full_rows..a.rows, depth, mr, space),
        }
    }

    /// The panel of `mr` rows starting at row `r0` (a multiple of `mr`).
    fn panel(&self, r0: usize) -> PanelA {
        match self {
            BlockA::Packed(p) => PanelA {
                ptr: p.panel(r0),
                rs: 1,
                cs: p.width,
            },
            BlockA::InPlace {
                m,
                p0,
                full_rows,
                tail,
                ..
            } => {
                if r0 < *full_rows {
                    PanelA {
                        ptr: m.data[r0 * m.row_stride + p0 * m.col_stride..].as_ptr(),
                        rs: m.row_stride,
                        cs: m.col_stride,
                    }
                } else {
                    PanelA {
                        ptr: tail.panel(r0 - full_rows),
                        rs: 1,
                        cs: tail.width,
                    }
                }
            }
        }
    }

    /// Depths in the block.
    fn depth(&self) -> usize {
        match self {
            BlockA::Packed(p) => p.kc,
            BlockA::InPlace { kc, .. } => *kc,
        }
    }
}

/// One task's tile of C.
#[derive(Debug, Clone, Copy)]
struct Block {
    i0: usize,
    j0: usize,
    mb: usize,
    nb: usize,
}

/// C's tile `t` (row stride `ldc`) updated from one packed depth block,
/// starting from zero when `fresh`.
///
/// # Safety
/// No other thread touches `t` of C while this runs, and `t` lies inside C.
unsafe fn block<K: Micro>(
    pa: &BlockA<'_, '_>,
    pb: &Packed<'_>,
    c: SharedMut,
    ldc: usize,
    t: Block,
    fresh: bool,
) {
    let (mr, nr, kc) = (K::MR, K::NR, pa.depth());
    let mut edge = [0.0f32; 16 * 16];
    for jr in (0..t.nb).step_by(nr) {
        let b = PanelB::packed(pb.panel(t.j0 + jr));
        for ir in (0..t.mb).step_by(mr) {
            let a = pa.panel(t.i0 + ir);
            let (rows, cols) = (mr.min(t.mb - ir), nr.min(t.nb - jr));
            // SAFETY: inside this task's tile (the caller's promise).
            let at = unsafe { c.0.add((t.i0 + ir) * ldc + t.j0 + jr) };
            // SAFETY: A's panel reads mr rows and kc depths inside A (packed
            // above, or in place), B's holds kc·nr values, and
            // `isa::active` chose K for this CPU.
            unsafe {
                if rows == mr && cols == nr {
                    K::tile(kc, a, b, at, ldc, fresh);
                } else {
                    edge_tile::<K>(kc, a, b, at, ldc, rows, cols, fresh, &mut edge);
                }
            }
        }
    }
}

fn grow(buffer: &mut Vec<f32>, len: usize) {
    if buffer.len() < len {
        buffer.resize(len, 0.0);
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::isa::force_portable;

    pub(crate) fn values(n: usize, seed: u32) -> Vec<f32> {
        let mut s = seed.wrapping_mul(2654435761).wrapping_add(1);
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 17;
                s ^= s << 5;
                (s % 20001) as f32 / 10000.0 - 1.0
            })
            .collect()
    }

    /// The definition: each element fused left to right over the depth.
    fn naive(a: &MatRef<'_>, b: &MatRef<'_>, c0: &[f32]) -> Vec<f32> {
        let mut c = c0.to_vec();
        for i in 0..a.rows {
            for j in 0..b.cols {
                let mut s = c[i * b.cols + j];
                for p in 0..a.cols {
                    s = a.at(i, p).mul_add(b.at(p, j), s);
                }
                c[i * b.cols + j] = s;
            }
        }
        c
    }

    fn bits(v: &[f32]) -> Vec<u32> {
        v.iter().map(|x| x.to_bits()).collect()
    }

    const SHAPES: [(usize, usize, usize); 8] = [
        (1, 1, 1),
        (70, 600, 1100),
        (3, 5, 7),
        (6, 16, 16),
        (13, 300, 9),
        (130, 17, 1030),
        (64, 784, 128),
        (97, 600, 61),
    ];

    fn check_every_shape() {
        for &(m, k, n) in &SHAPES {
            for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
                let da = values(m * k, 1);
                let db = values(k * n, 2);
                let a = if ta {
                    MatRef::row_major(&da, k, m).t()
                } else {
                    MatRef::row_major(&da, m, k)
                };
                let b = if tb {
                    MatRef::row_major(&db, n, k).t()
                } else {
                    MatRef::row_major(&db, k, n)
                };
                let c0 = values(m * n, 3);
                let mut c = c0.clone();
                gemm(a, b, &mut c, true);
                assert_eq!(
                    bits(&c),
                    bits(&naive(&a, &b, &c0)),
                    "{m}x{k}x{n} {ta} {tb} +="
                );
                gemm(a, b, &mut c, false);
                let zero = vec![0.0; m * n];
                assert_eq!(
                    bits(&c),
                    bits(&naive(&a, &b, &zero)),
                    "{m}x{k}x{n} {ta} {tb}"
                );
            }
        }
    }

    #[test]
    fn products_equal_the_fused_naive_sum_bit_for_bit() {
        check_every_shape();
    }

    #[test]
    fn the_portable_path_gives_the_same_bits() {
        // Other tests may run meanwhile: they expect the same bits either way.
        force_portable(true);
        check_every_shape();
        force_portable(false);
    }

    #[test]
    fn the_avx2_tiles_give_the_avx512_tiles_bits() {
        // On a CPU without AVX-512 both runs take the same path.
        crate::isa::force_avx2(true);
        check_every_shape();
        crate::isa::force_avx2(false);
    }

    #[cfg(feature = "parallel")]
    #[test]
    fn thread_counts_do_not_change_a_bit() {
        let (m, k, n) = (200, 700, 300);
        let (da, db) = (values(m * k, 4), values(k * n, 5));
        let run = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            let mut c = vec![0.0; m * n];
            pool.install(|| {
                gemm(
                    MatRef::row_major(&da, m, k),
                    MatRef::row_major(&db, n, k).t(),
                    &mut c,
                    false,
                )
            });
            bits(&c)
        };
        let one = run(1);
        for threads in [2, 3, 8] {
            assert_eq!(run(threads), one, "{threads} threads");
        }
    }

    #[test]
    fn tilings_give_every_thread_work_and_cover_c() {
        let t = Tiling::choose(64, 10_000, 576, 6, 16);
        assert!(t.row_tiles * t.col_tiles >= 1);
        assert!(t.mb * t.row_tiles >= 64 && t.nb * t.col_tiles >= 576);
    }
}
