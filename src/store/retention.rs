//! Retention of blobs (raw messages and attachments): one older than the
//! retention is removed unless a ticket active within the retention refers
//! to it. A ticket's activity is its latest message or history entry, so
//! a long-lived case keeps its first message.

use std::collections::HashSet;
use std::fs;
use std::path::Path;
use std::time::{Duration, SystemTime};

use super::embedded::Embedded;
use super::error::StoreError;
use super::{LIST_PAGE, blobs};
use crate::ticket::{Ticket, Timestamp};

/// Removes the blobs older than `retention` at `now` that no ticket
/// active since then refers to; returns how many.
pub(super) fn sweep_blobs(
    store: &Embedded,
    now: SystemTime,
    retention: Duration,
) -> Result<usize, StoreError> {
    let cutoff = now.checked_sub(retention).unwrap_or(SystemTime::UNIX_EPOCH);
    let referenced = blobs_in_use(store, Timestamp(cutoff.into()))?;
    let dir = store.blobs_dir();
    let entries = fs::read_dir(dir).map_err(|e| StoreError::io("read blobs", e))?;
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(sha) = name.to_str().filter(|n| blobs::is_sha256_hex(n)) else {
            continue;
        };
        if referenced.contains(sha) {
            continue;
        }
        // Under the write lock, so that no put_blob is between finding
        // the file (and touching it) and the ticket that will refer to it.
        let _guard = store.blob_lock().write().unwrap_or_else(|p| p.into_inner());
        if older_than(&entry.path(), cutoff) && fs::remove_file(entry.path()).is_ok() {
            removed += 1;
        }
    }
    if removed > 0 {
        super::durable::sync_dir(dir).map_err(|e| StoreError::io("blob dir fsync", e))?;
    }
    Ok(removed)
}

/// The blobs tickets active since `cutoff` refer to.
fn blobs_in_use(store: &Embedded, cutoff: Timestamp) -> Result<HashSet<String>, StoreError> {
    let mut used = HashSet::new();
    let index = store.reader().ticket_index()?;
    for page in index.chunks(LIST_PAGE) {
        for t in store.reader().tickets_of(page)? {
            if last_activity(&t) >= cutoff {
                used.extend(blobs_of(&t));
            }
        }
    }
    Ok(used)
}

fn older_than(path: &Path, cutoff: SystemTime) -> bool {
    fs::metadata(path)
        .and_then(|m| m.modified())
        .is_ok_and(|modified| modified < cutoff)
}

/// The latest time the ticket shows activity.
fn last_activity(t: &Ticket) -> Timestamp {
    let times = std::iter::once(t.created_at)
        .chain(t.messages.iter().map(|m| m.received_at))
        .chain(t.history.iter().map(|h| h.at));
    times.max().unwrap_or(t.created_at)
}

fn blobs_of(t: &Ticket) -> impl Iterator<Item = String> + '_ {
    t.messages.iter().flat_map(|m| {
        m.raw_sha256
            .iter()
            .cloned()
            .chain(m.attachments.iter().map(|a| a.sha256.clone()))
    })
}
