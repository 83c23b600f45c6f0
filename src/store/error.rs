//! Errors of the ticket store.

/// Why a store operation did not succeed.
///
/// `Unavailable` is the one the SMTP side must turn into a temporary
/// failure: the change is not (known to be) on disk.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No ticket with this id.
    #[error("ticket not found: {0}")]
    NotFound(String),
    /// The `apply` closure of an update refused the change; nothing was written.
    #[error("change rejected: {0}")]
    Rejected(String),
    /// The disk, RocksDB or the writer task failed (or the store is closed):
    /// the change is not durable. Retrying later (after a restart) is safe.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The caller passed something the store refuses to use (a ticket-id
    /// prefix or year that cannot form a valid id).
    #[error("invalid request: {0}")]
    Invalid(String),
    /// Stored data could not be decoded, or the on-disk index cannot be
    /// trusted. The store refuses to guess.
    #[error("store data corrupt: {0}")]
    Corrupt(String),
}

impl StoreError {
    pub(crate) fn db(context: &str, err: impl std::fmt::Display) -> StoreError {
        StoreError::Unavailable(format!("{context}: {err}"))
    }

    pub(crate) fn io(context: &str, err: std::io::Error) -> StoreError {
        StoreError::Unavailable(format!("{context}: {err}"))
    }
}
