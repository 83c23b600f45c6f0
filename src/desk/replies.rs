//! Reply drafting: what a transition asks for ([`Wanted`]) becomes a reply
//! record (rendered from the templates, with a signed Message-ID and its
//! MIME message) through a [`Drafter`], a value made before the store
//! write that holds what drafting needs and nothing else. A transition
//! never reaches the service from inside the store's writer.

use std::sync::Arc;

use crate::auth::AuthVerdict;
use crate::config::HelpdeskConfig;
use crate::envelope::canonical_address;
use crate::outbox::compose::{Draft, compose};
use crate::outbox::msgid::Signer;
use crate::outbox::render::{Extra, Templates};
use crate::parse::ParsedMail;
use crate::reason::ReasonCode;
use crate::route::normalize_address;
use crate::ticket::{MessageRecord, ReplyKind, ReplyRecord, ReplyState, Ticket};

/// A reply a transition wants sent.
#[derive(Debug, Clone)]
pub struct Wanted {
    pub kind: ReplyKind,
    pub to: String,
    pub extra: Extra,
    /// The message it answers: released when that message is delivered.
    /// `None` for a notice a person's action sends at once.
    pub answering: Option<MessageRecord>,
}

impl Wanted {
    /// An automatic reply to `answering`, held until the next hop accepts
    /// that message; the rate limit applies when it is released, so mail
    /// that is never delivered spends no budget.
    pub fn answer(kind: ReplyKind, to: &str, answering: &MessageRecord, extra: Extra) -> Wanted {
        Wanted {
            kind,
            to: to.to_string(),
            extra,
            answering: Some(answering.clone()),
        }
    }

    /// A notice to the requester that a workgroup member's action sends:
    /// a person acted, so no rate limit, and nothing to wait for.
    pub fn notice(kind: ReplyKind, t: &Ticket, extra: Extra) -> Wanted {
        Wanted {
            kind,
            to: t.requester.clone(),
            extra,
            answering: None,
        }
    }
}

/// What drafting a reply for one helpdesk needs: its config as it was
/// when the message arrived, the templates of that moment and the signer.
#[derive(Clone)]
pub struct Drafter {
    desk: HelpdeskConfig,
    templates: Arc<Templates>,
    signer: Arc<Signer>,
}

impl Drafter {
    pub fn new(desk: HelpdeskConfig, templates: Arc<Templates>, signer: Arc<Signer>) -> Drafter {
        Drafter {
            desk,
            templates,
            signer,
        }
    }

    pub fn desk(&self) -> &HelpdeskConfig {
        &self.desk
    }

    /// Drafts `wanted` for `t` and adds it to the ticket's replies.
    pub fn add(&self, t: &mut Ticket, wanted: Wanted) {
        let reply = self.draft(t, &wanted);
        t.replies.push(reply);
    }

    /// Renders a reply for `t`, ready to be stored with it.
    pub fn draft(&self, t: &Ticket, wanted: &Wanted) -> ReplyRecord {
        let (subject, body) = self
            .templates
            .render(wanted.kind, &self.desk, t, &wanted.extra);
        let message_id = self
            .signer
            .message_id(&t.id, &canonical_address(&wanted.to));
        let in_reply_to = wanted.answering.as_ref().and_then(|m| m.message_id.clone());
        let raw = compose(&Draft {
            desk: &self.desk,
            to: &wanted.to,
            subject: &subject,
            body: &body,
            message_id: &message_id,
            ticket_id: &t.id,
            in_reply_to: in_reply_to.as_deref(),
        });
        ReplyRecord {
            kind: wanted.kind,
            to: wanted.to.clone(),
            message_id,
            // A reply that answers nothing goes at once.
            state: match wanted.answering {
                Some(_) => ReplyState::Held,
                None => ReplyState::Queued,
            },
            attempts: 0,
            next_attempt_at: None,
            raw,
            in_reply_to,
            answers: wanted.answering.as_ref().and_then(|m| m.identity.clone()),
            reason: None,
        }
    }
}

/// Where a reply goes: the author when the mail authenticates, otherwise
/// the envelope sender (whom SMTP vouches for).
pub fn reply_address(mail: &ParsedMail, envelope_from: &str, verdict: &AuthVerdict) -> String {
    match (&mail.from, verdict.dmarc_pass) {
        (Some(from), true) => normalize_address(from),
        _ => normalize_address(envelope_from),
    }
}

/// Why no automatic reply may answer this message (RFC 3834, robots,
/// senders nobody vouches for). A reply goes to the From, the envelope
/// sender or the requester (the From of the first message), all of which
/// `is_own` checks against our own addresses.
pub fn reply_suppression(
    mail: &ParsedMail,
    envelope_from: &str,
    verdict: &AuthVerdict,
    is_own: impl Fn(&str) -> bool,
) -> Option<ReasonCode> {
    let sender = super::suppress::Sender {
        envelope_from,
        disowned: verdict.spf_fail && !verdict.dmarc_pass,
    };
    super::suppress::suppression(mail, sender, is_own)
}
