//! [`NodeContext`]: what the request loop and the trainer share — the
//! node's folder, configuration, store, publisher, repository client, train
//! queue, shutdown token and record of recent requests — with the small
//! helpers both use to answer. Both depend on this file; it depends on
//! neither, so the node's modules point one way: daemon → trainer → context.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::AtomicBool;

use tokio_util::sync::CancellationToken;

use super::job::TrainJob;
use super::queue::FairQueue;
use super::recent::RecentRequests;
use super::{NodeConfig, NodeStore};
use crate::transport::Publisher;
use crate::wire::{
    ErrorCode, ErrorMessage, MAX_TEXT_BYTES, Message, RequestRef, bounded_text, topics,
};

/// State shared by the request loop and the trainer.
pub(crate) struct NodeContext {
    pub(crate) dir: PathBuf,
    pub(crate) config: NodeConfig,
    pub(crate) store: Mutex<NodeStore>,
    pub(crate) busy: AtomicBool,
    pub(crate) stopping: AtomicBool,
    pub(crate) publisher: Publisher,
    /// One HTTP client for every download and upload: its connections are reused.
    pub(crate) repository: crate::repository::RepositoryClient,
    /// Train requests waiting for the trainer.
    pub(crate) queue: FairQueue<TrainJob>,
    /// Cancelled when the node stops: the task in hand ends at once.
    pub(crate) cancel: CancellationToken,
    /// The worker executable, never named in what leaves the node.
    pub(crate) worker_exe: PathBuf,
    /// Train requests in hand or answered, so a re-sent one runs once.
    pub(crate) recent: Mutex<RecentRequests>,
    /// The researchers this node serves (and refusal counts).
    pub(crate) keyring: std::sync::Arc<crate::identity::KeyRing>,
    /// How often each researcher key may ask for an approval.
    pub(crate) approvals: Mutex<super::approval_limit::ApprovalLimit>,
}

impl NodeContext {
    /// Run `f` on the store. A poisoned lock (a panic elsewhere) still holds a
    /// consistent SQLite connection, so it is used rather than propagated.
    pub(crate) fn store<T>(&self, f: impl FnOnce(&mut NodeStore) -> T) -> T {
        let mut guard = self.store.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut guard)
    }

    /// Send `message` to the reply topic of the researcher it answers,
    /// logging a failure.
    pub(crate) async fn reply(&self, message: Message) {
        let topic = topics::replies(message.addressee());
        if let Err(e) = self.publisher.publish(&topic, &message).await {
            tracing::warn!("cannot send {}: {e}", message.command());
        }
    }

    /// `text` without this node's local paths, which never leave the node.
    pub(crate) fn redact(&self, text: &str, more: &[&Path]) -> String {
        let mut private = vec![(self.worker_exe.clone(), "<fedwasm>")];
        private.extend(
            spellings(&self.dir)
                .into_iter()
                .map(|p| (p, "<node folder>")),
        );
        if let Some(parent) = std::path::absolute(&self.dir)
            .ok()
            .and_then(|d| d.parent().map(Path::to_path_buf))
            .filter(|p| p.parent().is_some())
        {
            private.push((parent, "<node folder's parent>"));
        }
        for path in more {
            private.extend(spellings(path).into_iter().map(|p| (p, "<dataset>")));
        }
        redact(text, private)
    }

    /// An error reply: its text without local paths (the node's own, and
    /// `private_paths`) and cut to [`MAX_TEXT_BYTES`], so it always reaches
    /// the researcher.
    pub(crate) fn error_message(
        &self,
        researcher_id: Option<String>,
        code: ErrorCode,
        message: &str,
        private_paths: &[&Path],
        request: Option<RequestRef>,
    ) -> Message {
        tracing::warn!("answering {code:?}: {message}");
        Message::Error(ErrorMessage {
            researcher_id,
            node_id: self.config.id.clone(),
            code,
            message: bounded_text(self.redact(message, private_paths), MAX_TEXT_BYTES),
            request,
        })
    }

    /// Send an error reply (see [`NodeContext::error_message`]).
    pub(crate) async fn error(
        &self,
        researcher_id: Option<String>,
        code: ErrorCode,
        message: String,
        request: Option<RequestRef>,
    ) {
        let reply = self.error_message(researcher_id, code, &message, &[], request);
        self.reply(reply).await;
    }

    /// Run `f` on the approval requests' rate limit.
    pub(crate) fn approvals<T>(
        &self,
        f: impl FnOnce(&mut super::approval_limit::ApprovalLimit) -> T,
    ) -> T {
        // Nothing under this lock can panic half-way, so a poisoned lock is consistent.
        let mut guard = self.approvals.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut guard)
    }

    /// Run `f` on the record of recent train requests.
    pub(crate) fn recent<T>(&self, f: impl FnOnce(&mut RecentRequests) -> T) -> T {
        // Nothing under this lock can panic half-way, so a poisoned lock is consistent.
        let mut guard = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut guard)
    }
}

/// The ways `path` may be spelt in an error: as given, absolute (a
/// relative `--dir` becomes absolute in what the node builds from it) and
/// with its links resolved.
fn spellings(path: &Path) -> Vec<PathBuf> {
    let mut all = vec![path.to_path_buf()];
    all.extend(std::path::absolute(path).ok());
    all.extend(path.canonicalize().ok());
    all
}

/// `text` with each private path replaced by its name, the longest path
/// first (so a folder's path inside a longer one is replaced as a whole).
fn redact(text: &str, mut private: Vec<(PathBuf, &str)>) -> String {
    private.retain(|(path, _)| !path.as_os_str().is_empty());
    private.sort_by_key(|(path, _)| std::cmp::Reverse(path.as_os_str().len()));
    let mut text = text.to_string();
    for (path, name) in private {
        text = text.replace(&path.display().to_string(), name);
    }
    text
}

/// Where downloaded plans are cached, by hash.
pub(crate) fn plan_cache(dir: &Path) -> PathBuf {
    dir.join("plans")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_relative_folder_is_redacted_in_every_spelling() {
        let relative = Path::new("hospital-a");
        let absolute = std::path::absolute(relative).unwrap();
        let parent = absolute.parent().unwrap().to_path_buf();
        let text = format!(
            "cannot read {}/cache/x and {}/work and {}/other",
            absolute.display(),
            relative.display(),
            parent.display()
        );
        let mut private: Vec<(PathBuf, &str)> = spellings(relative)
            .into_iter()
            .map(|p| (p, "<node folder>"))
            .collect();
        private.push((parent.clone(), "<node folder's parent>"));
        let shown = redact(&text, private);
        assert_eq!(
            shown,
            "cannot read <node folder>/cache/x and <node folder>/work and <node folder's parent>/other"
        );
    }
}
