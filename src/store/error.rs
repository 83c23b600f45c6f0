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
    /// The change (an update's or a create's draft) refused; nothing was
    /// written.
    #[error("change rejected: {0}")]
    Rejected(String),
    /// The ticket was written since the update read it; nothing was
    /// written. [`TicketStore::modify`](super::TicketStore::modify) reads
    /// it again.
    #[error("ticket {0} changed since it was read")]
    Conflict(String),
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
