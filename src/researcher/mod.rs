//! The researcher's side.
//!
//! - [`link`]: [`NodeLink`], the researcher's connection to the nodes: send
//!   requests, gather the replies, watch node status and monitoring.

mod error;
pub mod link;

pub use error::ResearcherError;
pub use link::{NodeLink, Reply};
