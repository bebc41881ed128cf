//! Compiling a component in a child process, under a time and a memory limit.
//!
//! Compiling is the one step that runs on a plan before any sandbox limit
//! applies, and a crafted component of a few kilobytes can make Cranelift
//! work for minutes and take gigabytes. So `fedwasm` compiles in a child
//! (`fedwasm __compile`) that caps its own address space and that the parent
//! kills at the deadline; the child writes the compiled artifact, which the
//! parent loads. Both build their engine from the same [`SandboxConfig`], so
//! the artifact fits the parent's engine.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use wasmtime::Engine;
use wasmtime::component::Component;

use super::config::SandboxConfig;
use super::error::SandboxError;
use crate::digest::Sha256Digest;

/// Name of the hidden subcommand that compiles one component.
pub const COMPILE_SUBCOMMAND: &str = "__compile";

/// How often the parent looks whether the child is done.
const POLL: Duration = Duration::from_millis(10);

/// Bytes of the child's stderr kept for the error message.
const STDERR_TAIL: usize = 4096;

/// Compile `bytes` (with SHA-256 `digest`) with `exe __compile` under the
/// limits of `config`, and load the result into `engine`.
pub(crate) fn compile_in_child(
    exe: &Path,
    engine: &Engine,
    config: &SandboxConfig,
    bytes: &[u8],
    digest: Sha256Digest,
) -> Result<Component, SandboxError> {
    let failed = |reason: String| SandboxError::Compile {
        plan: digest,
        reason,
    };
    let dir = tempfile::tempdir()
        .map_err(|e| failed(format!("cannot create a folder to compile in: {e}")))?;
    let input = dir.path().join("plan.wasm");
    let output = dir.path().join("plan.cwasm");
    std::fs::write(&input, bytes)
        .map_err(|e| failed(format!("cannot write the component: {e}")))?;
    let settings = serde_json::to_string(config).map_err(|e| failed(e.to_string()))?;
    let mut child = Command::new(exe)
        .arg(COMPILE_SUBCOMMAND)
        .arg(&settings)
        .arg(&input)
        .arg(&output)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| failed(format!("cannot start the compiler process: {e}")))?;
    let deadline = Instant::now() + config.compile_timeout();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(failed(format!(
                    "compiling took longer than {:.0} s, the compile_timeout_secs limit; the component is refused",
                    config.compile_timeout_secs
                )));
            }
            Ok(None) => std::thread::sleep(POLL),
            Err(e) => return Err(failed(format!("waiting for the compiler process: {e}"))),
        }
    };
    if !status.success() {
        let mut stderr = Vec::new();
        if let Some(mut pipe) = child.stderr.take() {
            let _ = pipe.read_to_end(&mut stderr);
        }
        let text = String::from_utf8_lossy(&stderr[stderr.len().saturating_sub(STDERR_TAIL)..])
            .trim()
            .to_string();
        let out_of_memory = text.contains("memory allocation") || text.contains("out of memory");
        return Err(failed(if out_of_memory {
            format!(
                "compiling needed more than {} MiB, the compile_memory_mib limit; the component is refused",
                config.compile_memory_mib
            )
        } else {
            format!("the compiler process failed ({status}): {text}")
        }));
    }
    // SAFETY: the artifact was just written by `fedwasm __compile` from an
    // engine built from the same configuration (see `compile_main`).
    unsafe { Component::deserialize_file(engine, &output) }
        .map_err(|e| failed(format!("the compiled plan cannot be loaded: {e:#}")))
}

/// Cap this process's address space at `mib` MiB, so that an allocation
/// past it fails rather than the machine running out of memory.
fn cap_address_space(mib: u64) -> Result<(), String> {
    let bytes = mib.saturating_mul(1 << 20);
    let limit = libc::rlimit {
        rlim_cur: bytes,
        rlim_max: bytes,
    };
    // SAFETY: setrlimit reads the struct we pass and changes only limits.
    let done = unsafe { libc::setrlimit(libc::RLIMIT_AS, &limit) };
    if done == 0 {
        Ok(())
    } else {
        Err(format!(
            "cannot limit memory: {}",
            std::io::Error::last_os_error()
        ))
    }
}

/// The child's side: compile the component at `input` with the engine of
/// `settings` (a [`SandboxConfig`] as JSON) into `output`.
pub fn compile_main(settings: &str, input: &Path, output: &Path) -> Result<(), String> {
    let config: SandboxConfig =
        serde_json::from_str(settings).map_err(|e| format!("bad settings: {e}"))?;
    cap_address_space(config.compile_memory_mib)?;
    let engine = Engine::new(&super::engine::engine_config(&config))
        .map_err(|e| format!("engine: {e:#}"))?;
    let bytes = std::fs::read(input).map_err(|e| format!("reading the component: {e}"))?;
    let compiled = engine
        .precompile_component(&bytes)
        .map_err(|e| format!("{e:#}"))?;
    std::fs::write(output, compiled).map_err(|e| format!("writing the compiled plan: {e}"))
}
