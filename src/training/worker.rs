//! Training in a worker process under a watchdog.
//!
//! Epoch interruption inside wasm costs 1.5–3× in SIMD training loops, so a
//! training task runs without any in-loop check, in a child process of the
//! `fedwasm` binary (`fedwasm __worker`). The parent sends each task as one
//! JSON line on the child's stdin and reads events, one JSON line each, from
//! its stdout; at the deadline it kills the child. A [`Worker`] keeps its
//! process between tasks. A crash of the child (even one
//! that takes the whole process down) is reported as an error, never shared
//! with the parent. The child is a second wall around the sandbox.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::task::{Progress, TaskCache, TrainingOutcome, TrainingTask, run_task_cached};
use super::{FailureCode, TrainingError};
use crate::sandbox::{Interruption, Sandbox};

/// Name of the hidden subcommand that runs a worker.
pub const WORKER_SUBCOMMAND: &str = "__worker";

/// Bytes of the worker's stderr kept for error messages.
const STDERR_TAIL: usize = 16 * 1024;

/// Longest line the parent reads from a worker: an outcome with every plan
/// log record at its longest fits many times over.
const MAX_LINE: u64 = 64 << 20;

/// One line the worker writes on stdout.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum WorkerEvent {
    Progress { progress: Progress },
    Done { outcome: Box<TrainingOutcome> },
    Failed { code: FailureCode, message: String },
}

/// Decode one line a worker wrote, as the parent does, and encode it back:
/// what the fuzz target `worker_protocol` drives with arbitrary bytes. A line
/// that decodes must survive the round trip.
#[doc(hidden)]
pub fn round_trip_event_line(line: &str) -> Result<String, String> {
    let event = serde_json::from_str::<WorkerEvent>(line).map_err(|e| e.to_string())?;
    serde_json::to_string(&event).map_err(|e| format!("cannot encode back: {e}"))
}

/// Decode one task line, as the worker does, and check its arguments.
#[doc(hidden)]
pub fn decode_task_line(line: &str) -> Result<TrainingTask, String> {
    let task = serde_json::from_str::<TrainingTask>(line).map_err(|e| e.to_string())?;
    task.training_args.check().map_err(|e| e.to_string())?;
    Ok(task)
}

/// How often a waiting parent looks at the cancel flag.
const CANCEL_CHECK: Duration = Duration::from_millis(100);

/// Run `task` in a child process of `exe`, killing it after `deadline`.
pub fn run_in_worker(
    exe: &Path,
    task: &TrainingTask,
    deadline: Duration,
    on_progress: &mut dyn FnMut(Progress),
) -> Result<TrainingOutcome, TrainingError> {
    run_in_worker_until(exe, task, deadline, &AtomicBool::new(false), on_progress)
}

/// [`run_in_worker`] that also kills the worker soon after `cancel` is set
/// (a node shutting down), answering [`TrainingError::Cancelled`].
pub fn run_in_worker_until(
    exe: &Path,
    task: &TrainingTask,
    deadline: Duration,
    cancel: &AtomicBool,
    on_progress: &mut dyn FnMut(Progress),
) -> Result<TrainingOutcome, TrainingError> {
    Worker::new(exe).run(task, deadline, cancel, on_progress)
}

/// A running worker process.
struct Running {
    child: Child,
    stdin: ChildStdin,
    events: mpsc::Receiver<Result<WorkerEvent, String>>,
    stderr_tail: Arc<Mutex<Vec<u8>>>,
    stderr_reader: std::thread::JoinHandle<()>,
}

impl Running {
    fn spawn(exe: &Path) -> Result<Running, TrainingError> {
        let mut child = Command::new(exe)
            .arg(WORKER_SUBCOMMAND)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| TrainingError::Worker(format!("cannot start {}: {e}", exe.display())))?;
        let missing = |what: &str| TrainingError::Worker(format!("worker has no {what}"));
        let stdin = child.stdin.take().ok_or_else(|| missing("stdin"))?;
        let stdout = child.stdout.take().ok_or_else(|| missing("stdout"))?;
        let mut stderr = child.stderr.take().ok_or_else(|| missing("stderr"))?;
        let (sender, events) = mpsc::channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut line = Vec::new();
            loop {
                line.clear();
                // A worker runs a plan: even its lines are bounded before they are read.
                match (&mut reader).take(MAX_LINE).read_until(b'\n', &mut line) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
                let event = if line.last() != Some(&b'\n') && line.len() as u64 == MAX_LINE {
                    Err(format!("a worker output line is over {MAX_LINE} bytes"))
                } else {
                    serde_json::from_slice::<WorkerEvent>(&line).map_err(|e| {
                        let start: String =
                            String::from_utf8_lossy(&line).chars().take(200).collect();
                        format!("unreadable worker output `{start}`: {e}")
                    })
                };
                let last = event.is_err();
                if sender.send(event).is_err() || last {
                    break;
                }
            }
        });
        let stderr_tail = Arc::new(Mutex::new(Vec::new()));
        let tail = stderr_tail.clone();
        let stderr_reader = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stderr.read(&mut buf) {
                if n == 0 {
                    break;
                }
                let mut tail = tail.lock().unwrap_or_else(|p| p.into_inner());
                tail.extend_from_slice(&buf[..n]);
                let excess = tail.len().saturating_sub(STDERR_TAIL);
                tail.drain(..excess);
            }
        });
        Ok(Running {
            child,
            stdin,
            events,
            stderr_tail,
            stderr_reader,
        })
    }

    /// Its exit status and the end of its stderr, once it has died.
    fn obituary(self) -> String {
        let Running {
            mut child,
            stdin,
            stderr_tail,
            stderr_reader,
            ..
        } = self;
        drop(stdin);
        let status = child
            .wait()
            .map(|s| s.to_string())
            .unwrap_or_else(|e| e.to_string());
        // The process has ended, so its stderr reaches end of file: wait for all of it.
        let _ = stderr_reader.join();
        let tail = stderr_tail.lock().unwrap_or_else(|p| p.into_inner());
        format!(
            "the worker process ended without an answer ({status}); its last output: {}",
            String::from_utf8_lossy(&tail).trim()
        )
    }

    fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A worker process that is kept between tasks, so a node pays the process
/// start, the engine set-up and the plan's compilation once, not per round.
/// Tasks run one at a time; a task that overruns its deadline, is cancelled
/// or crashes the process takes the process with it, and the next task
/// starts a fresh one. Each task still gets a fresh wasm instance.
pub struct Worker {
    exe: PathBuf,
    running: Option<Running>,
}

impl Worker {
    /// A worker that starts `exe` (`fedwasm`) when its first task comes.
    pub fn new(exe: &Path) -> Self {
        Worker {
            exe: exe.to_path_buf(),
            running: None,
        }
    }

    /// Run `task`, killing the process after `deadline` or soon after `cancel` is set.
    pub fn run(
        &mut self,
        task: &TrainingTask,
        deadline: Duration,
        cancel: &AtomicBool,
        on_progress: &mut dyn FnMut(Progress),
    ) -> Result<TrainingOutcome, TrainingError> {
        let started = Instant::now();
        let line = serde_json::to_string(task).map_err(|e| TrainingError::Worker(e.to_string()))?;
        let mut running = match self.running.take() {
            Some(running) => running,
            None => Running::spawn(&self.exe)?,
        };
        if writeln!(running.stdin, "{line}")
            .and_then(|()| running.stdin.flush())
            .is_err()
        {
            // It died while idle: say how, and leave the next task a fresh one.
            return Err(TrainingError::Worker(running.obituary()));
        }
        loop {
            let left = deadline.saturating_sub(started.elapsed());
            match running.events.recv_timeout(left.min(CANCEL_CHECK)) {
                Ok(Ok(WorkerEvent::Progress { progress })) => on_progress(progress),
                Ok(Ok(WorkerEvent::Done { outcome })) => {
                    self.running = Some(running);
                    return Ok(*outcome);
                }
                Ok(Ok(WorkerEvent::Failed { code, message })) => {
                    self.running = Some(running);
                    return Err(TrainingError::Reported { code, message });
                }
                Ok(Err(unreadable)) => {
                    running.kill();
                    return Err(TrainingError::Worker(unreadable));
                }
                Err(mpsc::RecvTimeoutError::Timeout) if cancel.load(Ordering::Relaxed) => {
                    running.kill();
                    return Err(TrainingError::Cancelled);
                }
                Err(mpsc::RecvTimeoutError::Timeout) if started.elapsed() >= deadline => {
                    running.kill();
                    return Err(TrainingError::Deadline {
                        seconds: deadline.as_secs_f64(),
                    });
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    return Err(TrainingError::Worker(running.obituary()));
                }
            }
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        if let Some(running) = self.running.take() {
            running.kill();
        }
    }
}

/// The worker's side: read tasks from `input`, one JSON line each, run them
/// in turn and write their events to `output`, until `input` ends. The
/// sandbox (engine and compiled plans), the parsed dataset and the loaded
/// plans are kept between tasks with the same limits.
pub fn worker_main(input: impl Read, mut output: impl Write) -> std::io::Result<()> {
    let mut emit = |event: &WorkerEvent| -> std::io::Result<()> {
        serde_json::to_writer(&mut output, event)?;
        output.write_all(b"\n")?;
        output.flush()
    };
    let mut sandboxes: Vec<(crate::sandbox::SandboxConfig, Sandbox, TaskCache)> = Vec::new();
    for line in BufReader::new(input).lines() {
        let line = line?;
        let result = serde_json::from_str::<TrainingTask>(&line)
            .map_err(|e| TrainingError::Worker(format!("unreadable task: {e}")))
            .and_then(|mut task| {
                task.sandbox.interruption = Interruption::External;
                // This process is `fedwasm __worker`: plans compile in a child
                // of the same executable, under the compile limits.
                if let Ok(exe) = std::env::current_exe() {
                    task.sandbox.compiler = Some(exe);
                }
                let index = match sandboxes.iter().position(|(c, _, _)| *c == task.sandbox) {
                    Some(i) => i,
                    None => {
                        sandboxes.push((
                            task.sandbox.clone(),
                            Sandbox::new(task.sandbox.clone())?,
                            TaskCache::default(),
                        ));
                        sandboxes.len() - 1
                    }
                };
                let (_, sandbox, cache) = &mut sandboxes[index];
                run_task_cached(sandbox, cache, &task, &mut |progress| {
                    if emit(&WorkerEvent::Progress { progress }).is_err() {
                        // The parent is gone (killed, or it gave up on us): nobody
                        // will read the result, so stop using the CPU now.
                        std::process::exit(3);
                    }
                })
            });
        match result {
            Ok(outcome) => emit(&WorkerEvent::Done {
                outcome: Box::new(outcome),
            })?,
            Err(e) => emit(&WorkerEvent::Failed {
                code: e.code(),
                message: e.to_string(),
            })?,
        }
    }
    Ok(())
}
