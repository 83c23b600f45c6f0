//! The one-host backend: indradb on RocksDB behind one writer thread.
//!
//! * One writer thread owns every write; it is fed by a bounded channel and
//!   commits in groups (see [`writer`](super::writer)): a `submit` returns
//!   only after its change is on disk (fsync of the RocksDB write-ahead log,
//!   see [`durable`](super::durable)).
//! * Readers read RocksDB directly and may run concurrently with each other
//!   and with the writer. They can see a change of the group being
//!   committed a few milliseconds before it is durable; nothing that is
//!   acknowledged is ever missing.
//! * Layout under the data dir: `db/` (RocksDB), `blobs/<sha256>`.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use tokio::sync::{mpsc, oneshot};

use super::schema::{Reader, Schema};
use super::writer::{self, Msg, Stats, Writer};
use super::{
    Backend, BoxFuture, Change, IndexEntry, Outcome, StoreError, Versioned, blobs, durable,
};
use crate::ticket::Ticket;

/// The one-host backend: indradb on RocksDB in a directory, one writer
/// thread.
pub struct Embedded {
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

impl Embedded {
    /// Opens (or creates) the store in `dir`: RocksDB in `dir/db`, blobs in
    /// `dir/blobs`, and starts the writer thread. Call it inside a tokio
    /// runtime (the writer itself is a plain thread, RocksDB is blocking).
    pub fn open(dir: &Path) -> Result<Embedded, StoreError> {
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
        Ok(Embedded {
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

    #[cfg(test)]
    pub(crate) fn syncs(&self) -> u64 {
        self.inner
            .stats
            .syncs
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    pub(super) fn blobs_dir(&self) -> &Path {
        &self.inner.blobs_dir
    }

    /// The reads, synchronous: for the retention sweep, which runs on a
    /// blocking thread.
    pub(super) fn reader(&self) -> &Reader {
        &self.inner.reader
    }

    pub(super) fn blob_lock(&self) -> &RwLock<()> {
        &self.inner.blob_lock
    }
}

impl Backend for Embedded {
    /// Returns only once the change is durable on disk (or with an error:
    /// then it may or may not have been applied, which dedupe keys make
    /// safe to retry).
    fn submit(&self, change: Change) -> BoxFuture<'_, Result<Outcome, StoreError>> {
        Box::pin(async move {
            let (reply, answer) = oneshot::channel();
            self.inner
                .tx
                .send(Msg::Change(Box::new(change), reply))
                .await
                .map_err(|_| StoreError::Unavailable("store writer is gone".into()))?;
            answer
                .await
                .map_err(|_| StoreError::Unavailable("store writer is gone".into()))?
        })
    }

    // RocksDB reads are local and short: they run on the caller's thread,
    // as before the interface became async for backends over a network.
    fn get_versioned<'a>(
        &'a self,
        id: &'a str,
    ) -> BoxFuture<'a, Result<Option<Versioned>, StoreError>> {
        let read = self.inner.reader.stored(id);
        Box::pin(async move { Ok(read?.map(|(_, ticket, version)| Versioned { ticket, version })) })
    }

    fn ticket_index(&self) -> BoxFuture<'_, Result<Vec<IndexEntry>, StoreError>> {
        let read = self.inner.reader.ticket_index();
        Box::pin(async move { read })
    }

    fn tickets_of<'a>(
        &'a self,
        entries: &'a [IndexEntry],
    ) -> BoxFuture<'a, Result<Vec<Ticket>, StoreError>> {
        let read = self.inner.reader.tickets_of(entries);
        Box::pin(async move { read })
    }

    fn find_by_dedupe_key<'a>(
        &'a self,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Option<String>, StoreError>> {
        let read = self.inner.reader.find_by_dedupe_key(key);
        Box::pin(async move { read })
    }

    fn put_blob(&self, bytes: &[u8]) -> Result<String, StoreError> {
        let _shared = self
            .inner
            .blob_lock
            .read()
            .unwrap_or_else(|p| p.into_inner());
        blobs::put_blob(&self.inner.blobs_dir, bytes)
    }

    fn blob_path(&self, sha256: &str) -> PathBuf {
        blobs::blob_path(&self.inner.blobs_dir, sha256)
    }

    fn sweep_blobs(&self, now: SystemTime, retention: Duration) -> Result<usize, StoreError> {
        super::retention::sweep_blobs(self, now, retention)
    }

    fn probe(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            let gone = || StoreError::Unavailable("store writer is gone".into());
            let (reply, answer) = oneshot::channel();
            self.inner
                .tx
                .send(Msg::Probe(reply))
                .await
                .map_err(|_| gone())?;
            answer.await.map_err(|_| gone())?
        })
    }

    /// Stops the writer after the changes queued before this call and
    /// waits for it. Once the last handle is dropped the database is closed
    /// (and the directory may be opened again).
    fn close(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let (ack, done) = oneshot::channel();
            if self.inner.tx.send(Msg::Close(ack)).await.is_ok() {
                let _ = done.await;
            }
            let handle = self.inner.writer.lock().ok().and_then(|mut h| h.take());
            if let Some(h) = handle {
                let _ = tokio::task::spawn_blocking(move || h.join()).await;
            }
        })
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
