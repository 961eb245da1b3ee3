//! The top-level error: one variant per layer, each wrapping that layer's own
//! `thiserror` enum.

use crate::identity::IdentityError;
use crate::net::transport;
use crate::proto::messaging;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error(transparent)]
    Identity(#[from] IdentityError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Transport(#[from] transport::Error),
    #[error(transparent)]
    Messaging(#[from] messaging::Error),
    #[error("io error on {what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("data dir {0} is in use by another running node; give each node its own --data-dir")]
    DataDirInUse(String),
    #[error("peer not found: {0}")]
    PeerNotFound(String),
    #[error("{0} matches several peers: {1}")]
    AmbiguousPeer(String, String),
    #[error("the node has shut down")]
    Shutdown,
    #[error("invalid argument: {0}")]
    Invalid(String),
}

impl Error {
    pub(crate) fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            what: what.into(),
            source,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
