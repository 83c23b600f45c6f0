//! The single writer: every change to the database goes through here.
//!
//! Group commit: the writer blocks for one message, then drains whatever
//! else is already queued (up to [`MAX_GROUP`]), applies each change as one
//! atomic RocksDB write batch (one indradb `bulk_insert`), makes the group
//! durable with ONE [`sync_wal`], and only then answers every submitter of
//! the group. If the sync fails, every answer of the group becomes
//! `Unavailable` and the writer is poisoned: from then on every change is
//! refused with `Unavailable` until the store is reopened (after a failed
//! fsync the state of the page cache is unknown, retrying it is not safe).

use std::collections::HashMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use indradb::{BulkInsertItem, Edge, Vertex};
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use super::durable::sync_wal;
use super::error::StoreError;
use super::schema::{Reader, encode_ticket, hash_dedupe_key, string_value};
use super::{Change, Outcome};
use crate::metrics::METRICS;

/// The counter readiness probes write; no ticket counter is named so
/// (those are `PREFIX-YEAR`).
const PROBE_KEY: &str = "probe";

/// Most changes made durable by one fsync.
pub(crate) const MAX_GROUP: usize = 256;
/// Capacity of the channel feeding the writer.
pub(crate) const CHANNEL_CAPACITY: usize = 1024;

pub(crate) type Reply = oneshot::Sender<Result<Outcome, StoreError>>;

pub(crate) enum Msg {
    Change(Box<Change>, Reply),
    /// A durable write of nothing that matters (the probe counter), for
    /// readiness: answered once it is synced like any change.
    Probe(oneshot::Sender<Result<(), StoreError>>),
    /// Finish what is queued before this message, then stop and release the database.
    Close(oneshot::Sender<()>),
}

/// Counters visible to unit tests.
#[derive(Default)]
pub(crate) struct Stats {
    pub syncs: AtomicU64,
    pub changes: AtomicU64,
}

pub(crate) struct Writer {
    reader: Reader,
    db_dir: PathBuf,
    /// "<prefix>-<year>" -> (counter vertex, last sequence number used).
    counters: HashMap<String, (Uuid, u64)>,
    poisoned: Option<String>,
    stats: Arc<Stats>,
}

/// What one change produced before the group's sync.
struct Done {
    reply: Reply,
    result: Result<Outcome, StoreError>,
}

impl Writer {
    pub fn new(reader: Reader, db_dir: PathBuf, stats: Arc<Stats>) -> Result<Writer, StoreError> {
        let counters = reader
            .counters()?
            .into_iter()
            .map(|(key, vertex, value)| (key, (vertex, value)))
            .collect();
        Ok(Writer {
            reader,
            db_dir,
            counters,
            poisoned: None,
            stats,
        })
    }

    pub fn run(mut self, mut rx: mpsc::Receiver<Msg>) {
        let mut close_ack = None;
        while close_ack.is_none() {
            let Some(first) = rx.blocking_recv() else {
                break;
            };
            let mut group = vec![first];
            while group.len() < MAX_GROUP {
                match rx.try_recv() {
                    Ok(msg) => group.push(msg),
                    Err(_) => break,
                }
            }
            self.commit_group(group, &mut close_ack);
        }
        // Refuse whatever is still queued, release the database, then ack.
        rx.close();
        while let Ok(msg) = rx.try_recv() {
            match msg {
                Msg::Change(_, reply) => {
                    let _ = reply.send(Err(StoreError::Unavailable("store closed".into())));
                }
                Msg::Probe(reply) => {
                    let _ = reply.send(Err(StoreError::Unavailable("store closed".into())));
                }
                Msg::Close(ack) => {
                    let _ = ack.send(());
                }
            }
        }
        drop(self);
        if let Some(ack) = close_ack {
            let _ = ack.send(());
        }
    }

    /// Applies a group, makes it durable with one sync, then answers each
    /// submitter; a change after a close in the group is refused.
    fn commit_group(&mut self, group: Vec<Msg>, close_ack: &mut Option<oneshot::Sender<()>>) {
        let mut done = Vec::with_capacity(group.len());
        let mut probes = Vec::new();
        let mut dirty = false;
        let started = std::time::Instant::now();
        for msg in group {
            match msg {
                Msg::Close(ack) => {
                    if close_ack.is_none() {
                        *close_ack = Some(ack);
                    }
                }
                Msg::Change(_, reply) if close_ack.is_some() => {
                    let _ = reply.send(Err(StoreError::Unavailable("store closed".into())));
                }
                Msg::Probe(reply) if close_ack.is_some() => {
                    let _ = reply.send(Err(StoreError::Unavailable("store closed".into())));
                }
                Msg::Change(change, reply) => {
                    let result = self.apply_guarded(*change, &mut dirty);
                    done.push(Done { reply, result });
                }
                Msg::Probe(reply) => probes.push((reply, self.write_probe(&mut dirty))),
            }
        }
        if dirty && self.poisoned.is_none() {
            self.stats.syncs.fetch_add(1, Ordering::Relaxed);
            if let Err(e) = sync_wal(&self.db_dir) {
                self.poisoned = Some(format!("fsync of the write-ahead log failed: {e}"));
            }
            METRICS.store_commit(started.elapsed());
        }
        for Done { reply, result } in done {
            let _ = reply.send(self.unless_poisoned(result));
        }
        for (reply, result) in probes {
            let _ = reply.send(self.unless_poisoned(result));
        }
    }

    /// A group whose sync failed answers every member with that failure.
    fn unless_poisoned<T>(&self, result: Result<T, StoreError>) -> Result<T, StoreError> {
        match &self.poisoned {
            Some(why) => Err(StoreError::Unavailable(why.clone())),
            None => result,
        }
    }

    /// Writes the probe counter (the time, in seconds) in this group.
    fn write_probe(&mut self, dirty: &mut bool) -> Result<(), StoreError> {
        if let Some(why) = &self.poisoned {
            return Err(StoreError::Unavailable(why.clone()));
        }
        let existing = self.counters.get(PROBE_KEY).copied();
        let vertex = existing.map_or_else(Uuid::new_v4, |(v, _)| v);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let items = self.counter_items(vertex, existing.is_none(), PROBE_KEY, now);
        self.write(items, dirty)?;
        self.counters.insert(PROBE_KEY.to_string(), (vertex, now));
        Ok(())
    }

    /// Applies one change; a panic anywhere inside becomes an error answer.
    fn apply_guarded(&mut self, change: Change, dirty: &mut bool) -> Result<Outcome, StoreError> {
        if let Some(why) = &self.poisoned {
            return Err(StoreError::Unavailable(why.clone()));
        }
        self.stats.changes.fetch_add(1, Ordering::Relaxed);
        match catch_unwind(AssertUnwindSafe(|| self.apply(change, dirty))) {
            Ok(result) => result,
            Err(_) => {
                // Whatever happened may have reached the database.
                *dirty = true;
                Err(StoreError::Unavailable(
                    "internal error in the store writer".into(),
                ))
            }
        }
    }

    fn apply(&mut self, change: Change, dirty: &mut bool) -> Result<Outcome, StoreError> {
        match change {
            Change::Create {
                prefix,
                year,
                ticket,
                dedupe_key,
                draft,
            } => self.create(&prefix, year, ticket, dedupe_key.as_deref(), draft, dirty),
            Change::Update {
                ticket,
                version,
                dedupe_key,
            } => self.update(ticket, version, dedupe_key.as_deref(), dirty),
        }
    }

    /// The ticket an already known dedupe key points to.
    fn duplicate_of(&self, hashed: &str) -> Result<Option<Outcome>, StoreError> {
        let Some(id) = self.reader.dedupe_hashed(hashed)? else {
            return Ok(None);
        };
        match self.reader.get(&id)? {
            Some(t) => Ok(Some(Outcome::Duplicate(t))),
            None => Err(StoreError::Corrupt(format!(
                "dedupe key points to missing ticket {id}"
            ))),
        }
    }

    fn dedupe_items(
        &self,
        hashed: &str,
        ticket_id: &str,
        ticket_vertex: Uuid,
    ) -> Vec<BulkInsertItem> {
        let s = &self.reader.schema;
        let v = Uuid::new_v4();
        vec![
            BulkInsertItem::Vertex(Vertex::with_id(v, s.t_dedupe)),
            BulkInsertItem::VertexProperty(v, s.p_dedupe_key, string_value(hashed)),
            BulkInsertItem::VertexProperty(v, s.p_dedupe_ticket, string_value(ticket_id)),
            BulkInsertItem::Edge(Edge::new(v, s.e_dedupe_of, ticket_vertex)),
        ]
    }

    fn write(&self, items: Vec<BulkInsertItem>, dirty: &mut bool) -> Result<(), StoreError> {
        *dirty = true;
        self.reader
            .db
            .bulk_insert(items)
            .map_err(|e| StoreError::db("write", e))
    }

    fn create(
        &mut self,
        prefix: &str,
        year: i32,
        mut ticket: crate::ticket::Ticket,
        dedupe_key: Option<&str>,
        draft: Option<super::DraftFn>,
        dirty: &mut bool,
    ) -> Result<Outcome, StoreError> {
        validate_prefix(prefix)?;
        if !(0..=9999).contains(&year) {
            return Err(StoreError::Invalid(format!("year out of range: {year}")));
        }
        let hashed = dedupe_key.map(hash_dedupe_key);
        if let Some(h) = &hashed
            && let Some(dup) = self.duplicate_of(h)?
        {
            return Ok(dup);
        }

        let counter_key = format!("{prefix}-{year:04}");
        let counter = self.counters.get(&counter_key).copied();
        let (seq, id) = self.next_id(prefix, year, counter.map_or(0, |(_, last)| last))?;
        ticket.id = id.clone();
        if let Some(draft) = draft {
            run_draft(draft, &mut ticket)?;
            ticket.id = id;
        }
        let s = &self.reader.schema;
        let tv = Uuid::new_v4();
        let mut items = vec![BulkInsertItem::Vertex(Vertex::with_id(tv, s.t_ticket))];
        items.extend(encode_ticket(s, tv, &ticket)?);
        let counter_vertex = counter.map_or_else(Uuid::new_v4, |(v, _)| v);
        items.extend(self.counter_items(counter_vertex, counter.is_none(), &counter_key, seq));
        if let Some(h) = &hashed {
            items.extend(self.dedupe_items(h, &ticket.id, tv));
        }
        self.write(items, dirty)?;
        self.counters.insert(counter_key, (counter_vertex, seq));
        Ok(Outcome::Created(ticket))
    }

    /// The next free sequence number after `last`, and its ticket id. The
    /// counter is written in the same batch as the ticket, so it cannot
    /// fall behind; checking the id anyway costs one index lookup and makes
    /// a reused id impossible even if it did.
    fn next_id(&self, prefix: &str, year: i32, last: u64) -> Result<(u64, String), StoreError> {
        let mut seq = last + 1;
        let mut id = format_id(prefix, year, seq);
        while self.reader.ticket_exists(&id)? {
            seq += 1;
            id = format_id(prefix, year, seq);
        }
        Ok((seq, id))
    }

    /// The counter's vertex (when new) and its value `seq`.
    fn counter_items(
        &self,
        vertex: Uuid,
        is_new: bool,
        key: &str,
        seq: u64,
    ) -> Vec<BulkInsertItem> {
        let s = &self.reader.schema;
        let mut items = Vec::new();
        if is_new {
            items.push(BulkInsertItem::Vertex(Vertex::with_id(vertex, s.t_counter)));
            items.push(BulkInsertItem::VertexProperty(
                vertex,
                s.p_counter_key,
                string_value(key),
            ));
        }
        items.push(BulkInsertItem::VertexProperty(
            vertex,
            s.p_counter_value,
            indradb::Json::new(seq.into()),
        ));
        items
    }

    fn update(
        &mut self,
        ticket: crate::ticket::Ticket,
        version: u64,
        dedupe_key: Option<&str>,
        dirty: &mut bool,
    ) -> Result<Outcome, StoreError> {
        let hashed = dedupe_key.map(hash_dedupe_key);
        if let Some(h) = &hashed
            && let Some(dup) = self.duplicate_of(h)?
        {
            return Ok(dup);
        }
        let (tv, _, stored) = self
            .reader
            .stored(&ticket.id)?
            .ok_or_else(|| StoreError::NotFound(ticket.id.clone()))?;
        if stored != version {
            return Err(StoreError::Conflict(ticket.id));
        }
        let s = &self.reader.schema;
        let mut items = encode_ticket(s, tv, &ticket)?;
        items.push(BulkInsertItem::VertexProperty(
            tv,
            s.p_version,
            indradb::Json::new((version + 1).into()),
        ));
        if let Some(h) = &hashed {
            items.extend(self.dedupe_items(h, &ticket.id, tv));
        }
        self.write(items, dirty)?;
        Ok(Outcome::Updated(ticket))
    }
}

/// Runs a create's draft on its ticket; `Err` and panics become `Rejected`.
fn run_draft(draft: super::DraftFn, ticket: &mut crate::ticket::Ticket) -> Result<(), StoreError> {
    match catch_unwind(AssertUnwindSafe(|| draft(ticket))) {
        Ok(Ok(())) => Ok(()),
        Ok(Err(msg)) => Err(StoreError::Rejected(msg)),
        Err(_) => Err(StoreError::Rejected("update function panicked".into())),
    }
}

fn format_id(prefix: &str, year: i32, seq: u64) -> String {
    format!("{prefix}-{year:04}-{seq:06}")
}

/// Prefixes come from the config; still, only a plain word can make an id.
fn validate_prefix(prefix: &str) -> Result<(), StoreError> {
    let ok = !prefix.is_empty()
        && prefix.len() <= 32
        && prefix
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(StoreError::Invalid(format!(
            "bad ticket id prefix {prefix:?}"
        )))
    }
}
