//! Messages from the plan into the node's log (the `fedwasm:plan/log` import).
//! Natively they go to stderr.

pub use crate::__bindings::fedwasm::plan::log::Level;

/// Write one message at `level`.
pub fn log(level: Level, message: &str) {
    #[cfg(target_arch = "wasm32")]
    crate::__bindings::fedwasm::plan::log::log(level, message);
    #[cfg(not(target_arch = "wasm32"))]
    eprintln!("[plan {level:?}] {message}");
}

/// Write an informational message.
pub fn info(message: &str) {
    log(Level::Info, message);
}

/// Write a warning.
pub fn warn(message: &str) {
    log(Level::Warn, message);
}
