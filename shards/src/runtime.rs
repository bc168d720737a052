//! Shard threads, their rings and the mesh between them (being built).

use crate::{Endpoint, RuntimeConfig};

/// Why the runtime could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(
        "io_uring is not available ({0}); the registrar needs Linux 5.19 or later with io_uring enabled (some container runtimes block it: allow io_uring_setup in the seccomp profile)"
    )]
    IoUringUnavailable(std::io::Error),
    #[error("cannot listen on {0}: {1}")]
    Listen(Endpoint, std::io::Error),
    #[error("{0}")]
    Other(String),
}

/// A running registrar.
#[derive(Debug)]
pub struct Handle {
    endpoints: Vec<Endpoint>,
}

impl Handle {
    /// The endpoints actually bound (ports resolved).
    pub fn endpoints(&self) -> &[Endpoint] {
        &self.endpoints
    }

    /// Stops every shard (closing all connections) and waits for them.
    pub fn shutdown(self) -> Result<(), StartError> {
        Ok(())
    }
}

/// Starts the shards.
pub fn start(config: RuntimeConfig) -> Result<Handle, StartError> {
    Err(StartError::Other(format!(
        "runtime not built yet ({} shards requested)",
        config.shards
    )))
}
