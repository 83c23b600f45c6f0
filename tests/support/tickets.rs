//! Sample tickets for the tests that write the store directly (its
//! conformance suite, retention, the settling of what a crash left): one
//! builder, so that a field added to the model is added here once. Each
//! test then sets the fields it is about.
#![allow(dead_code)]

use ticketgate::store::Change;
use ticketgate::ticket::{
    Action, MessageRecord, ReplyKind, ReplyRecord, ReplyState, Status, Ticket, Timestamp, Urgency,
};

/// RFC 3339 text as a time; a test's literal that does not parse is the
/// test's bug.
pub fn at(text: &str) -> Timestamp {
    text.parse().unwrap()
}

/// An open Project++ ticket of one message from `requester` at `when`,
/// no reply, no history, before the store numbers it.
pub fn sample_ticket(requester: &str, subject: &str, when: &str) -> Ticket {
    Ticket {
        id: String::new(),
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
        subject: subject.into(),
        created_at: at(when),
        due_at: None,
        assignee: None,
        recipients: vec![],
        reasons: vec![],
        messages: vec![sample_message(requester, subject, when)],
        replies: vec![],
        history: vec![],
        void: None,
    }
}

/// The message that opened a sample ticket: delivered, nothing attached.
pub fn sample_message(from: &str, subject: &str, when: &str) -> MessageRecord {
    MessageRecord {
        message_id: None,
        from: from.into(),
        subject: subject.into(),
        received_at: at(when),
        attachments: vec![],
        action: Action::Created,
        recipients: vec![],
        reasons: vec![],
        raw_sha256: None,
        delivered: true,
        identity: None,
        refused: None,
    }
}

/// A confirmation to `to`, never attempted, whose bytes are `raw`.
pub fn sample_reply(to: &str, message_id: &str, state: ReplyState, raw: String) -> ReplyRecord {
    ReplyRecord {
        kind: ReplyKind::Created,
        to: to.into(),
        message_id: message_id.into(),
        state,
        attempts: 0,
        next_attempt_at: None,
        raw,
        in_reply_to: None,
        answers: None,
        reason: None,
    }
}

/// Creates `ticket` as a new Project++ ticket of 2026, no dedupe key, no
/// draft.
pub fn create_change(ticket: Ticket) -> Change {
    Change::Create {
        prefix: "PP".into(),
        year: 2026,
        ticket,
        dedupe_key: None,
        draft: None,
    }
}
