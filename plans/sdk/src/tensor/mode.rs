//! Two switches a plan's code reads while it runs: whether operations record
//! a graph for backward (off inside [`no_grad`]) and whether layers behave as
//! in training (Dropout drops, BatchNorm uses batch statistics) or as in
//! evaluation. The SDK's trainer sets both; a layer written by a plan author
//! reads [`is_training`] like PyTorch's `self.training`.

use std::cell::Cell;

thread_local! {
    static GRAD: Cell<bool> = const { Cell::new(true) };
    static TRAINING: Cell<bool> = const { Cell::new(false) };
}

/// Whether operations record what backward needs.
pub fn grad_enabled() -> bool {
    GRAD.with(Cell::get)
}

/// Run `f` without recording a graph (inference, optimizer updates).
pub fn no_grad<R>(f: impl FnOnce() -> R) -> R {
    let before = GRAD.with(|g| g.replace(false));
    let out = f();
    GRAD.with(|g| g.set(before));
    out
}

/// Whether layers run in training mode.
pub fn is_training() -> bool {
    TRAINING.with(Cell::get)
}

/// Run `f` with layers in training mode (`true`) or evaluation mode.
pub fn with_training<R>(training: bool, f: impl FnOnce() -> R) -> R {
    let before = TRAINING.with(|t| t.replace(training));
    let out = f();
    TRAINING.with(|t| t.set(before));
    out
}
