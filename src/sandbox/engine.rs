//! [`Sandbox`]: the engine, the linker and the compile cache.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Engine};

use super::bindings::{TrainingPlan, TrainingPlanPre};
use super::cache::DiskCache;
use super::config::{Interruption, SandboxConfig};
use super::error::SandboxError;
use super::host::HostState;
use super::instance::PlanInstance;
use super::random::StreamSeed;
use crate::digest::Sha256Digest;

/// Interval of the epoch ticker under [`Interruption::Epoch`].
const EPOCH_TICK: Duration = Duration::from_millis(10);

/// A compiled, pre-linked plan, ready to instantiate many times.
pub struct LoadedPlan {
    digest: Sha256Digest,
    size: usize,
    pre: TrainingPlanPre<HostState>,
    component: Component,
    simd128: bool,
}

impl LoadedPlan {
    /// SHA-256 of the component bytes: the plan's identity for approval.
    pub fn digest(&self) -> Sha256Digest {
        self.digest
    }

    /// Size of the component in bytes.
    pub fn size(&self) -> usize {
        self.size
    }

    /// What the node says of how the plan was built, for its author and
    /// operator: empty for a plan built as the SDK builds it
    /// ([`super::codegen`]).
    pub fn build_warnings(&self) -> Vec<String> {
        if self.simd128 {
            Vec::new()
        } else {
            vec![super::codegen::NO_SIMD128.to_string()]
        }
    }

    /// Names of the component's imports and exports, for `plan inspect`.
    pub fn interface(&self, sandbox: &Sandbox) -> (Vec<String>, Vec<String>) {
        let ty = self.component.component_type();
        let imports = ty
            .imports(&sandbox.engine)
            .map(|(n, _)| n.to_string())
            .collect();
        let exports = ty
            .exports(&sandbox.engine)
            .map(|(n, _)| n.to_string())
            .collect();
        (imports, exports)
    }
}

/// Where plans are compiled and run: one per process, shared by all tasks.
pub struct Sandbox {
    engine: Engine,
    linker: Linker<HostState>,
    config: SandboxConfig,
    loaded: Mutex<HashMap<Sha256Digest, Arc<LoadedPlan>>>,
    disk: Option<DiskCache>,
}

/// Which of the WebAssembly binary formats `bytes` is.
fn check_header(bytes: &[u8]) -> Result<(), SandboxError> {
    const MAGIC: &[u8] = b"\0asm";
    if bytes.len() < 8 || &bytes[..4] != MAGIC {
        return Err(SandboxError::NotAComponent {
            reason: "the bytes do not start with the WebAssembly magic number; \
                     build the plan with `fedwasm plan build`"
                .into(),
        });
    }
    match bytes[4..8] {
        [0x01, 0x00, 0x00, 0x00] => Err(SandboxError::NotAComponent {
            reason: "this is a core WebAssembly module, not a component; build the plan for \
                     the wasm32-wasip2 target (`fedwasm plan build`), not wasm32-unknown-unknown"
                .into(),
        }),
        [0x0d, 0x00, 0x01, 0x00] => Ok(()),
        _ => Err(SandboxError::NotAComponent {
            reason: format!(
                "unsupported WebAssembly version/layer {:02x?}",
                &bytes[4..8]
            ),
        }),
    }
}

fn host_error(function: &'static str, e: impl std::fmt::Display) -> SandboxError {
    SandboxError::Host {
        function,
        reason: format!("{e:#}"),
    }
}

/// The wasmtime configuration of `config`: the same for the engine that
/// runs plans and for the child process that compiles them.
pub(crate) fn engine_config(config: &SandboxConfig) -> Config {
    let mut wasm = Config::new();
    wasm.wasm_component_model(true)
        .max_wasm_stack(config.stack_kib * 1024)
        .wasm_backtrace_max_frames(std::num::NonZeroUsize::new(
            super::instance::BACKTRACE_FRAMES,
        ))
        .epoch_interruption(config.interruption == Interruption::Epoch)
        // Relaxed SIMD may differ between CPUs; plans must be reproducible.
        .relaxed_simd_deterministic(true)
        .wasm_relaxed_simd(false)
        .parallel_compilation(true);
    wasm
}

impl Sandbox {
    /// An engine and linker configured by `config`.
    pub fn new(config: SandboxConfig) -> Result<Self, SandboxError> {
        let engine = Engine::new(&engine_config(&config)).map_err(|e| host_error("engine", e))?;
        if config.interruption == Interruption::Epoch {
            let weak = engine.weak();
            thread::Builder::new()
                .name("fedwasm-epoch".into())
                .spawn(move || {
                    while let Some(engine) = weak.upgrade() {
                        engine.increment_epoch();
                        drop(engine);
                        thread::sleep(EPOCH_TICK);
                    }
                })
                .map_err(|e| host_error("engine", e))?;
        }
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker).map_err(|e| host_error("linker", e))?;
        TrainingPlan::add_to_linker::<_, wasmtime::component::HasSelf<HostState>>(
            &mut linker,
            |s| s,
        )
        .map_err(|e| host_error("linker", e))?;
        let disk = config
            .cache_dir
            .as_deref()
            .map(|dir| DiskCache::new(dir, &engine));
        Ok(Sandbox {
            engine,
            linker,
            config,
            loaded: Mutex::new(HashMap::new()),
            disk,
        })
    }

    /// The configuration this sandbox enforces.
    pub fn config(&self) -> &SandboxConfig {
        &self.config
    }

    /// Compile (or fetch from the caches) and pre-link a plan.
    pub fn load(&self, bytes: &[u8]) -> Result<Arc<LoadedPlan>, SandboxError> {
        let digest = Sha256Digest::of(bytes);
        if let Some(plan) = self.lock_loaded().get(&digest) {
            return Ok(plan.clone());
        }
        check_header(bytes)?;
        let component = match self
            .disk
            .as_ref()
            .and_then(|d| d.load(&self.engine, &digest))
        {
            Some(component) => component,
            None => {
                let component = match &self.config.compiler {
                    Some(exe) => super::compile::compile_in_child(
                        exe,
                        &self.engine,
                        &self.config,
                        bytes,
                        digest,
                    )?,
                    None => {
                        Component::new(&self.engine, bytes).map_err(|e| SandboxError::Compile {
                            plan: digest,
                            reason: format!("{e:#}"),
                        })?
                    }
                };
                if let Some(disk) = &self.disk {
                    disk.store(&digest, &component);
                }
                component
            }
        };
        if let Some(version) = contract_of(&component, &self.engine)
            && version != super::PLAN_CONTRACT
        {
            return Err(SandboxError::WrongWorld {
                reason: format!(
                    "it was built for plan contract {version}, and this node serves {}; rebuild the plan with the fedwasm-plan SDK of that contract (`fedwasm plan build <crate folder>`) and have the new build approved",
                    super::PLAN_CONTRACT
                ),
            });
        }
        let instance_pre = self.linker.instantiate_pre(&component).map_err(|e| SandboxError::WrongWorld {
            reason: format!(
                "{e:#}; a plan may import only fedwasm:plan/compute, fedwasm:plan/random, fedwasm:plan/log and WASI 0.2"
            ),
        })?;
        let pre = TrainingPlanPre::new(instance_pre).map_err(|e| SandboxError::WrongWorld {
            reason: format!("{e:#}"),
        })?;
        let plan = Arc::new(LoadedPlan {
            digest,
            size: bytes.len(),
            pre,
            component,
            simd128: super::codegen::uses_simd128(bytes),
        });
        self.lock_loaded().insert(digest, plan.clone());
        Ok(plan)
    }

    /// Read a component file and [`Sandbox::load`] it.
    pub fn load_file(&self, path: &std::path::Path) -> Result<Arc<LoadedPlan>, SandboxError> {
        let bytes = std::fs::read(path).map_err(|e| SandboxError::Host {
            function: "load",
            reason: format!("cannot read {}: {e}", path.display()),
        })?;
        self.load(&bytes)
    }

    /// A fresh instance of `plan` in its own store, its `random` import seeded by `seed`.
    pub fn instantiate(
        &self,
        plan: &LoadedPlan,
        seed: &StreamSeed,
    ) -> Result<PlanInstance, SandboxError> {
        PlanInstance::new(&self.engine, &self.config, &plan.pre, seed)
    }

    fn lock_loaded(&self) -> std::sync::MutexGuard<'_, HashMap<Sha256Digest, Arc<LoadedPlan>>> {
        self.loaded
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The plan contract `component` was built for, read off the version of the
/// `fedwasm:plan/…` interfaces it exports or imports; none when it names
/// none (a component of another world, refused by linking).
fn contract_of(component: &Component, engine: &wasmtime::Engine) -> Option<String> {
    let ty = component.component_type();
    let names: Vec<String> = ty
        .exports(engine)
        .map(|(name, _)| name.to_string())
        .chain(ty.imports(engine).map(|(name, _)| name.to_string()))
        .collect();
    names.iter().find_map(|name| {
        name.strip_prefix("fedwasm:plan/")
            .and_then(|rest| rest.split_once('@'))
            .map(|(_, version)| version.to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_check_names_the_format() {
        let garbage = check_header(b"hello world").unwrap_err().to_string();
        assert!(garbage.contains("magic number"), "{garbage}");
        let core = check_header(b"\0asm\x01\0\0\0").unwrap_err().to_string();
        assert!(core.contains("core WebAssembly module"), "{core}");
        assert!(check_header(b"\0asm\x0d\0\x01\0").is_ok());
    }
}
