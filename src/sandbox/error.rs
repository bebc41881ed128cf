//! Errors of the plan sandbox: each names the plan function and the cause.

use crate::digest::Sha256Digest;

/// Why a plan could not be loaded or a call into it failed.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// The bytes are not a WebAssembly component at all.
    #[error("not a WebAssembly component: {reason}")]
    NotAComponent {
        /// What the bytes are instead.
        reason: String,
    },
    /// A component that does not implement the `fedwasm:plan/training-plan` world.
    #[error("the component does not implement fedwasm:plan/training-plan@0.3.0: {reason}")]
    WrongWorld {
        /// What is missing or mismatched.
        reason: String,
    },
    /// Cranelift refused the component.
    #[error("compiling plan {plan} failed: {reason}")]
    Compile {
        /// The plan's digest.
        plan: Sha256Digest,
        /// The compiler's message.
        reason: String,
    },
    /// The plan grew its memory past the configured cap.
    #[error(
        "plan exceeded its memory limit of {limit_mib} MiB in `{function}`; raise the node's sandbox.memory_mib or use a smaller model or batch"
    )]
    MemoryLimit {
        /// The plan function that was running.
        function: &'static str,
        /// The cap.
        limit_mib: u64,
    },
    /// The plan recursed past the stack limit.
    #[error(
        "plan overflowed its stack in `{function}` (deep recursion); the stack is bounded by the sandbox ({stack_kib} KiB) and by the plan's build"
    )]
    StackOverflow {
        /// The plan function that was running.
        function: &'static str,
        /// The stack cap.
        stack_kib: usize,
    },
    /// The call ran past its deadline and was interrupted.
    #[error("plan ran past its deadline of {seconds:.1} s in `{function}` and was stopped")]
    Deadline {
        /// The plan function that was running.
        function: &'static str,
        /// The deadline.
        seconds: f64,
    },
    /// The plan trapped (a panic, an out-of-bounds access, `unreachable`, …).
    #[error("plan trapped in `{function}`: {trap}{}", stderr_suffix(.stderr))]
    Trap {
        /// The plan function that was running.
        function: &'static str,
        /// wasmtime's description of the trap.
        trap: String,
        /// What the plan wrote to stderr (its panic message, usually).
        stderr: String,
    },
    /// The plan returned an error value.
    #[error("plan returned an error from `{function}`: {kind}: {message}")]
    Plan {
        /// The plan function that returned it.
        function: &'static str,
        /// invalid-argument, invalid-data, invalid-state or internal.
        kind: &'static str,
        /// The plan's message.
        message: String,
    },
    /// The plan returned more than the host takes from it.
    #[error("plan output refused in `{function}`: {reason}")]
    Output {
        /// The plan function that returned it.
        function: &'static str,
        /// What was over which limit.
        reason: String,
    },
    /// The host could not set up or reach the instance.
    #[error("sandbox failure in `{function}`: {reason}")]
    Host {
        /// What the host was doing.
        function: &'static str,
        /// The underlying error.
        reason: String,
    },
}

fn stderr_suffix(stderr: &str) -> String {
    let text = stderr.trim();
    if text.is_empty() {
        String::new()
    } else {
        format!("; plan stderr: {text}")
    }
}

impl SandboxError {
    /// A short stable code for error replies and tests.
    pub fn code(&self) -> &'static str {
        match self {
            SandboxError::NotAComponent { .. } => "not-a-component",
            SandboxError::WrongWorld { .. } => "wrong-world",
            SandboxError::Compile { .. } => "compile",
            SandboxError::MemoryLimit { .. } => "memory-limit",
            SandboxError::StackOverflow { .. } => "stack-overflow",
            SandboxError::Deadline { .. } => "deadline",
            SandboxError::Trap { .. } => "trap",
            SandboxError::Plan { .. } => "plan-error",
            SandboxError::Output { .. } => "output",
            SandboxError::Host { .. } => "host",
        }
    }
}
