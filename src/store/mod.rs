//! The ticket store, seen through one interface: operations are data
//! ([`Change`]: create a ticket with what quotes its id, write back a
//! ticket changed by the caller at the version it read; the outbox's claim
//! and record of a reply, `replies.rs`) and reads, all async so that a
//! backend over the network can implement [`Backend`] too;
//! `tests/store.rs` is the suite every backend must pass. The one-host
//! backend is [`embedded`] (indradb on RocksDB). Blobs stay synchronous:
//! they are written from the parser's blocking thread.
//!
//! Nothing from mail becomes an identifier: ticket ids are made by the
//! store, dedupe keys are stored hashed, internal ids are UUIDs we make
//! ([`schema`]).

mod blobs;
mod durable;
pub mod embedded;
mod error;
mod replies;
mod retention;
mod schema;
pub use schema::LIST_PAGE;
mod writer;

#[cfg(test)]
mod tests;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

pub use self::error::StoreError;
pub use self::replies::{Backoff, Claim, Finish, ReplyKey};
use crate::ticket::Ticket;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A ticket's place in a listing: its id and the backend's handle for it.
pub type IndexEntry = (String, uuid::Uuid);

/// What a ticket store does, whichever engine keeps the tickets.
pub trait Backend: Send + Sync + 'static {
    /// Applies `change` durably: returns once it is on disk (committed).
    fn submit(&self, change: Change) -> BoxFuture<'_, Result<Outcome, StoreError>>;
    /// The ticket with the version an update of it must name.
    fn get_versioned<'a>(
        &'a self,
        id: &'a str,
    ) -> BoxFuture<'a, Result<Option<Versioned>, StoreError>>;
    /// Every ticket's id and handle, sorted by id.
    fn ticket_index(&self) -> BoxFuture<'_, Result<Vec<IndexEntry>, StoreError>>;
    fn tickets_of<'a>(
        &'a self,
        entries: &'a [IndexEntry],
    ) -> BoxFuture<'a, Result<Vec<Ticket>, StoreError>>;
    /// Id of the ticket a dedupe key was recorded for.
    fn find_by_dedupe_key<'a>(
        &'a self,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Option<String>, StoreError>>;
    /// Stores `bytes` durably under their SHA-256; returns it in hex.
    fn put_blob(&self, bytes: &[u8]) -> Result<String, StoreError>;
    fn blob_path(&self, sha256: &str) -> PathBuf;
    /// Removes the blobs older than `retention` that no ticket active
    /// since then refers to; returns how many.
    fn sweep_blobs(&self, now: SystemTime, retention: Duration) -> Result<usize, StoreError>;
    /// A durable write of a probe record, as a change would be: `Ok` once
    /// it is committed. Readiness asks this.
    fn probe(&self) -> BoxFuture<'_, Result<(), StoreError>>;
    /// Finishes what was submitted before and stops taking changes.
    fn close(&self) -> BoxFuture<'_, ()>;
}

/// Drafts, in the writer, what must quote a new ticket's id (its
/// confirmation), in the same atomic write; `Err` writes nothing.
pub type DraftFn = Box<dyn FnOnce(&mut Ticket) -> Result<(), String> + Send>;

/// A change for the writer: data, except for the one draft that needs the
/// id the writer gives.
// The ticket travels by value (the API is fixed); it is boxed on its way
// through the channel, so the size difference costs nothing.
#[allow(clippy::large_enum_variant)]
pub enum Change {
    /// Opens a ticket. The writer assigns `ticket.id` = "<prefix>-<year>-<seq>"
    /// with seq a 6-digit zero-padded per-(prefix, year) counter owned by the
    /// writer and persisted in the same write. If `dedupe_key` is Some and
    /// already known, nothing is created: `Outcome::Duplicate(existing ticket)`.
    ///
    /// `draft`, if given, runs in the writer after the id is assigned and
    /// before the write (to render a reply that quotes the ticket id); it
    /// goes into the same atomic write. If it returns `Err(msg)` nothing is
    /// written and no sequence number is used: `StoreError::Rejected(msg)`.
    Create {
        prefix: String,
        year: i32,
        ticket: Ticket,
        dedupe_key: Option<String>,
        draft: Option<DraftFn>,
    },
    /// Writes `ticket` (as changed by the caller) over the stored one, if
    /// that is still at `version`; otherwise `StoreError::Conflict` and
    /// nothing is written. Duplicate if `dedupe_key` is known; the key is
    /// recorded for this ticket when written. See [`TicketStore::modify`].
    Update {
        ticket: Ticket,
        version: u64,
        dedupe_key: Option<String>,
    },
}

/// A ticket as stored, with the version an update of it must name.
#[derive(Debug, Clone)]
pub struct Versioned {
    pub ticket: Ticket,
    pub version: u64,
}

/// Times [`TicketStore::modify`] reads and changes a ticket again when
/// another change was written first.
const MAX_CONFLICTS: usize = 16;

/// What a change did, with the ticket as it now is on disk.
#[derive(Debug, Clone)]
pub enum Outcome {
    Created(Ticket),
    Updated(Ticket),
    Duplicate(Ticket),
}

impl Outcome {
    pub fn ticket(&self) -> &Ticket {
        match self {
            Outcome::Created(t) | Outcome::Updated(t) | Outcome::Duplicate(t) => t,
        }
    }

    pub fn into_ticket(self) -> Ticket {
        match self {
            Outcome::Created(t) | Outcome::Updated(t) | Outcome::Duplicate(t) => t,
        }
    }
}

/// Handle to the store. Cheap to clone; all clones share one backend.
#[derive(Clone)]
pub struct TicketStore {
    backend: Arc<dyn Backend>,
}

impl TicketStore {
    /// Opens (or creates) the one-host store in `dir`. Call it inside a
    /// tokio runtime.
    pub fn open(dir: &Path) -> Result<TicketStore, StoreError> {
        Ok(TicketStore::with_backend(Arc::new(
            embedded::Embedded::open(dir)?,
        )))
    }

    pub fn with_backend(backend: Arc<dyn Backend>) -> TicketStore {
        TicketStore { backend }
    }

    /// Submits a change. Returns only once the change is durable (or with
    /// an error: then it may or may not have been applied, which dedupe
    /// keys make safe to retry).
    pub async fn submit(&self, change: Change) -> Result<Outcome, StoreError> {
        self.backend.submit(change).await
    }

    pub async fn get(&self, id: &str) -> Result<Option<Ticket>, StoreError> {
        Ok(self.get_versioned(id).await?.map(|v| v.ticket))
    }

    pub async fn get_versioned(&self, id: &str) -> Result<Option<Versioned>, StoreError> {
        self.backend.get_versioned(id).await
    }

    /// Reads a ticket, runs `change` on it here, in the caller, and writes
    /// it back if nothing else was written to it in between; otherwise reads
    /// and changes it again (`change` runs on a fresh copy each time, so it
    /// must not count on what an earlier run did). `Err(why)` from `change`
    /// writes nothing: `StoreError::Rejected(why)`. A known dedupe key is a
    /// duplicate: `change` does not run.
    pub async fn modify(
        &self,
        id: &str,
        dedupe_key: Option<&str>,
        mut change: impl FnMut(&mut Ticket) -> Result<(), String>,
    ) -> Result<Outcome, StoreError> {
        for _ in 0..MAX_CONFLICTS {
            if let Some(existing) = self.known_duplicate(dedupe_key).await? {
                return Ok(Outcome::Duplicate(existing));
            }
            let Versioned {
                mut ticket,
                version,
            } = self
                .get_versioned(id)
                .await?
                .ok_or_else(|| StoreError::NotFound(id.to_string()))?;
            run_change(&mut change, &mut ticket)?;
            // The id is the store's: an update cannot rename a ticket.
            ticket.id = id.to_string();
            let update = Change::Update {
                ticket,
                version,
                dedupe_key: dedupe_key.map(str::to_string),
            };
            match self.submit(update).await {
                Err(StoreError::Conflict(_)) => continue,
                other => return other,
            }
        }
        Err(StoreError::Unavailable(format!(
            "ticket {id} changed {MAX_CONFLICTS} times while being updated"
        )))
    }

    /// The ticket a dedupe key was already recorded for.
    async fn known_duplicate(&self, key: Option<&str>) -> Result<Option<Ticket>, StoreError> {
        let Some(key) = key else {
            return Ok(None);
        };
        match self.find_by_dedupe_key(key).await? {
            Some(id) => self.get(&id).await,
            None => Ok(None),
        }
    }

    /// Every ticket, sorted by id.
    pub async fn list(&self) -> Result<Vec<Ticket>, StoreError> {
        let index = self.ticket_index().await?;
        let mut tickets = Vec::with_capacity(index.len());
        for page in index.chunks(LIST_PAGE) {
            tickets.extend(self.tickets_of(page).await?);
        }
        Ok(tickets)
    }

    /// Every ticket's id and handle, sorted by id, for [`tickets_of`]: a
    /// listing that holds one page of tickets at a time.
    ///
    /// [`tickets_of`]: TicketStore::tickets_of
    pub async fn ticket_index(&self) -> Result<Vec<IndexEntry>, StoreError> {
        self.backend.ticket_index().await
    }

    pub async fn tickets_of(&self, entries: &[IndexEntry]) -> Result<Vec<Ticket>, StoreError> {
        self.backend.tickets_of(entries).await
    }

    /// Id of the ticket a dedupe key was recorded for.
    pub async fn find_by_dedupe_key(&self, key: &str) -> Result<Option<String>, StoreError> {
        self.backend.find_by_dedupe_key(key).await
    }

    /// Stores `bytes` durably; returns the hex SHA-256.
    pub fn put_blob(&self, bytes: &[u8]) -> Result<String, StoreError> {
        self.backend.put_blob(bytes)
    }

    pub fn blob_path(&self, sha256: &str) -> PathBuf {
        self.backend.blob_path(sha256)
    }

    /// Removes the blobs past their retention (see [`Backend::sweep_blobs`]).
    pub fn sweep_blobs(&self, now: SystemTime, retention: Duration) -> Result<usize, StoreError> {
        self.backend.sweep_blobs(now, retention)
    }

    /// Whether the store takes a durable write now.
    pub async fn probe(&self) -> Result<(), StoreError> {
        self.backend.probe().await
    }

    /// Stops the backend after the changes submitted before this call and
    /// waits for it. Submits through other clones get `Unavailable` after
    /// this.
    pub async fn close(self) {
        self.backend.close().await
    }
}

/// Runs a caller's change on a ticket; `Err` and panics become `Rejected`.
fn run_change(
    change: &mut impl FnMut(&mut Ticket) -> Result<(), String>,
    ticket: &mut Ticket,
) -> Result<(), StoreError> {
    use std::panic::{AssertUnwindSafe, catch_unwind};
    match catch_unwind(AssertUnwindSafe(|| change(ticket))) {
        Ok(Ok(())) => Ok(()),
        Ok(Err(why)) => Err(StoreError::Rejected(why)),
        Err(_) => Err(StoreError::Rejected("update function panicked".into())),
    }
}
