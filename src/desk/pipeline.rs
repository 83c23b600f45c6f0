//! The stages between receiving a message and forwarding it:
//! parse -> authenticate -> route -> classify -> store -> tag, and after the
//! next hop answered, the outbox. `prepare` runs before forwarding (so the
//! ticket is on disk first), `settle` after.

use std::ops::Range;
use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::replies::{self, Drafter, Wanted};
use super::service::{Loaded, Service};
use super::transitions::{self, Followup};
use crate::auth::{self, AuthVerdict};
use crate::classify::{self, Classification};
use crate::config::HelpdeskConfig;
use crate::envelope::Envelope;
use crate::metrics::{METRICS, MessageKind};
use crate::outbox::render::Extra;
use crate::outbox::settle::{self, HopVerdict};
use crate::parse::{self, ParseLimits, ParsedAttachment, ParsedMail};
use crate::reason::ReasonCode;
use crate::route::{RoutedDesk, Routing};
use crate::spool::Spool;
use crate::store::{Change, Outcome as StoreOutcome, StoreError, TicketStore};
use crate::tag;
use crate::ticket::{
    Action, AttachmentRecord, Event, HistoryEntry, MessageRecord, ReplyKind, Status, Ticket,
    Timestamp,
};
use crate::wire::reply::Reply;

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
    /// The message's identity on the ticket: `settle` finds its record,
    /// and the replies waiting for it, by this.
    pub identity: String,
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

/// What the pipeline decided for a message, the same for every front end:
/// the SMTP front end renders the edits into bytes on the way to the next
/// hop, the milter into header actions for the MTA.
pub struct Verdict {
    pub edits: HeaderEdits,
    pub outcome: Outcome,
}

/// The header edits of a tagged message, applied once by the front end.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeaderEdits {
    /// Our fields, in order, for the top of the message; none: the
    /// message passes untouched.
    pub add: Vec<(&'static str, String)>,
    /// The forged fields of the spooled message (sorted byte ranges).
    pub remove: Vec<Range<u64>>,
}

impl Verdict {
    pub fn pass_through() -> Verdict {
        Verdict {
            edits: HeaderEdits::default(),
            outcome: Outcome::default(),
        }
    }
}

/// Why the pipeline refused a message; the front end tells its client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The ticket could not be written: the client retries.
    StoreUnavailable,
    /// Reading the spool or parsing failed here.
    LocalError,
    /// No share of the parse budget within the data timeout.
    Busy,
    /// More separate forged fields than we cut.
    ForgedFlood,
}

impl Refusal {
    pub fn reply(self) -> Reply {
        match self {
            Refusal::StoreUnavailable => {
                Reply::new(451, "4.3.0", "Ticket store unavailable, try again later")
            }
            Refusal::LocalError => Reply::new(451, "4.3.0", "Local error, try again later"),
            Refusal::Busy => Reply::new(
                451,
                "4.3.2",
                "Too many messages being processed, try again later",
            ),
            Refusal::ForgedFlood => Reply::new(
                554,
                "5.6.0",
                "Too many forged X-Ticketgate or Authentication-Results fields",
            ),
        }
    }
}

/// A cap hit: counted, and one log line with its reason code.
fn note_cap(session: &str, cap: ReasonCode) {
    METRICS.cap(cap);
    tracing::warn!(session, reason = cap.as_str(), "cap hit");
}

/// Each ticket says which forged fields the message came with.
fn note_forged(outcome: &mut Outcome, cuts: &tag::HeaderCuts) {
    for t in &mut outcome.tickets {
        if cuts.forged_tags > 0 {
            t.reasons.push(ReasonCode::ForgedHeaderRemoved);
        }
        if cuts.forged_auth_results > 0 {
            t.reasons.push(ReasonCode::ForgedAuthResultsRemoved);
        }
    }
}

/// A parsed and authenticated message, as the tickets are made from it.
struct Message {
    mail: ParsedMail,
    auth: AuthVerdict,
    attachments: Vec<AttachmentRecord>,
    /// The raw message's blob; none for one read only in part.
    raw_sha256: Option<String>,
    identity: String,
}

/// What parsing left for the later stages: the raw bytes (DKIM needs
/// them), held only until authentication is done.
struct Read {
    bytes: Arc<Vec<u8>>,
    mail: ParsedMail,
    raw_sha256: Option<String>,
    _budget: OwnedSemaphorePermit,
}

/// Without helpdesks (`None`), every message passes through untouched.
pub struct Pipeline {
    desks: Option<Arc<Service>>,
    /// KiB of messages being parsed (`limits.parse_memory_bytes`).
    parse_budget: Arc<Semaphore>,
}

/// The budget is counted in KiB so that a semaphore's u32 permits cover it.
const BUDGET_UNIT: usize = 1024;

impl Pipeline {
    pub fn pass_through() -> Pipeline {
        Pipeline {
            desks: None,
            parse_budget: Arc::new(Semaphore::new(0)),
        }
    }

    pub fn new(desks: Arc<Service>) -> Pipeline {
        let units = desks
            .config()
            .limits
            .parse_memory_bytes
            .div_ceil(BUDGET_UNIT);
        Pipeline {
            desks: Some(desks),
            parse_budget: Arc::new(Semaphore::new(units.min(u32::MAX as usize))),
        }
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
    pub async fn prepare(
        &self,
        envelope: &Envelope<'_>,
        spool: &Spool,
    ) -> Result<Verdict, Refusal> {
        let Some(desks) = &self.desks else {
            return Ok(Verdict::pass_through());
        };
        let loaded = desks.loaded();
        let routing = loaded.table.route(envelope.rcpts);
        if routing.desks.is_empty() {
            return Ok(Verdict::pass_through());
        }
        let config = &loaded.config;
        let cuts = scan_header(spool, &config.server.hostname)
            .await
            .map_err(|e| spool_error(envelope, e))?;
        if cuts.too_many {
            return Err(Refusal::ForgedFlood);
        }
        let Read {
            bytes,
            mut mail,
            raw_sha256,
            _budget,
        } = self.read_and_parse(desks, envelope, spool).await?;
        let verdict = auth::verify(config, desks.authenticator(), envelope, &bytes).await;
        // The raw bytes and the parse budget are not needed past here.
        drop((bytes, _budget));
        if config.server.shadow {
            log_shadow(&loaded, envelope, &mail, &routing);
            return Ok(Verdict::pass_through());
        }
        let attachments = attachment_records(std::mem::take(&mut mail.attachments));
        let message = Message {
            mail,
            auth: verdict,
            attachments,
            raw_sha256,
            identity: spool.identity(),
        };
        let (mut add, mut outcome) = self
            .ticket_each_desk(desks, &loaded, envelope, &routing, &message)
            .await?;
        add.push((
            "Authentication-Results",
            message.auth.header_value(&config.server.hostname),
        ));
        note_forged(&mut outcome, &cuts);
        Ok(Verdict {
            edits: HeaderEdits {
                add,
                remove: cuts.cuts,
            },
            outcome,
        })
    }

    /// Opens or updates the ticket of each helpdesk the message is routed
    /// to; returns our tags and what was done.
    async fn ticket_each_desk(
        &self,
        desks: &Arc<Service>,
        loaded: &Loaded,
        envelope: &Envelope<'_>,
        routing: &Routing,
        message: &Message,
    ) -> Result<(Vec<(&'static str, String)>, Outcome), Refusal> {
        let mut outcome = Outcome {
            message_id: message.mail.message_id.clone(),
            tickets: Vec::new(),
        };
        let mut headers = Vec::new();
        for routed in &routing.desks {
            let input = MessageInput {
                loaded,
                envelope,
                mail: &message.mail,
                verdict: &message.auth,
                routing,
                routed,
                attachments: &message.attachments,
                raw_sha256: message.raw_sha256.as_deref(),
                identity: &message.identity,
            };
            let (ticket, t_outcome) = self.apply_to_desk(desks, &input).await?;
            headers.extend(tag::ticket_headers(&ticket, t_outcome.action));
            outcome.tickets.push(t_outcome);
        }
        Ok((headers, outcome))
    }

    /// Waits for a share of the parse budget, reads the message (or its
    /// first part when it is over `max_parse_bytes`) and parses it off the
    /// session threads; attachments and the raw message are stored as
    /// blobs straight from the parsed message, without copies.
    async fn read_and_parse(
        &self,
        desks: &Arc<Service>,
        envelope: &Envelope<'_>,
        spool: &Spool,
    ) -> Result<Read, Refusal> {
        let config = desks.config();
        let max = config.limits.max_parse_bytes;
        let complete = spool.len() <= max as u64;
        let want = if complete {
            spool.len() as usize
        } else {
            HEAD_BYTES
        };
        let budget = self.parse_slot(envelope, want, &config).await?;
        let bytes = match complete {
            true => spool.read_all(max).await,
            false => spool.head(HEAD_BYTES).await.map(Some),
        };
        let bytes = bytes
            .map_err(|e| spool_error(envelope, e))?
            .unwrap_or_default();
        let bytes = Arc::new(bytes);
        let limits = ParseLimits::from(&config.limits);
        let store = (!config.server.shadow).then(|| desks.store().clone());
        let raw = bytes.clone();
        let parsed =
            tokio::task::spawn_blocking(move || parse_and_keep(&raw, &limits, store, complete))
                .await;
        let (mut mail, raw_sha256) = match parsed {
            Ok(Ok(done)) => done,
            Ok(Err(e)) => {
                tracing::error!(session = envelope.session, error = %e, "cannot write a blob");
                return Err(Refusal::StoreUnavailable);
            }
            Err(e) => {
                tracing::error!(session = envelope.session, error = %e, "parser task failed");
                return Err(Refusal::LocalError);
            }
        };
        if !complete {
            mail.reasons.push(ReasonCode::ParseTooLarge);
        }
        for cap in mail
            .reasons
            .iter()
            .filter(|r| r.as_str().starts_with("cap."))
        {
            note_cap(envelope.session, *cap);
        }
        Ok(Read {
            bytes,
            mail,
            raw_sha256,
            _budget: budget,
        })
    }

    /// A share of the parse budget for `bytes` of message. Waiting longer
    /// than the data timeout answers `451`: the client would give up on
    /// us anyway, and the next attempt may find the budget free.
    async fn parse_slot(
        &self,
        envelope: &Envelope<'_>,
        bytes: usize,
        config: &crate::config::Config,
    ) -> Result<OwnedSemaphorePermit, Refusal> {
        let units = bytes.div_ceil(BUDGET_UNIT).max(MIN_BUDGET_UNITS);
        let total = config.limits.parse_memory_bytes.div_ceil(BUDGET_UNIT);
        let units = units.min(total).min(u32::MAX as usize) as u32;
        let wait = self.parse_budget.clone().acquire_many_owned(units);
        let started = std::time::Instant::now();
        METRICS.parse_waiting();
        let waited = tokio::time::timeout(config.limits.data_timeout(), wait).await;
        METRICS.parse_waited(started.elapsed());
        match waited {
            Ok(Ok(permit)) => Ok(permit),
            Ok(Err(_)) => Err(Refusal::LocalError),
            Err(_) => {
                tracing::warn!(
                    session = envelope.session,
                    bytes,
                    "no parse slot within the data timeout"
                );
                Err(Refusal::Busy)
            }
        }
    }

    /// Opens or updates this helpdesk's ticket, durably.
    async fn apply_to_desk(
        &self,
        desks: &Arc<Service>,
        input: &MessageInput<'_>,
    ) -> Result<(Ticket, TicketOutcome), Refusal> {
        let desk = &input.loaded.table.helpdesks()[input.routed.helpdesk];
        let queue = &desk.queues[input.routed.queue];
        let class = classify::classify(desk, queue, input.mail);
        let followup = desks.find_followup(desk, input.mail, &class).await;
        let decided = DeskMessage {
            record: message_record(input, &class, followup.as_ref()),
            suppressed: replies::reply_suppression(
                input.mail,
                input.envelope.from,
                input.verdict,
                |a| input.loaded.table.is_own_address(a),
            ),
            dedupe_key: dedupe_key(&desk.ticket_prefix, input.mail, input.identity),
            drafter: desks.drafter(input.loaded, desk),
            class: class.clone(),
        };
        let stored = match &followup {
            Some(f) if f.ticket_exists => append_followup(desks.store(), input, f, decided).await,
            _ => {
                desks
                    .store()
                    .submit(new_ticket_change(input, decided))
                    .await
            }
        }
        .map_err(|e| store_failure(input.envelope, e))?;
        // Settled when the next hop answers; the sweep looks again at the
        // horizon in case that answer is never recorded.
        desks
            .outbox()
            .watch_message(&stored.ticket().id, input.identity);
        Ok(describe(stored, desk, input, &class, followup.as_ref()))
    }

    /// Called once the next hop answered. The ticket change is already on
    /// disk; here the replies written with it are released (next hop
    /// accepted) or cancelled (it refused). Never fails: the next hop has
    /// its answer, and a `451` now would make the message a duplicate
    /// there; what cannot be recorded now the sweep records later.
    pub async fn settle(&self, verdict: &Verdict, hop: HopVerdict) {
        let Some(desks) = &self.desks else {
            return;
        };
        for t in &verdict.outcome.tickets {
            if record_one(desks, t, hop).await.is_err() {
                desks.outbox().record_later(&t.ticket, &t.identity, hop);
            }
        }
    }

    /// Records our own acceptance of the message on each of its tickets,
    /// durably, before the front end says so (the milter: once the MTA has
    /// our accept we hear nothing more of the message).
    pub async fn record_delivery(
        &self,
        verdict: &Verdict,
        hop: HopVerdict,
    ) -> Result<(), StoreError> {
        let Some(desks) = &self.desks else {
            return Ok(());
        };
        for t in &verdict.outcome.tickets {
            record_one(desks, t, hop).await?;
        }
        Ok(())
    }
}

/// Settles one ticket with the next hop's answer to this message.
async fn record_one(
    desks: &Arc<Service>,
    t: &TicketOutcome,
    verdict: HopVerdict,
) -> Result<(), StoreError> {
    let limiter = desks.outbox().limiter();
    match settle::record_answer(desks.store(), &limiter, &t.ticket, &t.identity, verdict).await {
        Ok(stored) => {
            desks
                .outbox()
                .answered(stored.ticket(), &t.identity, verdict);
            Ok(())
        }
        Err(e) => {
            tracing::error!(ticket = %t.ticket, error = %e, "cannot settle a ticket after the next hop answered");
            Err(e)
        }
    }
}

/// What one ticket keeps: every change rewrites the whole ticket, so a
/// ticket that grew without bound would make each follow-up dearer.
#[derive(Debug, Clone, Copy)]
struct TicketCaps {
    messages: usize,
    attachments: usize,
}

impl From<&crate::config::LimitsConfig> for TicketCaps {
    fn from(l: &crate::config::LimitsConfig) -> Self {
        TicketCaps {
            messages: l.max_messages_per_ticket,
            attachments: l.max_attachments_per_ticket,
        }
    }
}

impl TicketCaps {
    /// Applied after a follow-up was appended: past the caps the newest
    /// message record (or its attachment list) is not kept, and the
    /// ticket says so once. The message itself is still forwarded, and its
    /// command, if any, has been applied.
    fn enforce(&self, t: &mut Ticket, session: &str) {
        let note = |t: &mut Ticket, reason: ReasonCode| {
            note_cap(session, reason);
            if !t.reasons.contains(&reason) {
                t.reasons.push(reason);
            }
        };
        if t.messages.len() > self.messages {
            t.messages.truncate(self.messages);
            note(t, ReasonCode::CapTicketMessages);
        }
        let total: usize = t.messages.iter().map(|m| m.attachments.len()).sum();
        if total > self.attachments
            && let Some(newest) = t.messages.last_mut()
        {
            let keep = newest
                .attachments
                .len()
                .saturating_sub(total - self.attachments);
            newest.attachments.truncate(keep);
            note(t, ReasonCode::CapTicketAttachments);
        }
    }
}

/// What a message brings to one helpdesk's ticket, decided before the
/// store write.
struct DeskMessage {
    class: Classification,
    record: MessageRecord,
    /// Why no automatic reply may answer it.
    suppressed: Option<ReasonCode>,
    dedupe_key: Option<String>,
    drafter: Drafter,
}

/// Appends the follow-up to its ticket, with what it asks for if its
/// sender may, and the notice that tells the requester.
async fn append_followup(
    store: &TicketStore,
    input: &MessageInput<'_>,
    f: &Followup,
    m: DeskMessage,
) -> Result<StoreOutcome, StoreError> {
    let followup = transitions::FollowupInput {
        desk: m.drafter.desk().clone(),
        class: m.class,
        sender: transitions::sender_of(input.mail, input.envelope.from),
        proof: transitions::Proof::of(input.mail, input.envelope.from, input.verdict, f),
        out_of_office: input.mail.out_of_office,
        record: m.record,
        suppressed: m.suppressed,
    };
    let caps = TicketCaps::from(&input.loaded.config.limits);
    let drafter = m.drafter;
    store
        .modify(&f.ticket_id, m.dedupe_key.as_deref(), |t| {
            if let Some(notice) = transitions::apply_followup(t, followup.clone()) {
                drafter.add(t, notice);
            }
            caps.enforce(t, input.envelope.session);
            Ok(())
        })
        .await
}

/// A new ticket for this message, with its confirmation drafted once the
/// writer has given it an id.
fn new_ticket_change(input: &MessageInput<'_>, m: DeskMessage) -> Change {
    let desk = m.drafter.desk();
    let reply_to = replies::reply_address(input.mail, input.envelope.from, input.verdict);
    let missing = match (m.class.vague, &desk.rules.quality_message) {
        (true, Some(text)) => text.clone(),
        _ => String::new(),
    };
    let prefix = desk.ticket_prefix.clone();
    let ticket = new_ticket(input, desk, &m.class, m.record, m.suppressed);
    let (drafter, suppressed) = (m.drafter, m.suppressed);
    let draft = move |t: &mut Ticket| {
        if suppressed.is_none()
            && let Some(first) = t.messages.first().cloned()
        {
            let extra = Extra {
                message: String::new(),
                missing,
            };
            drafter.add(
                t,
                Wanted::answer(ReplyKind::Created, &reply_to, &first, extra),
            );
        }
        Ok(())
    };
    Change::Create {
        prefix,
        year: time::OffsetDateTime::now_utc().year(),
        ticket,
        dedupe_key: m.dedupe_key,
        draft: Some(Box::new(draft)),
    }
}

/// The ticket a first message opens (its id is the writer's to give).
fn new_ticket(
    input: &MessageInput<'_>,
    desk: &HelpdeskConfig,
    class: &Classification,
    record: MessageRecord,
    suppressed: Option<ReasonCode>,
) -> Ticket {
    let reasons = opening_reasons(input.routing, input.mail, class, input.verdict, suppressed);
    let requester = transitions::sender_of(input.mail, input.envelope.from);
    let now = Timestamp::now();
    let (status, event) = opening_status(class);
    Ticket {
        id: String::new(),
        helpdesk: desk.name.clone(),
        queue: desk.queues[input.routed.queue].queue_name().to_string(),
        procedure: class.procedure.clone(),
        sector: class.sector.clone(),
        urgency: class.urgency,
        contract: class.contract.clone(),
        status,
        severity: None,
        category: None,
        requester: requester.clone(),
        subject: input.mail.subject.clone(),
        created_at: now,
        due_at: None,
        assignee: None,
        recipients: input.routed.recipients.clone(),
        reasons,
        messages: vec![record],
        replies: Vec::new(),
        history: vec![HistoryEntry {
            at: now,
            by: requester,
            event,
        }],
        void: None,
    }
}

/// The reasons a new ticket is opened with.
pub(super) fn opening_reasons(
    routing: &Routing,
    mail: &ParsedMail,
    class: &Classification,
    verdict: &AuthVerdict,
    suppressed: Option<ReasonCode>,
) -> Vec<ReasonCode> {
    let mut reasons: Vec<ReasonCode> = vec![ReasonCode::RouteHelpdeskAddress];
    reasons.extend(routing.ignored.iter().map(|(_, r)| *r));
    reasons.extend(mail.reasons.iter().copied());
    reasons.extend(class.reasons.iter().copied());
    reasons.extend(verdict.reasons.iter().copied());
    reasons.extend(suppressed);
    reasons
}

/// A vague first message opens the case suspended, waiting for details.
pub(super) fn opening_status(class: &Classification) -> (Status, Event) {
    match class.vague {
        true => (Status::Suspended, Event::CreatedSuspended),
        false => (Status::Open, Event::Created),
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
    raw_sha256: Option<&'a str>,
    identity: &'a str,
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
        from: transitions::sender_of(input.mail, input.envelope.from),
        subject: input.mail.subject.clone(),
        received_at: Timestamp::now(),
        attachments: input.attachments.to_vec(),
        action: if followup.is_some_and(|f| f.ticket_exists) {
            Action::Appended
        } else {
            Action::Created
        },
        recipients: input.routed.recipients.clone(),
        reasons,
        raw_sha256: input.raw_sha256.map(str::to_string),
        delivered: false,
        identity: Some(input.identity.to_string()),
        refused: None,
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
    let mut ticket = stored.into_ticket();
    // Only the same bytes (trace aside) are this message: another one that
    // reuses its Message-ID is a duplicate, but releases nothing.
    let mine = ticket
        .messages
        .iter()
        .rev()
        .find(|m| m.identity.as_deref() == Some(input.identity));
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
    // A retry of a message that never got through does again what its
    // first attempt did; one the next hop already has only repeats it.
    let retry = mine.is_some_and(|m| !m.delivered);
    if duplicate {
        reasons.push(ReasonCode::DuplicateMessageId);
        if !retry {
            action = Action::Appended;
        }
    }
    let mut seen = std::collections::HashSet::new();
    reasons.retain(|r| seen.insert(*r));
    // The tags describe the ticket as this delivery, if accepted, leaves it.
    if let (Some(v), true) = (&ticket.void, retry) {
        ticket.status = v.previous;
    }
    let outcome = TicketOutcome {
        helpdesk: desk.name.clone(),
        ticket: ticket.id.clone(),
        action,
        reasons,
        identity: input.identity.to_string(),
    };
    (ticket, outcome)
}

/// What makes a redelivery recognisable: the Message-ID, or for mail
/// without one its identity (the bytes without the trace fields that each
/// attempt changes), which exists whatever the size.
fn dedupe_key(prefix: &str, mail: &ParsedMail, identity: &str) -> Option<String> {
    Some(match &mail.message_id {
        Some(id) => format!("{prefix}\nmid:{id}"),
        None => format!("{prefix}\nfp:{identity}"),
    })
}

fn store_failure(envelope: &Envelope<'_>, e: StoreError) -> Refusal {
    tracing::error!(session = envelope.session, error = %e, "ticket store write failed");
    Refusal::StoreUnavailable
}

/// What one message takes of the parse budget at least: the parser's own
/// structures cost something even for a tiny message.
const MIN_BUDGET_UNITS: usize = 64;

/// Bytes read of a message over `max_parse_bytes`: enough for its
/// headers, which are what it is ticketed from.
pub(super) const HEAD_BYTES: usize = 256 * 1024;

/// Parses `raw` within `limits`; with a store, keeps each attachment and
/// (for a message read whole) the raw message as blobs. Runs on a blocking
/// thread: the blob writes are synchronous.
fn parse_and_keep(
    raw: &[u8],
    limits: &ParseLimits,
    store: Option<TicketStore>,
    complete: bool,
) -> Result<(ParsedMail, Option<String>), StoreError> {
    let Some(store) = store else {
        return Ok((
            parse::parse_with(raw, limits, &mut |b| Ok(parse::sha256_hex(b)))?,
            None,
        ));
    };
    let mail = parse::parse_with(raw, limits, &mut |b| store.put_blob(b))?;
    let raw_sha256 = match complete {
        true => Some(store.put_blob(raw)?),
        false => None,
    };
    Ok((mail, raw_sha256))
}

fn attachment_records(attachments: Vec<ParsedAttachment>) -> Vec<AttachmentRecord> {
    attachments
        .into_iter()
        .map(|a| AttachmentRecord {
            name: a.name,
            content_type: a.content_type,
            size: a.size,
            sha256: a.sha256,
        })
        .collect()
}

/// The forged fields of the header section, read from the spool in chunks
/// whatever its size.
async fn scan_header(spool: &Spool, authserv_id: &str) -> std::io::Result<tag::HeaderCuts> {
    let mut scanner = tag::HeaderScanner::new(authserv_id);
    let mut reader = spool.reader().await?;
    let mut chunk = Vec::new();
    while !scanner.is_done() && reader.next_chunk(&mut chunk).await? > 0 {
        scanner.feed(&chunk);
    }
    Ok(scanner.finish())
}

fn spool_error(envelope: &Envelope<'_>, e: std::io::Error) -> Refusal {
    tracing::error!(session = envelope.session, error = %e, "cannot read the spool");
    Refusal::LocalError
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
    outcome: &Outcome,
    reply: &Reply,
    queue_id: Option<&str>,
    started: std::time::Instant,
) {
    let o = outcome;
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
        refusal = reply.refusal_reason().map_or("", |r| r.as_str()),
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
        reason = reply.refusal_reason().map_or("", |r| r.as_str()),
        reply = %reply.summary(),
        duration_ms = started.elapsed().as_millis() as u64,
        "message refused"
    );
}
