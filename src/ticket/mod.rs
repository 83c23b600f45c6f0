//! The ticket model shared by classify, store, tag, outbox and control.
//! Field names here are the JSON contract of DESIGN §4.

use serde::{Deserialize, Serialize};

use crate::reason::ReasonCode;

mod history;
pub use history::Event;

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default,
)]
#[serde(rename_all = "lowercase")]
pub enum Urgency {
    #[default]
    Normale,
    Urgente,
    Critico,
}

impl Urgency {
    pub fn as_str(self) -> &'static str {
        match self {
            Urgency::Normale => "normale",
            Urgency::Urgente => "urgente",
            Urgency::Critico => "critico",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Open,
    Suspended,
    Closed,
    /// Its only message never reached the next hop: not a case at all
    /// until a retry of that message is accepted.
    Void,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Open => "open",
            Status::Suspended => "suspended",
            Status::Closed => "closed",
            Status::Void => "void",
        }
    }
}

/// A point in time, stored as RFC 3339 text (the JSON of DESIGN §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub time::OffsetDateTime);

impl Timestamp {
    pub fn now() -> Timestamp {
        Timestamp(time::OffsetDateTime::now_utc())
    }

    /// Parses RFC 3339 text.
    pub fn parse(text: &str) -> Option<Timestamp> {
        time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
            .ok()
            .map(Timestamp)
    }

    pub fn rfc3339(self) -> String {
        self.0
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default()
    }
}

impl std::fmt::Display for Timestamp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.rfc3339())
    }
}

/// The text is not an RFC 3339 time.
#[derive(Debug, thiserror::Error)]
#[error("not an RFC 3339 time: {0}")]
pub struct BadTimestamp(String);

impl std::str::FromStr for Timestamp {
    type Err = BadTimestamp;
    fn from_str(text: &str) -> Result<Timestamp, BadTimestamp> {
        Timestamp::parse(text).ok_or_else(|| BadTimestamp(text.to_string()))
    }
}

impl std::ops::Add<std::time::Duration> for Timestamp {
    type Output = Timestamp;
    fn add(self, d: std::time::Duration) -> Timestamp {
        Timestamp(self.0 + d)
    }
}

impl Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.rfc3339())
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Timestamp, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// Why a ticket is void, since when, and the status a revival restores.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VoidRecord {
    pub reason: ReasonCode,
    pub at: Timestamp,
    pub previous: Status,
}

/// The next hop's last refusal of a message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refusal {
    pub code: u16,
    pub at: Timestamp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Category {
    Incident,
    /// Manutenzione Ordinaria.
    #[value(alias = "manutenzione")]
    Maintenance,
}

/// What a message did to a ticket: the `X-Ticketgate-Action` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Created,
    Appended,
    Closed,
    Reopened,
    Resumed,
    Refused,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Created => "created",
            Action::Appended => "appended",
            Action::Closed => "closed",
            Action::Reopened => "reopened",
            Action::Resumed => "resumed",
            Action::Refused => "refused",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttachmentRecord {
    pub name: Option<String>,
    pub content_type: String,
    pub size: u64,
    /// Hex SHA-256; the file is `<data_dir>/blobs/<sha256>`.
    pub sha256: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageRecord {
    pub message_id: Option<String>,
    pub from: String,
    pub subject: String,
    pub received_at: Timestamp,
    pub attachments: Vec<AttachmentRecord>,
    pub action: Action,
    pub recipients: Vec<String>,
    pub reasons: Vec<ReasonCode>,
    /// SHA-256 of the raw message, stored under blobs/.
    #[serde(default)]
    pub raw_sha256: Option<String>,
    /// False until the next hop accepted the message.
    #[serde(default)]
    pub delivered: bool,
    /// What makes a redelivery of this message recognisable: the SHA-256
    /// of its bytes without the trace fields that change between attempts
    /// (see `spool::Fingerprint`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<String>,
    /// Set while the next hop's last answer to it was a refusal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refused: Option<Refusal>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReplyState {
    /// Written with the ticket, waiting for the next hop to accept the original.
    Held,
    Queued,
    Sent,
    Cancelled,
    Failed,
}

impl ReplyState {
    pub fn as_str(self) -> &'static str {
        match self {
            ReplyState::Held => "held",
            ReplyState::Queued => "queued",
            ReplyState::Sent => "sent",
            ReplyState::Cancelled => "cancelled",
            ReplyState::Failed => "failed",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReplyKind {
    Created,
    InfoRequest,
    Resumed,
    Closed,
    Reopened,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplyRecord {
    pub kind: ReplyKind,
    pub to: String,
    pub message_id: String,
    pub state: ReplyState,
    #[serde(default)]
    pub attempts: u32,
    #[serde(default)]
    pub next_attempt_at: Option<Timestamp>,
    /// The full rendered message, CRLF line ends.
    #[serde(default)]
    pub raw: String,
    /// Message-ID of the operator's message this reply answers; its
    /// delivery releases the reply.
    #[serde(default)]
    pub in_reply_to: Option<String>,
    /// Identity of the message record whose delivery releases this reply.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answers: Option<String>,
    /// Why it was cancelled or failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<ReasonCode>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryEntry {
    pub at: Timestamp,
    pub by: String,
    pub event: Event,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ticket {
    pub id: String,
    pub helpdesk: String,
    pub queue: String,
    pub procedure: Option<String>,
    pub sector: Option<String>,
    pub urgency: Urgency,
    pub contract: Option<String>,
    pub status: Status,
    pub severity: Option<String>,
    pub category: Option<Category>,
    pub requester: String,
    pub subject: String,
    pub created_at: Timestamp,
    pub due_at: Option<Timestamp>,
    pub assignee: Option<String>,
    pub recipients: Vec<String>,
    pub reasons: Vec<ReasonCode>,
    pub messages: Vec<MessageRecord>,
    pub replies: Vec<ReplyRecord>,
    pub history: Vec<HistoryEntry>,
    /// Set while the ticket is void.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub void: Option<VoidRecord>,
}

#[cfg(test)]
impl Ticket {
    /// An open Project++ ticket with nothing on it, for unit tests: each
    /// test sets what it is about.
    pub(crate) fn sample(requester: &str) -> Ticket {
        Ticket {
            id: "PP-2026-000001".into(),
            helpdesk: "Project++".into(),
            queue: "nuovocaso".into(),
            procedure: None,
            sector: None,
            urgency: Urgency::Normale,
            contract: None,
            status: Status::Open,
            severity: None,
            category: None,
            requester: requester.into(),
            subject: "s".into(),
            created_at: "2026-12-01T10:00:00Z".parse().unwrap(),
            due_at: None,
            assignee: None,
            recipients: vec![],
            reasons: vec![],
            messages: vec![],
            replies: vec![],
            history: vec![],
            void: None,
        }
    }
}
