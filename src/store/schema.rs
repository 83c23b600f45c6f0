//! The graph layout: vertex types, property names and (de)coding of tickets.
//!
//! Every identifier here is a constant of ours. Nothing that comes from mail
//! ever becomes an indradb `Identifier` or a vertex id: vertex ids are UUIDs
//! we generate, mail-derived data only ever appears in property VALUES.

use std::sync::Arc;

use indradb::{
    BulkInsertItem, Database, Identifier, Json, QueryExt, RocksdbDatastore, SpecificVertexQuery,
    Vertex, VertexProperties, VertexWithPropertyPresenceQuery, VertexWithPropertyValueQuery,
};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::error::StoreError;
use crate::ticket::Ticket;

/// Vertex id of the single metadata vertex (our own constant, "ticketgate-meta1").
pub(crate) const META_ID: Uuid = Uuid::from_u128(0x7469_636b_6574_6761_7465_2d6d_6574_6131);
/// Value of the indexed probe property on the metadata vertex. If an index
/// lookup for it fails while the vertex exists, the index hash (indradb uses
/// std's `DefaultHasher`, which is not stable across Rust releases) changed
/// and no index lookup can be trusted: the store refuses to open rather than
/// miss dedupe keys and create duplicate tickets.
pub(crate) const PROBE_VALUE: &str = "ticketgate-index-probe-v1";
pub(crate) const SCHEMA_VERSION: u64 = 1;

pub(crate) type Db = Database<RocksdbDatastore>;

/// Tickets decoded at a time when listing.
pub const LIST_PAGE: usize = 200;

/// All identifiers, built once at open (constructing one is fallible in
/// indradb's API, so nothing here can panic later).
pub(crate) struct Schema {
    // vertex types
    pub t_ticket: Identifier,
    pub t_dedupe: Identifier,
    pub t_counter: Identifier,
    pub t_meta: Identifier,
    // edge type: dedupe vertex -> ticket vertex
    pub e_dedupe_of: Identifier,
    // ticket properties
    pub p_ticket_id: Identifier,
    pub p_doc: Identifier,
    // dedupe properties
    pub p_dedupe_key: Identifier,
    pub p_dedupe_ticket: Identifier,
    // counter properties
    pub p_counter_key: Identifier,
    pub p_counter_value: Identifier,
    // meta properties
    pub p_probe: Identifier,
    pub p_schema_version: Identifier,
    /// A ticket's version: how many updates it has had (absent: none).
    pub p_version: Identifier,
}

fn ident(s: &str) -> Result<Identifier, StoreError> {
    Identifier::new(s).map_err(|e| StoreError::Corrupt(format!("bad identifier {s}: {e}")))
}

impl Schema {
    pub fn new() -> Result<Schema, StoreError> {
        Ok(Schema {
            t_ticket: ident("ticket")?,
            t_dedupe: ident("dedupe")?,
            t_counter: ident("counter")?,
            t_meta: ident("meta")?,
            e_dedupe_of: ident("dedupe_of")?,
            p_ticket_id: ident("ticket_id")?,
            p_doc: ident("doc")?,
            p_dedupe_key: ident("dedupe_key")?,
            p_dedupe_ticket: ident("dedupe_ticket")?,
            p_counter_key: ident("counter_key")?,
            p_counter_value: ident("counter_value")?,
            p_probe: ident("probe")?,
            p_schema_version: ident("schema_version")?,
            p_version: ident("version")?,
        })
    }

    /// The properties that get an index.
    pub fn indexed(&self) -> [Identifier; 4] {
        [
            self.p_ticket_id,
            self.p_dedupe_key,
            self.p_counter_key,
            self.p_probe,
        ]
    }
}

/// Dedupe keys are never stored as given: only their SHA-256 (hex).
pub(crate) fn hash_dedupe_key(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

fn prop<'a>(vp: &'a VertexProperties, name: &Identifier) -> Option<&'a Json> {
    vp.props.iter().find(|p| &p.name == name).map(|p| &p.value)
}

fn prop_str<'a>(vp: &'a VertexProperties, name: &Identifier) -> Option<&'a str> {
    prop(vp, name).and_then(|v| v.as_str())
}

/// Ticket -> the property values written for it.
pub(crate) fn encode_ticket(
    schema: &Schema,
    vertex: Uuid,
    ticket: &Ticket,
) -> Result<Vec<BulkInsertItem>, StoreError> {
    let mut doc = serde_json::to_value(ticket)
        .map_err(|e| StoreError::Invalid(format!("ticket does not serialize: {e}")))?;
    // The pending reply must be durable with the ticket. Should
    // `ReplyRecord::raw` be `skip_serializing` (kept out of the JSON
    // contract), put it into the stored document anyway; it deserializes
    // with `#[serde(default)]` either way.
    if let Some(replies) = doc.get_mut("replies").and_then(|r| r.as_array_mut()) {
        for (stored, reply) in replies.iter_mut().zip(&ticket.replies) {
            if let Some(obj) = stored.as_object_mut() {
                obj.entry("raw")
                    .or_insert_with(|| serde_json::Value::String(reply.raw.clone()));
            }
        }
    }
    Ok(vec![
        BulkInsertItem::VertexProperty(vertex, schema.p_ticket_id, string_json(&ticket.id)),
        BulkInsertItem::VertexProperty(vertex, schema.p_doc, Json::new(doc)),
    ])
}

fn decode_ticket(schema: &Schema, vp: &VertexProperties) -> Result<Ticket, StoreError> {
    let doc = prop(vp, &schema.p_doc)
        .ok_or_else(|| StoreError::Corrupt(format!("ticket vertex {} has no doc", vp.vertex.id)))?;
    serde_json::from_value((*doc.0).clone())
        .map_err(|e| StoreError::Corrupt(format!("ticket vertex {}: {e}", vp.vertex.id)))
}

/// Read access shared by the public read methods and the writer.
#[derive(Clone)]
pub(crate) struct Reader {
    pub db: Arc<Db>,
    pub schema: Arc<Schema>,
}

fn string_json(s: &str) -> Json {
    Json::new(serde_json::Value::String(s.to_string()))
}

impl Reader {
    /// Vertices (with all their properties) of type `t` whose indexed
    /// property `name` equals `value`. indradb's index is keyed by a 64-bit
    /// hash of the value, so the value is compared again here.
    fn by_value(
        &self,
        t: Identifier,
        name: Identifier,
        value: &str,
    ) -> Result<Vec<VertexProperties>, StoreError> {
        let q = VertexWithPropertyValueQuery::new(name, string_json(value))
            .properties()
            .map_err(|e| StoreError::db("query", e))?;
        let out = self.db.get(q).map_err(|e| StoreError::db("read", e))?;
        let found = indradb::util::extract_vertex_properties(out).unwrap_or_default();
        Ok(found
            .into_iter()
            .filter(|vp| vp.vertex.t == t && prop_str(vp, &name) == Some(value))
            .collect())
    }

    /// The ticket with this id, its vertex id and its version.
    pub fn stored(&self, id: &str) -> Result<Option<(Uuid, Ticket, u64)>, StoreError> {
        let s = &self.schema;
        match self.by_value(s.t_ticket, s.p_ticket_id, id)?.first() {
            None => Ok(None),
            Some(vp) => {
                let version = prop(vp, &s.p_version).and_then(|v| v.as_u64()).unwrap_or(0);
                Ok(Some((vp.vertex.id, decode_ticket(s, vp)?, version)))
            }
        }
    }

    pub fn ticket_exists(&self, id: &str) -> Result<bool, StoreError> {
        let s = &self.schema;
        Ok(!self.by_value(s.t_ticket, s.p_ticket_id, id)?.is_empty())
    }

    pub fn get(&self, id: &str) -> Result<Option<Ticket>, StoreError> {
        Ok(self.stored(id)?.map(|(_, t, _)| t))
    }

    /// Every ticket's id and vertex, sorted by id: light enough to hold for
    /// any number of tickets, so that listing can read the documents a page
    /// at a time.
    pub fn ticket_index(&self) -> Result<Vec<(String, Uuid)>, StoreError> {
        let s = &self.schema;
        let q = VertexWithPropertyPresenceQuery::new(s.p_ticket_id)
            .properties()
            .map_err(|e| StoreError::db("query", e))?
            .name(s.p_ticket_id);
        let out = self.db.get(q).map_err(|e| StoreError::db("read", e))?;
        let found = indradb::util::extract_vertex_properties(out).unwrap_or_default();
        let mut index: Vec<(String, Uuid)> = found
            .iter()
            .filter(|vp| vp.vertex.t == s.t_ticket)
            .filter_map(|vp| Some((prop_str(vp, &s.p_ticket_id)?.to_string(), vp.vertex.id)))
            .collect();
        index.sort();
        Ok(index)
    }

    /// The tickets of these index entries, in their order.
    pub fn tickets_of(&self, entries: &[(String, Uuid)]) -> Result<Vec<Ticket>, StoreError> {
        let s = &self.schema;
        let ids = entries.iter().map(|(_, v)| *v).collect();
        let q = SpecificVertexQuery::new(ids)
            .properties()
            .map_err(|e| StoreError::db("query", e))?
            .name(s.p_doc);
        let out = self.db.get(q).map_err(|e| StoreError::db("read", e))?;
        let found = indradb::util::extract_vertex_properties(out).unwrap_or_default();
        let mut by_vertex: std::collections::HashMap<Uuid, &VertexProperties> =
            found.iter().map(|vp| (vp.vertex.id, vp)).collect();
        entries
            .iter()
            .filter_map(|(_, v)| by_vertex.remove(v))
            .map(|vp| decode_ticket(s, vp))
            .collect()
    }

    /// Ticket id recorded for an already hashed dedupe key.
    pub fn dedupe_hashed(&self, hashed: &str) -> Result<Option<String>, StoreError> {
        let s = &self.schema;
        let found = self.by_value(s.t_dedupe, s.p_dedupe_key, hashed)?;
        Ok(found
            .iter()
            .find_map(|vp| prop_str(vp, &s.p_dedupe_ticket).map(str::to_string)))
    }

    pub fn find_by_dedupe_key(&self, key: &str) -> Result<Option<String>, StoreError> {
        self.dedupe_hashed(&hash_dedupe_key(key))
    }

    /// All counters: key "<prefix>-<year>" -> (vertex id, last sequence number).
    pub fn counters(&self) -> Result<Vec<(String, Uuid, u64)>, StoreError> {
        let s = &self.schema;
        let q = VertexWithPropertyPresenceQuery::new(s.p_counter_key)
            .properties()
            .map_err(|e| StoreError::db("query", e))?;
        let out = self.db.get(q).map_err(|e| StoreError::db("read", e))?;
        let found = indradb::util::extract_vertex_properties(out).unwrap_or_default();
        let mut counters = Vec::new();
        for vp in found.iter().filter(|vp| vp.vertex.t == s.t_counter) {
            let key = prop_str(vp, &s.p_counter_key).ok_or_else(|| {
                StoreError::Corrupt(format!("counter {} without key", vp.vertex.id))
            })?;
            let value = prop(vp, &s.p_counter_value)
                .and_then(|v| v.as_u64())
                .ok_or_else(|| StoreError::Corrupt(format!("counter {key} without value")))?;
            counters.push((key.to_string(), vp.vertex.id, value));
        }
        Ok(counters)
    }

    /// Checks the metadata vertex, creating it on a fresh store. Returns
    /// whether anything was written.
    pub fn check_or_init_meta(&self) -> Result<bool, StoreError> {
        let s = &self.schema;
        let out = self
            .db
            .get(SpecificVertexQuery::single(META_ID))
            .map_err(|e| StoreError::db("read", e))?;
        let exists = indradb::util::extract_vertices(out).is_some_and(|v| !v.is_empty());
        if exists {
            if self.by_value(s.t_meta, s.p_probe, PROBE_VALUE)?.is_empty() {
                return Err(StoreError::Corrupt(
                    "property index lookup failed for the probe value: indradb's index hash changed \
                     (different Rust std DefaultHasher?); refusing to open, dedupe would be unreliable"
                        .into(),
                ));
            }
            return Ok(false);
        }
        let items = vec![
            BulkInsertItem::Vertex(Vertex::with_id(META_ID, s.t_meta)),
            BulkInsertItem::VertexProperty(META_ID, s.p_probe, string_json(PROBE_VALUE)),
            BulkInsertItem::VertexProperty(
                META_ID,
                s.p_schema_version,
                Json::new(SCHEMA_VERSION.into()),
            ),
        ];
        self.db
            .bulk_insert(items)
            .map_err(|e| StoreError::db("write", e))?;
        Ok(true)
    }
}

pub(crate) fn string_value(s: &str) -> Json {
    string_json(s)
}
