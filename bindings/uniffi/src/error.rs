//! [`ApiError`]: the one error foreign callers see.
//!
//! Flat (each variant carries the core error's message): the variants are the
//! few cases a caller handles differently; the message says what failed.

/// Why a call failed.
#[derive(Debug, thiserror::Error, uniffi::Error)]
#[uniffi(flat_error)]
pub enum ApiError {
    /// No peer matches (unknown id or name, or nobody answered at an address).
    #[error("{0}")]
    NotFound(String),
    /// A bad argument: an unparsable address, an ambiguous peer name, ...
    #[error("{0}")]
    Invalid(String),
    /// Local storage or sockets failed (includes a data dir already in use).
    #[error("{0}")]
    Io(String),
    /// The node has shut down; start a new one.
    #[error("the node has shut down")]
    Shutdown,
    /// Anything else.
    #[error("{0}")]
    Other(String),
}

impl From<peerconnect::Error> for ApiError {
    fn from(e: peerconnect::Error) -> Self {
        use peerconnect::Error as E;
        match e {
            E::PeerNotFound(_) => Self::NotFound(e.to_string()),
            E::Invalid(_) | E::AmbiguousPeer(..) => Self::Invalid(e.to_string()),
            E::Io { .. } | E::DataDirInUse(_) | E::Store(_) | E::Identity(_) => {
                Self::Io(e.to_string())
            }
            E::Messaging(peerconnect::proto::messaging::Error::UnknownMessage(..)) => {
                Self::NotFound(e.to_string())
            }
            E::Messaging(_) => Self::Invalid(e.to_string()),
            E::Shutdown => Self::Shutdown,
            _ => Self::Other(e.to_string()),
        }
    }
}
