//! What `serve` would do with a message, without doing it: the stages of
//! the pipeline up to the store write (forged-field scan, parse, route,
//! classify, reply suppression), run on bytes from a file by
//! `ticketgate try`. No store, no reply, nothing sent, no DNS: the
//! authentication is the one `serve` gives with `[auth] dns = "off"`.
//!
//! It uses the pipeline's own decisions (`opening_reasons`,
//! `opening_status`, the parse policy), so that what it prints is what
//! `serve` writes; the one thing it cannot know is whether a ticket a
//! follow-up names exists.

use serde::Serialize;

use super::pipeline::{HEAD_BYTES, opening_reasons, opening_status};
use super::replies;
use super::service::Loaded;
use crate::auth::AuthVerdict;
use crate::classify::{self, MailCommand};
use crate::config::Config;
use crate::outbox::msgid;
use crate::parse::{self, ParseLimits, ParsedMail};
use crate::reason::ReasonCode;
use crate::route::Routing;
use crate::tag;
use crate::ticket::{Status, Urgency};

/// A message as `serve` would receive it.
pub struct Incoming<'a> {
    pub envelope_from: &'a str,
    pub rcpts: &'a [String],
    pub raw: &'a [u8],
}

/// What `serve` would do with one message.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Preview {
    pub message_id: Option<String>,
    pub subject: String,
    pub envelope_from: String,
    pub recipients: Vec<String>,
    /// `pass` (no helpdesk recipient: forwarded untouched), `ticket`, or
    /// `refused` (the SMTP reply in `refusal`).
    pub outcome: PreviewOutcome,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refusal: Option<String>,
    /// One per helpdesk the message is routed to.
    pub tickets: Vec<DeskPreview>,
}

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum PreviewOutcome {
    Pass,
    Ticket,
    Refused,
}

/// What one helpdesk would do with the message.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct DeskPreview {
    pub helpdesk: String,
    pub queue: String,
    pub procedure: Option<String>,
    pub sector: Option<String>,
    pub urgency: Urgency,
    pub contract: Option<String>,
    /// The status a new ticket opens with.
    pub status: Status,
    /// The ticket the message names (subject or one of our Message-IDs):
    /// a follow-up of it if it exists, a new ticket otherwise.
    pub followup_of: Option<String>,
    /// A close or reopen word, applied only for the authenticated
    /// requester of an existing ticket.
    pub command: Option<MailCommand>,
    /// Who gets the confirmation of a new ticket; none when `no_reply`.
    pub reply_to: Option<String>,
    /// Why no automatic reply may answer it (RFC 3834, robots, ...).
    pub no_reply: Option<ReasonCode>,
    /// The reasons a new ticket is opened with.
    pub reasons: Vec<ReasonCode>,
}

/// What `serve` would do with `incoming`, under the helpdesks of `loaded`.
pub fn preview(loaded: &Loaded, incoming: &Incoming<'_>) -> Preview {
    let config = &loaded.config;
    let routing = loaded.table.route(incoming.rcpts);
    let mut out = Preview {
        message_id: None,
        subject: String::new(),
        envelope_from: incoming.envelope_from.to_string(),
        recipients: incoming.rcpts.to_vec(),
        outcome: PreviewOutcome::Pass,
        refusal: None,
        tickets: Vec::new(),
    };
    // In serve's order: the size at DATA for every message, the forged
    // fields only for one a helpdesk will tag.
    let refused = match too_big(config, incoming.raw) {
        Some(refusal) => Some(refusal),
        None if routing.desks.is_empty() => return out,
        None => forged_flood(config, incoming.raw),
    };
    if let Some(refusal) = refused {
        out.outcome = PreviewOutcome::Refused;
        out.refusal = Some(refusal);
        return out;
    }
    let mail = parse_as_serve(config, incoming.raw);
    out.message_id = mail.message_id.clone();
    out.subject = mail.subject.clone();
    out.outcome = PreviewOutcome::Ticket;
    let verdict = AuthVerdict::unchecked();
    out.tickets = routing
        .desks
        .iter()
        .map(|routed| desk_preview(loaded, incoming, &routing, routed, &mail, &verdict))
        .collect();
    out
}

/// `serve`'s refusal of a message over the size limit, at DATA.
fn too_big(config: &Config, raw: &[u8]) -> Option<String> {
    let max = config.limits.max_message_size;
    (raw.len() as u64 > max)
        .then(|| format!("552 5.3.4 Message size exceeds fixed limit of {max} bytes"))
}

/// `serve`'s refusal of a helpdesk message with more forged fields than
/// it cuts.
fn forged_flood(config: &Config, raw: &[u8]) -> Option<String> {
    let mut scanner = tag::HeaderScanner::new(&config.server.hostname);
    scanner.feed(raw);
    scanner
        .finish()
        .too_many
        .then(|| "554 5.6.0 Too many forged X-Ticketgate or Authentication-Results fields".into())
}

/// Parses as `serve` does: a message over `max_parse_bytes` only by its
/// first part, which the ticket says.
fn parse_as_serve(config: &Config, raw: &[u8]) -> ParsedMail {
    let limits = ParseLimits::from(&config.limits);
    let complete = raw.len() <= config.limits.max_parse_bytes;
    let bytes = if complete {
        raw
    } else {
        &raw[..HEAD_BYTES.min(raw.len())]
    };
    let hash = &mut |b: &[u8]| Ok::<_, std::convert::Infallible>(parse::sha256_hex(b));
    let mut mail = match parse::parse_with(bytes, &limits, hash) {
        Ok(mail) => mail,
        Err(never) => match never {},
    };
    if !complete {
        mail.reasons.push(ReasonCode::ParseTooLarge);
    }
    mail
}

fn desk_preview(
    loaded: &Loaded,
    incoming: &Incoming<'_>,
    routing: &Routing,
    routed: &crate::route::RoutedDesk,
    mail: &ParsedMail,
    verdict: &AuthVerdict,
) -> DeskPreview {
    let desk = &loaded.table.helpdesks()[routed.helpdesk];
    let queue = &desk.queues[routed.queue];
    let class = classify::classify(desk, queue, mail);
    let from = incoming.envelope_from;
    let no_reply =
        replies::reply_suppression(mail, from, verdict, |a| loaded.table.is_own_address(a));
    let followup_of = class
        .subject_ticket_id
        .clone()
        .or_else(|| answered_ticket(&desk.ticket_prefix, mail));
    let (status, _) = opening_status(&class);
    DeskPreview {
        helpdesk: desk.name.clone(),
        queue: queue.queue_name().to_string(),
        procedure: class.procedure.clone(),
        sector: class.sector.clone(),
        urgency: class.urgency,
        contract: class.contract.clone(),
        status,
        followup_of,
        command: class.command,
        reply_to: no_reply
            .is_none()
            .then(|| replies::reply_address(mail, from, verdict)),
        no_reply,
        reasons: opening_reasons(routing, mail, &class, verdict, no_reply),
    }
}

/// The ticket of one of our Message-IDs the message answers, by its
/// shape only: the signature is the server's to check, with its key.
fn answered_ticket(prefix: &str, mail: &ParsedMail) -> Option<String> {
    let want = format!("{prefix}-");
    mail.in_reply_to
        .iter()
        .chain(mail.references.iter().rev())
        .filter_map(|id| msgid::ticket_named(id))
        .find(|ticket| ticket.starts_with(&want))
        .map(str::to_string)
}
