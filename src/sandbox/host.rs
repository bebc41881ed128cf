//! Per-task host state: the WASI context, the memory limiter, the random
//! stream and the plan's log, plus the `random` and `log` imports.

use super::output::CappedOutput;
use rand_chacha::ChaCha8Rng;
use rand_core::RngCore;
use wasmtime::ResourceLimiter;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::bindings::{log, random, types};
use super::compute::HostTensor;
use super::config::SandboxConfig;
use super::random::{StreamSeed, fill_normal, unit_f32};
use super::spares::Spares;
use super::wasi;

/// Longest log message kept, in bytes; longer ones are cut.
const MAX_LOG_MESSAGE: usize = 4096;

/// Severity of a plan log record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PlanLogLevel {
    /// Fine detail.
    Trace,
    /// Debugging detail.
    Debug,
    /// Normal progress.
    Info,
    /// Something the researcher should look at.
    Warn,
    /// A failure the plan reports.
    Error,
}

/// One message a plan logged.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PlanLogRecord {
    /// Severity.
    pub level: PlanLogLevel,
    /// Text, cut to 4 KiB.
    pub message: String,
}

/// Refuses memory growth past the cap and remembers that it did, so a trap that
/// follows can be reported as what it is. It also knows how much linear
/// memory and how many bytes of host tensors the plan holds, so both come
/// out of one budget, and host allocations a plan asks for (tensors, random
/// floats, scratch) are refused before they are made.
pub(crate) struct MemoryCap {
    limit: usize,
    /// Bytes of linear memory of all the instance's memories.
    used: usize,
    /// Bytes of the plan's host tensors.
    pub(crate) host: usize,
    /// Buffers of dropped host tensors, kept for reuse while there is room.
    pub(crate) spares: Spares,
    pub(crate) hit: bool,
}

impl MemoryCap {
    /// A budget of `limit` bytes, nothing taken.
    fn new(limit: usize) -> Self {
        MemoryCap {
            limit,
            used: 0,
            host: 0,
            spares: Spares::default(),
            hit: false,
        }
    }

    /// Bytes of the budget not yet taken by linear memory, host tensors or
    /// spares.
    fn left(&self) -> usize {
        self.limit
            .saturating_sub(self.used)
            .saturating_sub(self.host)
            .saturating_sub(self.spares.bytes())
    }

    /// Free the spares when `bytes` more would not fit with them: they are
    /// the host's cache, never a reason to refuse the plan.
    fn make_room(&mut self, bytes: usize) {
        if bytes > self.left() {
            self.spares.clear();
        }
    }

    /// Refuse `bytes` that would not fit in what is left, naming `what`.
    pub(crate) fn check_transient(&mut self, what: &str, bytes: usize) -> wasmtime::Result<()> {
        self.make_room(bytes);
        let left = self.left();
        if bytes > left {
            self.hit = true;
            wasmtime::bail!(
                "{what} needs {} MiB, more than the {} MiB left of the plan's memory budget",
                bytes.div_ceil(1 << 20),
                left >> 20
            );
        }
        Ok(())
    }

    /// Take `bytes` of host tensors from the budget, or refuse them.
    pub(crate) fn take_host(&mut self, what: &str, bytes: usize) -> wasmtime::Result<()> {
        self.check_transient(what, bytes)?;
        self.host += bytes;
        Ok(())
    }

    /// Whether linear memory, host tensors and spares together fit the budget.
    pub(crate) fn within_budget(&self) -> bool {
        self.used
            .saturating_add(self.host)
            .saturating_add(self.spares.bytes())
            <= self.limit
    }

    /// Give back a dropped host tensor's buffer: kept as a spare when an
    /// operation made it (`output`), freed otherwise.
    pub(crate) fn give_back_host(&mut self, buffer: Vec<f32>, output: bool) {
        self.host = self.host.saturating_sub(HostTensor::bytes(buffer.len()));
        if output {
            self.spares.keep(buffer);
        }
    }

    /// A buffer of `len` values for an operation's output, whose bytes
    /// [`Self::take_host`] took: a spare's values, or zeros.
    pub(crate) fn output_buffer(&mut self, len: usize) -> Vec<f32> {
        self.spares.take(len)
    }
}

impl ResourceLimiter for MemoryCap {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let total = self.used.saturating_sub(current).saturating_add(desired);
        self.make_room(desired.saturating_sub(current));
        if total.saturating_add(self.host) > self.limit {
            self.hit = true;
            return Ok(false);
        }
        self.used = total;
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 1 << 20)
    }
}

/// Everything a plan instance's store holds.
pub(crate) struct HostState {
    wasi: WasiCtx,
    pub(crate) table: ResourceTable,
    pub(crate) memory: MemoryCap,
    /// The threads host tensor operations run on.
    pub(crate) pool: std::sync::Arc<rayon::ThreadPool>,
    random: ChaCha8Rng,
    pub(crate) logs: Vec<PlanLogRecord>,
    pub(crate) logs_dropped: usize,
    max_logs: usize,
    pub(crate) stdout: CappedOutput,
    pub(crate) stderr: CappedOutput,
}

impl HostState {
    /// The state of a fresh instance; an error when its compute threads
    /// cannot start.
    pub(crate) fn new(config: &SandboxConfig, seed: &StreamSeed) -> Result<Self, String> {
        let stdout = CappedOutput::new(config.output_bytes);
        let stderr = CappedOutput::new(config.output_bytes);
        let pool = super::compute::pool(config.threads(), config.stack_kib.saturating_mul(1024))?;
        Ok(HostState {
            wasi: wasi::deny_all(seed, stdout.clone(), stderr.clone()),
            table: ResourceTable::new(),
            memory: MemoryCap::new(config.memory_bytes()),
            pool,
            random: seed.rng(),
            logs: Vec::new(),
            logs_dropped: 0,
            max_logs: config.log_messages,
            stdout,
            stderr,
        })
    }
}

impl HostState {
    /// `count` floats, when the host may build them: the list lives on the
    /// host while the plan receives its copy, so twice its size must fit in
    /// what is left of the plan's memory budget besides its linear memory.
    /// Add std·n to each of `values`, n standard normals from the plan's
    /// random stream (`compute.add-normal`).
    pub(crate) fn add_normals(&mut self, std: f32, values: &mut [f32]) {
        super::random::add_normals(&mut self.random, std, values);
    }

    /// Fill `mask` with 0 where a uniform from the plan's random stream is
    /// below `p`, `keep` elsewhere (`compute.dropout-mask`).
    pub(crate) fn fill_dropout_mask(&mut self, p: f32, keep: f32, mask: &mut [f32]) {
        for m in mask {
            *m = if unit_f32(self.random.next_u64()) < p {
                0.0
            } else {
                keep
            };
        }
    }

    fn fill_allowed(&mut self, import: &str, count: u32) -> wasmtime::Result<usize> {
        let count = count as usize;
        self.memory.check_transient(
            &format!("random.{import} of {count} floats"),
            count.saturating_mul(8),
        )?;
        Ok(count)
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl types::Host for HostState {}

impl random::Host for HostState {
    fn next_u64(&mut self) -> wasmtime::Result<u64> {
        Ok(self.random.next_u64())
    }

    fn fill_f32(&mut self, count: u32) -> wasmtime::Result<Vec<f32>> {
        let count = self.fill_allowed("fill-f32", count)?;
        Ok((0..count)
            .map(|_| unit_f32(self.random.next_u64()))
            .collect())
    }

    fn fill_normal(&mut self, count: u32) -> wasmtime::Result<Vec<f32>> {
        let count = self.fill_allowed("fill-normal", count)?;
        Ok(fill_normal(&mut self.random, count))
    }
}

impl log::Host for HostState {
    fn log(&mut self, level: log::Level, message: String) -> wasmtime::Result<()> {
        if self.logs.len() >= self.max_logs {
            self.logs_dropped += 1;
            return Ok(());
        }
        let mut message = message;
        if message.len() > MAX_LOG_MESSAGE {
            let mut cut = MAX_LOG_MESSAGE;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
            message.push('…');
        }
        let level = match level {
            log::Level::Trace => PlanLogLevel::Trace,
            log::Level::Debug => PlanLogLevel::Debug,
            log::Level::Info => PlanLogLevel::Info,
            log::Level::Warn => PlanLogLevel::Warn,
            log::Level::Error => PlanLogLevel::Error,
        };
        tracing::debug!(target: "fedwasm::plan", ?level, "{message}");
        self.logs.push(PlanLogRecord { level, message });
        Ok(())
    }
}
