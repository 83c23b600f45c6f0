//! The ticket store: indradb on RocksDB behind one handle.
//!
//! * One writer thread owns every write; it is fed by a bounded channel and
//!   commits in groups (see [`writer`]): a `submit` returns only after its
//!   change is on disk (fsync of the RocksDB write-ahead log, see [`durable`]).
//! * Readers (`get`, `list`, `find_by_dedupe_key`) read RocksDB directly and
//!   may run concurrently with each other and with the writer. They can see a
//!   change of the group being committed a few milliseconds before it is
//!   durable; nothing that is acknowledged is ever missing.
//! * Layout under the data dir: `db/` (RocksDB), `blobs/<sha256>`.
//! * Nothing from mail becomes an identifier: vertex ids are UUIDs we make,
//!   vertex types and property names are constants ([`schema`]), ticket ids are
//!   made by the writer, dedupe keys are stored as SHA-256 hex property values.

mod blobs;
mod durable;
mod error;
mod retention;
mod schema;
pub use schema::LIST_PAGE;
mod writer;

#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;

use tokio::sync::{mpsc, oneshot};

pub use self::error::StoreError;
use self::schema::{Reader, Schema};
use self::writer::{Msg, Stats, Writer};
use crate::ticket::Ticket;

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

/// Handle to the store. Cheap to clone; all clones share one writer.
#[derive(Clone)]
pub struct TicketStore {
    inner: Arc<Inner>,
}

struct Inner {
    reader: Reader,
    tx: mpsc::Sender<Msg>,
    blobs_dir: PathBuf,
    /// Shared by blob writes, exclusive for the retention sweep's removals.
    blob_lock: RwLock<()>,
    writer: Mutex<Option<JoinHandle<()>>>,
    #[cfg_attr(not(test), allow(dead_code))]
    stats: Arc<Stats>,
}

impl TicketStore {
    /// Opens (or creates) the store in `dir`: RocksDB in `dir/db`, blobs in
    /// `dir/blobs`, and starts the writer thread. Call it inside a tokio
    /// runtime (the writer itself is a plain thread, RocksDB is blocking).
    pub fn open(dir: &Path) -> Result<TicketStore, StoreError> {
        const MEMTABLE_BYTES: usize = 8 << 20;
        const MEMTABLES_TOTAL_BYTES: usize = 32 << 20;
        let db_dir = dir.join("db");
        let blobs_dir = dir.join("blobs");
        for d in [dir, &db_dir, &blobs_dir] {
            std::fs::create_dir_all(d)
                .map_err(|e| StoreError::io(&format!("create {}", d.display()), e))?;
        }
        blobs::clean_temp(&blobs_dir);

        let mut opts = indradb::RocksdbDatastore::get_options(None);
        opts.create_missing_column_families(true);
        // RocksDB's default, restated: durability (durable.rs) depends on it.
        // (WAL recovery mode stays at its default, point-in-time: a torn
        // record at the tail, i.e. a write that never returned, is dropped.)
        opts.set_manual_wal_flush(false);
        // indradb's tuning (64 MiB write buffers, three per column family,
        // eight column families) lets memtables grow to 1.5 GiB before a
        // flush: a bound far above a helpdesk's needs. One budget for all.
        opts.set_write_buffer_size(MEMTABLE_BYTES);
        opts.set_max_write_buffer_number(2);
        opts.set_db_write_buffer_size(MEMTABLES_TOTAL_BYTES);
        let db = indradb::RocksdbDatastore::new_db_with_options(&db_dir, &opts)
            .map_err(|e| StoreError::db(&format!("open {}", db_dir.display()), e))?;

        let schema = Schema::new()?;
        for name in schema.indexed() {
            db.index_property(name)
                .map_err(|e| StoreError::db("index", e))?;
        }
        let reader = Reader {
            db: Arc::new(db),
            schema: Arc::new(schema),
        };
        reader.check_or_init_meta()?;
        // Index metadata and the meta vertex were written without sync.
        durable::sync_wal(&db_dir).map_err(|e| StoreError::io("fsync", e))?;
        durable::sync_dir(dir).map_err(|e| StoreError::io("fsync", e))?;

        let stats = Arc::new(Stats::default());
        let writer = Writer::new(reader.clone(), db_dir, stats.clone())?;
        let (tx, rx) = mpsc::channel(writer::CHANNEL_CAPACITY);
        let handle = std::thread::Builder::new()
            .name("ticketgate-store-writer".into())
            .spawn(move || writer.run(rx))
            .map_err(|e| StoreError::io("spawn writer", e))?;
        Ok(TicketStore {
            inner: Arc::new(Inner {
                reader,
                tx,
                blobs_dir,
                blob_lock: RwLock::new(()),
                writer: Mutex::new(Some(handle)),
                stats,
            }),
        })
    }

    /// Submits a change to the writer. Returns only once the change is
    /// durable on disk (or with an error: then it may or may not have been
    /// applied, which dedupe keys make safe to retry).
    pub async fn submit(&self, change: Change) -> Result<Outcome, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.inner
            .tx
            .send(Msg::Change(Box::new(change), reply))
            .await
            .map_err(|_| StoreError::Unavailable("store writer is gone".into()))?;
        answer
            .await
            .map_err(|_| StoreError::Unavailable("store writer is gone".into()))?
    }

    pub fn get(&self, id: &str) -> Result<Option<Ticket>, StoreError> {
        self.inner.reader.get(id)
    }

    /// The ticket with the version an update of it must name.
    pub fn get_versioned(&self, id: &str) -> Result<Option<Versioned>, StoreError> {
        Ok(self
            .inner
            .reader
            .stored(id)?
            .map(|(_, ticket, version)| Versioned { ticket, version }))
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
            if let Some(existing) = self.known_duplicate(dedupe_key)? {
                return Ok(Outcome::Duplicate(existing));
            }
            let Versioned {
                mut ticket,
                version,
            } = self
                .get_versioned(id)?
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
    fn known_duplicate(&self, key: Option<&str>) -> Result<Option<Ticket>, StoreError> {
        let Some(key) = key else {
            return Ok(None);
        };
        match self.find_by_dedupe_key(key)? {
            Some(id) => self.get(&id),
            None => Ok(None),
        }
    }

    /// Every ticket, sorted by id.
    pub fn list(&self) -> Result<Vec<Ticket>, StoreError> {
        self.inner.reader.list()
    }

    /// Every ticket's id and vertex, sorted by id, for [`tickets_of`]: a
    /// listing that holds one page of tickets at a time.
    ///
    /// [`tickets_of`]: TicketStore::tickets_of
    pub fn ticket_index(&self) -> Result<Vec<(String, uuid::Uuid)>, StoreError> {
        self.inner.reader.ticket_index()
    }

    pub fn tickets_of(&self, entries: &[(String, uuid::Uuid)]) -> Result<Vec<Ticket>, StoreError> {
        self.inner.reader.tickets_of(entries)
    }

    /// Id of the ticket a dedupe key was recorded for.
    pub fn find_by_dedupe_key(&self, key: &str) -> Result<Option<String>, StoreError> {
        self.inner.reader.find_by_dedupe_key(key)
    }

    /// Stores `bytes` as `<dir>/blobs/<sha256>` durably; returns the hex SHA-256.
    pub fn put_blob(&self, bytes: &[u8]) -> Result<String, StoreError> {
        let _shared = self
            .inner
            .blob_lock
            .read()
            .unwrap_or_else(|p| p.into_inner());
        blobs::put_blob(&self.inner.blobs_dir, bytes)
    }

    pub fn blob_path(&self, sha256: &str) -> PathBuf {
        blobs::blob_path(&self.inner.blobs_dir, sha256)
    }

    /// Stops the writer after the changes queued before this call and waits
    /// for it. Once the last clone is dropped the database is closed (and the
    /// directory may be opened again). Submits through other clones get
    /// `Unavailable` after this.
    pub async fn close(self) {
        let (ack, done) = oneshot::channel();
        if self.inner.tx.send(Msg::Close(ack)).await.is_ok() {
            let _ = done.await;
        }
        let handle = self.inner.writer.lock().ok().and_then(|mut h| h.take());
        if let Some(h) = handle {
            let _ = tokio::task::spawn_blocking(move || h.join()).await;
        }
    }

    #[cfg(test)]
    pub(crate) fn syncs(&self) -> u64 {
        self.inner
            .stats
            .syncs
            .load(std::sync::atomic::Ordering::Relaxed)
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

impl Drop for Inner {
    /// Last handle gone without `close`: stop the writer and wait for it, so
    /// the RocksDB lock is released when this returns.
    fn drop(&mut self) {
        let handle = self.writer.get_mut().ok().and_then(|h| h.take());
        let Some(handle) = handle else { return };
        let (ack, _done) = oneshot::channel();
        if self.tx.try_send(Msg::Close(ack)).is_ok() {
            let _ = handle.join();
        }
    }
}
