//! The ticket model shared by classify, store, tag, outbox and control.
//! Field names here are the JSON contract of DESIGN §4.

use serde::{Deserialize, Serialize};

use crate::reason::ReasonCode;

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
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Open => "open",
            Status::Suspended => "suspended",
            Status::Closed => "closed",
        }
    }
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
    /// RFC 3339.
    pub received_at: String,
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
    /// RFC 3339 time of the next delivery attempt.
    #[serde(default)]
    pub next_attempt_at: Option<String>,
    /// The full rendered message, CRLF line ends.
    #[serde(default)]
    pub raw: String,
    /// Message-ID of the operator's message this reply answers; its
    /// delivery releases the reply.
    #[serde(default)]
    pub in_reply_to: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryEntry {
    pub at: String,
    pub by: String,
    pub event: String,
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
    pub created_at: String,
    pub due_at: Option<String>,
    pub assignee: Option<String>,
    pub recipients: Vec<String>,
    pub reasons: Vec<ReasonCode>,
    pub messages: Vec<MessageRecord>,
    pub replies: Vec<ReplyRecord>,
    pub history: Vec<HistoryEntry>,
}

/// Current time as RFC 3339, UTC.
pub fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}
