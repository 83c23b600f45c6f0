//! The stages between receiving a message and forwarding it:
//! parse -> authenticate -> route -> classify -> store -> tag, and after the
//! next hop answered, the outbox. `prepare` runs before forwarding (so the
//! ticket is on disk first), `settle` after.

use std::sync::Arc;

use crate::auth::{self, AuthVerdict};
use crate::classify::{self, Classification};
use crate::config::HelpdeskConfig;
use crate::forward::ClientInfo;
use crate::lifecycle::{self, Followup, Helpdesks, Loaded};
use crate::metrics::{METRICS, MessageKind};
use crate::parse::{self, ParsedAttachment, ParsedMail};
use crate::reason::ReasonCode;
use crate::route::{RoutedDesk, Routing};
use crate::smtp::reply::Reply;
use crate::spool::Spool;
use crate::store::{Change, Outcome as StoreOutcome, StoreError};
use crate::tag;
use crate::ticket::{
    Action, AttachmentRecord, HistoryEntry, MessageRecord, ReplyKind, ReplyState, Status, Ticket,
    now_rfc3339,
};

pub struct Envelope<'a> {
    pub session: &'a str,
    pub client: &'a ClientInfo,
    pub from: &'a str,
    pub rcpts: &'a [String],
}

/// What the pipeline did to one message, for the summary log line.
#[derive(Debug, Default, Clone)]
pub struct Outcome {
    pub message_id: Option<String>,
    pub tickets: Vec<TicketOutcome>,
}

#[derive(Debug, Clone)]
pub struct TicketOutcome {
    pub helpdesk: String,
    pub ticket: String,
    pub action: Action,
    pub reasons: Vec<ReasonCode>,
    /// Replies written with this message, released or cancelled in `settle`.
    pub replies: Vec<String>,
    pub raw_sha256: String,
}

impl Outcome {
    fn join(&self, f: impl Fn(&TicketOutcome) -> String) -> String {
        self.tickets.iter().map(f).collect::<Vec<_>>().join(",")
    }
    pub fn helpdesks(&self) -> String {
        self.join(|t| t.helpdesk.clone())
    }
    pub fn tickets(&self) -> String {
        self.join(|t| t.ticket.clone())
    }
    pub fn actions(&self) -> String {
        self.join(|t| t.action.as_str().to_string())
    }
    pub fn reasons(&self) -> String {
        self.join(|t| {
            t.reasons
                .iter()
                .map(|r| r.as_str())
                .collect::<Vec<_>>()
                .join(" ")
        })
    }
}

/// The message as it will leave, and what to do once the next hop answered.
pub struct Prepared {
    /// Replaces the first `skip` bytes of the message (our tags prepended,
    /// forged tags removed); empty for mail that passes through.
    pub head: Vec<u8>,
    pub skip: u64,
    /// The header fields we add, in order (what `head` starts with); the
    /// milter asks the MTA to insert these instead.
    pub added: Vec<(&'static str, String)>,
    pub outcome: Outcome,
}

impl Prepared {
    pub fn pass_through() -> Prepared {
        Prepared {
            head: Vec::new(),
            skip: 0,
            added: Vec::new(),
            outcome: Outcome::default(),
        }
    }
}

/// Without helpdesks (`None`), every message passes through untouched.
pub struct Pipeline {
    desks: Option<Arc<Helpdesks>>,
}

fn store_unavailable() -> Reply {
    Reply::new(451, "4.3.0", "Ticket store unavailable, try again later")
}

fn local_error() -> Reply {
    Reply::new(451, "4.3.0", "Local error, try again later")
}

impl Pipeline {
    pub fn pass_through() -> Pipeline {
        Pipeline { desks: None }
    }

    pub fn new(desks: Arc<Helpdesks>) -> Pipeline {
        Pipeline { desks: Some(desks) }
    }

    /// Whether any of these recipients is a helpdesk address: the rest of
    /// the pipeline has nothing to do otherwise.
    pub fn routes_to_helpdesk(&self, rcpts: &[String]) -> bool {
        self.desks
            .as_ref()
            .is_some_and(|d| !d.loaded().table.route(rcpts).desks.is_empty())
    }

    /// Runs the stages up to the durable store write. An `Err` is the reply
    /// for our client; nothing is forwarded then.
    pub async fn prepare(&self, envelope: &Envelope<'_>, spool: &Spool) -> Result<Prepared, Reply> {
        let Some(desks) = &self.desks else {
            return Ok(Prepared::pass_through());
        };
        let loaded = desks.loaded();
        let routing = loaded.table.route(envelope.rcpts);
        if routing.desks.is_empty() {
            return Ok(Prepared::pass_through());
        }
        let config = desks.config();
        let local = |e: std::io::Error| {
            tracing::error!(session = envelope.session, error = %e, "cannot read the spool");
            local_error()
        };
        let (bytes, complete) = match spool
            .read_all(config.limits.max_parse_bytes)
            .await
            .map_err(local)?
        {
            Some(all) => (all, true),
            None => (spool.head(256 * 1024).await.map_err(local)?, false),
        };
        // Parsing a large message takes a while: keep it off the threads
        // that serve the sessions.
        let (bytes, mut mail) = tokio::task::spawn_blocking(move || {
            let mail = parse::parse(&bytes);
            (bytes, mail)
        })
        .await
        .map_err(|e| {
            tracing::error!(session = envelope.session, error = %e, "parser task failed");
            local_error()
        })?;
        if !complete {
            mail.reasons.push(ReasonCode::ParseTooLarge);
        }
        // Shared with the blob writer rather than copied: up to
        // max_parse_bytes per message.
        let bytes = Arc::new(bytes);
        let verdict = auth::verify(config, desks.authenticator(), envelope, &bytes).await;
        if config.server.shadow {
            log_shadow(&loaded, envelope, &mail, &routing);
            return Ok(Prepared::pass_through());
        }
        let raw_sha256 = if complete {
            store_blob(desks, bytes.clone()).await?
        } else {
            String::new()
        };
        let attachments = store_attachments(desks, std::mem::take(&mut mail.attachments)).await?;
        let mut outcome = Outcome {
            message_id: mail.message_id.clone(),
            tickets: Vec::new(),
        };
        let mut headers = Vec::new();
        for routed in &routing.desks {
            let input = MessageInput {
                loaded: &loaded,
                envelope,
                mail: &mail,
                verdict: &verdict,
                routing: &routing,
                routed,
                attachments: &attachments,
                raw_sha256: &raw_sha256,
            };
            let (ticket, t_outcome) = self.apply_to_desk(desks, &input).await?;
            headers.extend(tag::ticket_headers(&ticket, t_outcome.action));
            outcome.tickets.push(t_outcome);
        }
        headers.push((
            "Authentication-Results",
            verdict.header_value(&config.server.hostname),
        ));
        let rewrite = tag::rewrite(&bytes, &headers);
        if rewrite.removed_forged > 0 {
            for t in &mut outcome.tickets {
                t.reasons.push(ReasonCode::ForgedHeaderRemoved);
            }
        }
        Ok(Prepared {
            head: rewrite.head,
            skip: rewrite.skip,
            added: headers,
            outcome,
        })
    }

    /// Opens or updates this helpdesk's ticket, durably.
    async fn apply_to_desk(
        &self,
        desks: &Arc<Helpdesks>,
        input: &MessageInput<'_>,
    ) -> Result<(Ticket, TicketOutcome), Reply> {
        let desk = &input.loaded.table.helpdesks()[input.routed.helpdesk];
        let queue = &desk.queues[input.routed.queue];
        let class = classify::classify(desk, queue, input.mail);
        let dedupe_key = dedupe_key(&desk.ticket_prefix, input.mail, input.raw_sha256);
        let reply_to = desks.reply_address(input.mail, input.envelope.from, input.verdict);
        let suppressed = desks.reply_suppression(input.mail, input.envelope.from, input.verdict);
        let followup = desks.find_followup(desk, input.mail, &class);
        let record = message_record(input, &class, followup.as_ref());
        let change = match &followup {
            Some(f) if f.ticket_exists => {
                let followup_input = lifecycle::FollowupInput {
                    desks: desks.clone(),
                    desk: desk.clone(),
                    class: class.clone(),
                    sender: lifecycle::sender_of(input.mail, input.envelope.from),
                    proof: lifecycle::Proof::of(input.mail, input.envelope.from, input.verdict, f),
                    out_of_office: input.mail.out_of_office,
                    record,
                    suppressed,
                };
                Change::Update {
                    id: f.ticket_id.clone(),
                    dedupe_key,
                    apply: Box::new(move |t: &mut Ticket| {
                        lifecycle::apply_followup(t, followup_input);
                        Ok(())
                    }),
                }
            }
            _ => new_ticket_change(
                desks,
                input,
                desk,
                &class,
                record,
                (reply_to, suppressed),
                dedupe_key,
            ),
        };
        let stored = desks
            .store()
            .submit(change)
            .await
            .map_err(|e| store_failure(input.envelope, e))?;
        Ok(describe(stored, desk, input, &class, followup.as_ref()))
    }

    /// Called with the next hop's reply; returns the reply for our client.
    /// The ticket change is already on disk; here the replies written with
    /// it are released (next hop accepted) or cancelled (it refused).
    pub async fn settle(&self, prepared: &Prepared, hop_reply: &Reply) -> Reply {
        let Some(desks) = &self.desks else {
            return hop_reply.clone();
        };
        let accepted = (200..300).contains(&hop_reply.code);
        for t in &prepared.outcome.tickets {
            let replies = t.replies.clone();
            let raw = t.raw_sha256.clone();
            let change = Change::Update {
                id: t.ticket.clone(),
                dedupe_key: None,
                apply: Box::new(move |ticket: &mut Ticket| {
                    lifecycle::settle_delivery(ticket, &raw, &replies, accepted);
                    Ok(())
                }),
            };
            match desks.store().submit(change).await {
                Ok(stored) if accepted => desks.outbox().enqueue_queued(stored.ticket()),
                Ok(_) => {}
                // The ticket and the message are on disk already; only the
                // reply stays held. Logged for the operator to see.
                Err(e) => {
                    tracing::error!(ticket = %t.ticket, error = %e, "cannot release the replies of a delivered message")
                }
            }
        }
        hop_reply.clone()
    }
}

/// A new ticket for this message, with its confirmation drafted once the
/// writer has given it an id.
fn new_ticket_change(
    desks: &Arc<Helpdesks>,
    input: &MessageInput<'_>,
    desk: &HelpdeskConfig,
    class: &Classification,
    record: MessageRecord,
    (reply_to, suppressed): (String, Option<ReasonCode>),
    dedupe_key: Option<String>,
) -> Change {
    let mut reasons: Vec<ReasonCode> = vec![ReasonCode::RouteHelpdeskAddress];
    reasons.extend(input.routing.ignored.iter().map(|(_, r)| *r));
    reasons.extend(input.mail.reasons.iter().copied());
    reasons.extend(class.reasons.iter().copied());
    reasons.extend(input.verdict.reasons.iter().copied());
    reasons.extend(suppressed);
    let requester = lifecycle::sender_of(input.mail, input.envelope.from);
    let now = now_rfc3339();
    let ticket = Ticket {
        id: String::new(),
        helpdesk: desk.name.clone(),
        queue: desk.queues[input.routed.queue].queue_name().to_string(),
        procedure: class.procedure.clone(),
        sector: class.sector.clone(),
        urgency: class.urgency,
        contract: class.contract.clone(),
        status: if class.vague {
            Status::Suspended
        } else {
            Status::Open
        },
        severity: None,
        category: None,
        requester: requester.clone(),
        subject: input.mail.subject.clone(),
        created_at: now.clone(),
        due_at: None,
        assignee: None,
        recipients: input.routed.recipients.clone(),
        reasons,
        messages: vec![record],
        replies: Vec::new(),
        history: vec![HistoryEntry {
            at: now,
            by: requester,
            event: if class.vague {
                "created suspended (quality check)"
            } else {
                "created"
            }
            .into(),
        }],
    };
    let prefix = desk.ticket_prefix.clone();
    let desks = desks.clone();
    let desk = desk.clone();
    let vague = class.vague;
    let finish = move |t: &mut Ticket| {
        if suppressed.is_none() {
            let missing = match (vague, &desk.rules.quality_message) {
                (true, Some(text)) => text.clone(),
                _ => String::new(),
            };
            let extra = crate::outbox::render::Extra {
                message: String::new(),
                missing,
            };
            let first = t.messages.first().cloned();
            desks.auto_reply(
                &desk,
                t,
                ReplyKind::Created,
                &reply_to,
                first.as_ref(),
                &extra,
            );
        }
        Ok(())
    };
    Change::Create {
        prefix,
        year: time::OffsetDateTime::now_utc().year(),
        ticket,
        dedupe_key,
        finish: Some(Box::new(finish)),
    }
}

struct MessageInput<'a> {
    loaded: &'a Loaded,
    envelope: &'a Envelope<'a>,
    mail: &'a ParsedMail,
    verdict: &'a AuthVerdict,
    routing: &'a Routing,
    routed: &'a RoutedDesk,
    attachments: &'a [AttachmentRecord],
    raw_sha256: &'a str,
}

fn message_record(
    input: &MessageInput<'_>,
    class: &Classification,
    followup: Option<&Followup>,
) -> MessageRecord {
    let mut reasons = class.reasons.clone();
    reasons.extend(input.mail.reasons.iter().copied());
    if let Some(f) = followup {
        reasons.push(f.via);
    }
    MessageRecord {
        message_id: input.mail.message_id.clone(),
        from: lifecycle::sender_of(input.mail, input.envelope.from),
        subject: input.mail.subject.clone(),
        received_at: now_rfc3339(),
        attachments: input.attachments.to_vec(),
        action: if followup.is_some_and(|f| f.ticket_exists) {
            Action::Appended
        } else {
            Action::Created
        },
        recipients: input.routed.recipients.clone(),
        reasons,
        raw_sha256: (!input.raw_sha256.is_empty()).then(|| input.raw_sha256.to_string()),
        delivered: false,
    }
}

/// What the store did, for the tags and the log line.
fn describe(
    stored: StoreOutcome,
    desk: &HelpdeskConfig,
    input: &MessageInput<'_>,
    class: &Classification,
    followup: Option<&Followup>,
) -> (Ticket, TicketOutcome) {
    let duplicate = matches!(stored, StoreOutcome::Duplicate(_));
    let ticket = stored.into_ticket();
    let mine = ticket.messages.iter().rev().find(|m| {
        m.message_id.is_some() && m.message_id == input.mail.message_id
            || m.raw_sha256.as_deref() == Some(input.raw_sha256)
    });
    // The message's own record holds the classifier's, the parser's and the
    // follow-up's reasons, and those of a refused command.
    let mut reasons = match mine {
        Some(m) => m.reasons.clone(),
        None => class
            .reasons
            .iter()
            .copied()
            .chain(followup.map(|f| f.via))
            .collect(),
    };
    let mut action = mine.map(|m| m.action).unwrap_or(Action::Appended);
    if duplicate {
        reasons.push(ReasonCode::DuplicateMessageId);
        action = Action::Appended;
    }
    let mut seen = std::collections::HashSet::new();
    reasons.retain(|r| seen.insert(*r));
    // Replies answering this message: written now, or on an earlier
    // delivery attempt that the next hop refused.
    let replies = ticket
        .replies
        .iter()
        .filter(|r| {
            matches!(r.state, ReplyState::Held | ReplyState::Cancelled)
                && r.in_reply_to.is_some()
                && r.in_reply_to == input.mail.message_id
                || r.state == ReplyState::Held && r.in_reply_to.is_none()
        })
        .map(|r| r.message_id.clone())
        .collect();
    let outcome = TicketOutcome {
        helpdesk: desk.name.clone(),
        ticket: ticket.id.clone(),
        action,
        reasons,
        replies,
        raw_sha256: input.raw_sha256.to_string(),
    };
    (ticket, outcome)
}

/// What makes a redelivery recognisable: the Message-ID, or for mail
/// without one the content's hash (a content filter retries the same bytes).
fn dedupe_key(prefix: &str, mail: &ParsedMail, raw_sha256: &str) -> Option<String> {
    match (&mail.message_id, raw_sha256) {
        (Some(id), _) => Some(format!("{prefix}\nmid:{id}")),
        (None, "") => None,
        (None, sha) => Some(format!("{prefix}\nsha256:{sha}")),
    }
}

fn store_failure(envelope: &Envelope<'_>, e: StoreError) -> Reply {
    tracing::error!(session = envelope.session, error = %e, "ticket store write failed");
    store_unavailable()
}

async fn store_blob(desks: &Arc<Helpdesks>, bytes: Arc<Vec<u8>>) -> Result<String, Reply> {
    let store = desks.store().clone();
    match tokio::task::spawn_blocking(move || store.put_blob(&bytes)).await {
        Ok(Ok(sha)) => Ok(sha),
        Ok(Err(e)) => {
            tracing::error!(error = %e, "cannot write a blob");
            Err(store_unavailable())
        }
        Err(e) => {
            tracing::error!(error = %e, "blob writer task failed");
            Err(store_unavailable())
        }
    }
}

/// Stores the attachments as blobs; they are not needed in memory after.
async fn store_attachments(
    desks: &Arc<Helpdesks>,
    attachments: Vec<ParsedAttachment>,
) -> Result<Vec<AttachmentRecord>, Reply> {
    let mut records = Vec::with_capacity(attachments.len());
    for a in attachments {
        let size = a.bytes.len() as u64;
        let sha256 = store_blob(desks, Arc::new(a.bytes)).await?;
        records.push(AttachmentRecord {
            name: a.name,
            content_type: a.content_type,
            size,
            sha256,
        });
    }
    Ok(records)
}

fn log_shadow(loaded: &Loaded, envelope: &Envelope<'_>, mail: &ParsedMail, routing: &Routing) {
    for routed in &routing.desks {
        let desk = &loaded.table.helpdesks()[routed.helpdesk];
        let queue = &desk.queues[routed.queue];
        let class = classify::classify(desk, queue, mail);
        tracing::info!(
            target: "ticketgate::shadow",
            session = envelope.session,
            message_id = mail.message_id.as_deref().unwrap_or(""),
            helpdesk = %desk.name,
            queue = queue.queue_name(),
            procedure = class.procedure.as_deref().unwrap_or(""),
            sector = class.sector.as_deref().unwrap_or(""),
            urgency = class.urgency.as_str(),
            contract = class.contract.as_deref().unwrap_or(""),
            reasons = %class.reasons.iter().map(|r| r.as_str()).collect::<Vec<_>>().join(" "),
            "shadow: would have ticketed"
        );
    }
}

/// The one summary event per message (DESIGN §logs): what came in, what the
/// pipeline did, what the client was told.
pub fn log_message(
    envelope: &Envelope<'_>,
    size: u64,
    prepared: &Prepared,
    reply: &Reply,
    queue_id: Option<&str>,
    started: std::time::Instant,
) {
    let o = &prepared.outcome;
    if !reply.is_positive() {
        METRICS.message(MessageKind::Rejected);
    } else if o.tickets.is_empty() {
        METRICS.message(MessageKind::Passed);
    }
    for t in o.tickets.iter().filter(|_| reply.is_positive()) {
        METRICS.message(MessageKind::Ticket(t.action));
    }
    tracing::info!(
        target: "ticketgate::message",
        session = envelope.session,
        client = envelope.client.addr.as_deref().unwrap_or(""),
        message_id = o.message_id.as_deref().unwrap_or(""),
        from = envelope.from,
        rcpts = %envelope.rcpts.join(","),
        size,
        helpdesk = %o.helpdesks(),
        ticket = %o.tickets(),
        action = %o.actions(),
        reasons = %o.reasons(),
        queue_id = queue_id.unwrap_or(""),
        next_hop_reply = %reply.summary(),
        duration_ms = started.elapsed().as_millis() as u64,
        "message"
    );
}

/// The summary event of a message refused before it could be handed on.
pub fn log_refused(envelope: &Envelope<'_>, reply: &Reply, started: std::time::Instant) {
    METRICS.message(MessageKind::Rejected);
    tracing::info!(
        target: "ticketgate::message",
        session = envelope.session,
        client = envelope.client.addr.as_deref().unwrap_or(""),
        from = envelope.from,
        rcpts = %envelope.rcpts.join(","),
        reply = %reply.summary(),
        duration_ms = started.elapsed().as_millis() as u64,
        "message refused"
    );
}
