//! Making RocksDB writes durable.
//!
//! indradb's RocksDB datastore writes every change with
//! `self.db.write(batch)` (indradb-lib 5.0.0 `src/rdb/datastore.rs`), i.e.
//! with RocksDB's default `WriteOptions`, whose `sync` is `false`
//! (rocksdb `include/rocksdb/options.h`: "a DB write with sync==false has
//! similar crash semantics as the write() system call"). The RocksDB handle
//! is private to the datastore, so we can neither pass `sync = true` nor call
//! `DB::flush_wal(true)`. `Database::sync()` exists but runs a full manual
//! compaction of every column family followed by a memtable flush: durable,
//! but its cost grows with the size of the database, unusable per commit.
//!
//! What we rely on instead:
//! * with `manual_wal_flush = false` (RocksDB's default, we do not change it)
//!   `log::Writer::AddRecord` ends with `dest_->Flush()` (rocksdb
//!   `db/log_writer.cc`), so when `db.write()` returns, the whole WAL record
//!   has been handed to the kernel with write(2);
//! * fsync/fdatasync act on the file (inode), not on the descriptor: syncing
//!   the WAL through a descriptor of our own forces RocksDB's writes to disk;
//! * RocksDB itself syncs what it writes outside the WAL (SST files of a
//!   flush, MANIFEST, CURRENT), and only deletes a WAL after its content is in
//!   synced SST files, so a WAL that vanished between listing and opening it
//!   needs no sync;
//! * WAL files are `<db>/NNNNNN.log` (no `wal_dir` is configured); the info
//!   log is `LOG`, without the extension.
//!
//! So after a group of writes the writer calls [`sync_wal`]: fdatasync every
//! `*.log` file of the db directory, then fsync the directory (a WAL created
//! by a memtable switch must have its directory entry on disk too). Only then
//! are the submitters answered.

use std::fs::{self, File};
use std::io;
use std::path::Path;

/// fdatasync all WAL files of the RocksDB directory, then fsync the
/// directory itself. Fails if no WAL file is found: with the WAL enabled
/// RocksDB always has one, so its absence means the directory is not what
/// we think it is and nothing can be promised.
pub(crate) fn sync_wal(db_dir: &Path) -> io::Result<()> {
    let mut synced = 0usize;
    for entry in fs::read_dir(db_dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let is_wal = name.to_str().is_some_and(|n| n.ends_with(".log"));
        if !is_wal {
            continue;
        }
        match File::open(entry.path()) {
            Ok(f) => {
                f.sync_data()?;
                synced += 1;
            }
            // An obsolete WAL RocksDB removed after flushing it to synced SSTs.
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        }
    }
    if synced == 0 {
        return Err(io::Error::other(format!(
            "no RocksDB write-ahead log found in {}",
            db_dir.display()
        )));
    }
    File::open(db_dir)?.sync_all()
}

/// fsync a directory (after creating or renaming an entry in it).
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}
