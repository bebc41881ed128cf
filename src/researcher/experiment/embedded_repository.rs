//! The repository an experiment can serve itself (`[repository.embedded]`),
//! for a researcher who runs no `fedwasm repository`. It needs the HTTP
//! server, which a researcher-only build leaves out (cargo feature
//! `repository-server`); such a build says so and points to the remote one.

use std::path::PathBuf;

use tokio::sync::oneshot;

use crate::repository::RepositoryClient;
use crate::researcher::ExperimentError;

/// Serve a repository on `bind` with its files in `files`, until the
/// returned sender is dropped; returns a client of it.
#[cfg(feature = "repository-server")]
pub(super) async fn start(
    bind: &str,
    files: PathBuf,
) -> Result<(RepositoryClient, oneshot::Sender<()>), ExperimentError> {
    use crate::repository::{RepositoryConfig, RepositoryLink, serve};

    let io = |what: String| move |source| ExperimentError::Io { what, source };
    let listener = tokio::net::TcpListener::bind(bind)
        .await
        .map_err(io(format!("listening on {bind} for the repository")))?;
    let addr = listener
        .local_addr()
        .map_err(io("reading the repository address".into()))?;
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(serve(listener, RepositoryConfig::new(files), async {
        let _ = stopped.await;
    }));
    Ok((
        RepositoryLink::new(format!("http://{addr}"), None).client(),
        stop,
    ))
}

/// Without the HTTP server: refused, saying what to do instead.
#[cfg(not(feature = "repository-server"))]
pub(super) async fn start(
    bind: &str,
    _files: PathBuf,
) -> Result<(RepositoryClient, oneshot::Sender<()>), ExperimentError> {
    Err(ExperimentError::Argument(format!(
        "cannot serve the embedded repository on `{bind}`: this build has no repository server (cargo feature `repository-server`); use [repository.remote] with a running `fedwasm repository`, or build with the feature"
    )))
}
