//! Training in a worker process under a watchdog.
//!
//! Epoch interruption inside wasm costs 1.5–3× in SIMD training loops, so a
//! training task runs without any in-loop check, in a child process of the
//! `fedwasm` binary (`fedwasm __worker`). The parent sends the task as one JSON
//! line on the child's stdin and reads events, one JSON line each, from its
//! stdout; at the deadline it kills the child. A crash of the child (even one
//! that takes the whole process down) is reported as an error, never shared
//! with the parent. The child is a second wall around the sandbox.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::TrainingError;
use super::task::{Progress, TrainingOutcome, TrainingTask, run_task};
use crate::sandbox::{Interruption, Sandbox};

/// Name of the hidden subcommand that runs a worker.
pub const WORKER_SUBCOMMAND: &str = "__worker";

/// Bytes of the worker's stderr kept for error messages.
const STDERR_TAIL: usize = 16 * 1024;

/// One line the worker writes on stdout.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum WorkerEvent {
    Progress { progress: Progress },
    Done { outcome: Box<TrainingOutcome> },
    Failed { code: String, message: String },
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
    let started = Instant::now();
    let mut child = Command::new(exe)
        .arg(WORKER_SUBCOMMAND)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| TrainingError::Worker(format!("cannot start {}: {e}", exe.display())))?;
    let line = serde_json::to_string(task).map_err(|e| TrainingError::Worker(e.to_string()))?;
    let mut stdin = child
        .stdin
        .take()
        .ok_or_else(|| TrainingError::Worker("no stdin".into()))?;
    // A worker that dies at once closes its stdin; that surfaces below as a missing answer.
    let _ = writeln!(stdin, "{line}");
    drop(stdin);

    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| TrainingError::Worker("no stdout".into()))?;
    let stderr = child
        .stderr
        .take()
        .ok_or_else(|| TrainingError::Worker("no stderr".into()))?;
    let (events, received) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let event = serde_json::from_str::<WorkerEvent>(&line)
                .map_err(|e| format!("unreadable worker output `{line}`: {e}"));
            if events.send(event).is_err() {
                break;
            }
        }
    });
    let stderr_tail = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = stderr.take(1 << 20).read_to_end(&mut buf);
        let start = buf.len().saturating_sub(STDERR_TAIL);
        String::from_utf8_lossy(&buf[start..]).into_owned()
    });

    let result = loop {
        let left = deadline.saturating_sub(started.elapsed());
        match received.recv_timeout(left.min(CANCEL_CHECK)) {
            Ok(Ok(WorkerEvent::Progress { progress })) => on_progress(progress),
            Ok(Ok(WorkerEvent::Done { outcome })) => break Ok(*outcome),
            Ok(Ok(WorkerEvent::Failed { code, message })) => {
                break Err(TrainingError::Reported { code, message });
            }
            Ok(Err(unreadable)) => break Err(TrainingError::Worker(unreadable)),
            Err(mpsc::RecvTimeoutError::Timeout) if cancel.load(Ordering::Relaxed) => {
                let _ = child.kill();
                break Err(TrainingError::Cancelled);
            }
            Err(mpsc::RecvTimeoutError::Timeout) if started.elapsed() >= deadline => {
                let _ = child.kill();
                break Err(TrainingError::Deadline {
                    seconds: deadline.as_secs_f64(),
                });
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                let status = child
                    .wait()
                    .map(|s| s.to_string())
                    .unwrap_or_else(|e| e.to_string());
                let tail = stderr_tail.join().unwrap_or_default();
                return Err(TrainingError::Worker(format!(
                    "the worker process ended without an answer ({status}); its last output: {}",
                    tail.trim()
                )));
            }
        }
    };
    let _ = child.wait();
    result
}

/// The worker's side: read one task from `input`, run it, write events to `output`.
pub fn worker_main(input: impl Read, mut output: impl Write) -> std::io::Result<()> {
    let mut line = String::new();
    BufReader::new(input).read_line(&mut line)?;
    let mut emit = |event: &WorkerEvent| -> std::io::Result<()> {
        serde_json::to_writer(&mut output, event)?;
        output.write_all(b"\n")?;
        output.flush()
    };
    let result = serde_json::from_str::<TrainingTask>(&line)
        .map_err(|e| TrainingError::Worker(format!("unreadable task: {e}")))
        .and_then(|mut task| {
            task.sandbox.interruption = Interruption::External;
            let sandbox = Sandbox::new(task.sandbox.clone())?;
            run_task(&sandbox, &task, &mut |progress| {
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
        }),
        Err(e) => emit(&WorkerEvent::Failed {
            code: e.code(),
            message: e.to_string(),
        }),
    }
}
