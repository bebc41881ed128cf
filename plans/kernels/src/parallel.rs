//! How kernels hand work to threads.
//!
//! Kernels describe their work as independent tasks (each writing its own
//! outputs) and call [`for_each_task`]; with the `parallel` feature the tasks
//! run on the rayon pool the caller installed (the node's worker installs
//! one of `compute_threads` threads), otherwise one after another. Because
//! a task never shares an output with another, the order they run in never
//! changes a bit.

use std::cell::Cell;

thread_local! {
    /// Whether kernels on this thread run every task inline ([`serial`]).
    static SERIAL: Cell<bool> = const { Cell::new(false) };
}

/// Run `f` with every kernel it calls on this thread alone: for one
/// configured thread, or work too small to hand out (handing a job to a
/// pool and waiting for it costs microseconds). The same bits either way.
pub fn serial<R>(f: impl FnOnce() -> R) -> R {
    let before = SERIAL.with(|s| s.replace(true));
    let out = f();
    SERIAL.with(|s| s.set(before));
    out
}

/// Threads the current pool runs tasks on (1 without the `parallel`
/// feature, or inside [`serial`]).
pub fn threads() -> usize {
    if SERIAL.with(Cell::get) {
        return 1;
    }
    #[cfg(feature = "parallel")]
    {
        rayon::current_num_threads()
    }
    #[cfg(not(feature = "parallel"))]
    {
        1
    }
}

/// Run `task(0..count)`, on the current pool when it has more than one
/// thread and `count > 1`.
pub fn for_each_task(count: usize, task: impl Fn(usize) + Sync + Send) {
    #[cfg(feature = "parallel")]
    if count > 1 && threads() > 1 {
        use rayon::prelude::*;
        (0..count).into_par_iter().for_each(task);
        return;
    }
    (0..count).for_each(task);
}

/// Apply `f(index, chunk)` to consecutive `chunk`-sized pieces of `data` (the
/// last may be shorter), in parallel when it pays.
pub fn for_each_chunk_mut<T: Send>(
    data: &mut [T],
    chunk: usize,
    f: impl Fn(usize, &mut [T]) + Sync + Send,
) {
    let chunk = chunk.max(1);
    #[cfg(feature = "parallel")]
    if data.len() > chunk && threads() > 1 {
        use rayon::prelude::*;
        data.par_chunks_mut(chunk)
            .enumerate()
            .for_each(|(i, c)| f(i, c));
        return;
    }
    data.chunks_mut(chunk)
        .enumerate()
        .for_each(|(i, c)| f(i, c));
}

/// A raw pointer tasks may share, for outputs split into disjoint tiles that
/// slices cannot express (a matrix's column blocks).
#[derive(Clone, Copy)]
pub(crate) struct SharedMut(pub *mut f32);

// SAFETY: a `SharedMut` is only written through at positions that exactly
// one task owns (see `gemm`'s tiling); the pointee outlives every task
// because `for_each_task` returns only when all tasks are done.
unsafe impl Send for SharedMut {}
unsafe impl Sync for SharedMut {}
