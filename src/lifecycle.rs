//! The ticket lifecycle: what a follow-up message does to a ticket, what
//! the workgroup's commands do, and the state they share (`Helpdesks`).
//! Transitions are plain functions on `&mut Ticket`, run inside the store's
//! writer so that each change is one atomic, durable write.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use crate::auth::{AuthVerdict, Authenticator};
use crate::classify::{self, Classification, MailCommand};
use crate::config::{Config, HelpdeskConfig};
use crate::control::{Op, Request, Response};
use crate::envelope::canonical_address;
use crate::outbox::Outbox;
use crate::outbox::compose::{Draft, compose};
use crate::outbox::msgid::Signer;
use crate::outbox::render::{Extra, Templates};
use crate::outbox::suppress;
use crate::parse::ParsedMail;
use crate::reason::ReasonCode;
use crate::route::{HelpdeskTable, normalize_address};
use crate::store::{Change, StoreError, TicketStore};
use crate::ticket::{
    Action, Category, HistoryEntry, MessageRecord, ReplyKind, ReplyRecord, ReplyState, Status,
    Ticket, now_rfc3339,
};

/// Everything the helpdesk stages share: config, the reloadable helpdesk
/// table and templates, store, outbox (which keeps the reply rate limit)
/// and the Message-ID signer.
pub struct Helpdesks {
    config: Config,
    loaded: RwLock<Arc<Loaded>>,
    store: TicketStore,
    outbox: Outbox,
    signer: Signer,
    /// SPF/DKIM/DMARC resolver, built once; `None` with `[auth] dns = "off"`.
    authenticator: Option<Authenticator>,
}

/// What SIGHUP replaces: the helpdesk table and the reply templates. A
/// message works with one snapshot from start to end.
pub struct Loaded {
    pub table: HelpdeskTable,
    pub templates: Templates,
}

/// A message that refers to an existing ticket.
#[derive(Debug, Clone)]
pub struct Followup {
    pub ticket_id: String,
    pub via: ReasonCode,
    /// It answers one of our signed Message-IDs on the ticket, sent to
    /// this (canonical) address; `None` for no signed id, or one from
    /// before ids were bound to their recipient.
    pub signed_for: Option<String>,
    pub ticket_exists: bool,
}

/// Signed ids looked at per message: In-Reply-To, then the newest
/// References. A thread's own id is among the last; the bound keeps a
/// header stuffed with ids from costing a store read each.
const MAX_ANSWERED_IDS: usize = 20;

impl Helpdesks {
    pub fn new(
        config: Config,
        store: TicketStore,
        outbox: Outbox,
        signer: Signer,
        templates: Templates,
    ) -> Helpdesks {
        let loaded = RwLock::new(Arc::new(Loaded {
            table: HelpdeskTable::new(config.helpdesks.clone())
                .with_recipient_delimiter(&config.server.recipient_delimiter),
            templates,
        }));
        let authenticator = Authenticator::new(&config.auth).unwrap_or_else(|e| {
            // Nothing authenticates then (the safe side); config validation
            // already checked what can fail here.
            tracing::error!(error = %e, "sender authentication disabled");
            None
        });
        Helpdesks {
            config,
            loaded,
            store,
            outbox,
            signer,
            authenticator,
        }
    }

    pub fn config(&self) -> &Config {
        &self.config
    }
    /// The current helpdesk table and templates.
    pub fn loaded(&self) -> Arc<Loaded> {
        self.loaded
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Swaps in a new helpdesk table and templates (SIGHUP). Messages in
    /// flight finish with the snapshot they started with.
    pub fn reload(&self, helpdesks: Vec<HelpdeskConfig>, templates: Templates) {
        let next = Arc::new(Loaded {
            table: HelpdeskTable::new(helpdesks)
                .with_recipient_delimiter(&self.config.server.recipient_delimiter),
            templates,
        });
        *self.loaded.write().unwrap_or_else(|p| p.into_inner()) = next;
    }
    pub fn store(&self) -> &TicketStore {
        &self.store
    }
    pub fn outbox(&self) -> &Outbox {
        &self.outbox
    }
    pub fn authenticator(&self) -> Option<&Authenticator> {
        self.authenticator.as_ref()
    }

    fn desk_by_name(&self, name: &str) -> Option<HelpdeskConfig> {
        self.loaded()
            .table
            .helpdesks()
            .iter()
            .find(|d| d.name == name)
            .cloned()
    }

    /// Where a reply goes: the author when the mail authenticates,
    /// otherwise the envelope sender (whom SMTP vouches for).
    pub fn reply_address(
        &self,
        mail: &ParsedMail,
        envelope_from: &str,
        verdict: &crate::auth::AuthVerdict,
    ) -> String {
        match (&mail.from, verdict.dmarc_pass) {
            (Some(from), true) => normalize_address(from),
            _ => normalize_address(envelope_from),
        }
    }

    /// Why no automatic reply may answer this message (RFC 3834, robots,
    /// senders nobody vouches for). A reply goes to the From, the envelope
    /// sender or the requester (the From of the first message), all of
    /// which this checks against our own addresses.
    pub fn reply_suppression(
        &self,
        mail: &ParsedMail,
        envelope_from: &str,
        verdict: &AuthVerdict,
    ) -> Option<ReasonCode> {
        let loaded = self.loaded();
        let sender = suppress::Sender {
            envelope_from,
            disowned: verdict.spf_fail && !verdict.dmarc_pass,
        };
        suppress::suppression(mail, sender, |a| loaded.table.is_own_address(a))
    }

    /// The ticket this message refers to: a reply to one of our mails
    /// (signed Message-ID), or a ticket id of this helpdesk in the subject.
    pub fn find_followup(
        &self,
        desk: &HelpdeskConfig,
        mail: &ParsedMail,
        class: &Classification,
    ) -> Option<Followup> {
        let answered = mail
            .in_reply_to
            .iter()
            .map(|id| (id, ReasonCode::FollowupInReplyTo))
            .chain(
                mail.references
                    .iter()
                    .rev()
                    .map(|id| (id, ReasonCode::FollowupReferences)),
            )
            .take(MAX_ANSWERED_IDS);
        for (id, via) in answered {
            if let Some(signed) = self.our_id(desk, id) {
                let exists = self.ticket_exists(&signed.ticket);
                return Some(Followup {
                    ticket_id: signed.ticket,
                    via,
                    signed_for: signed.bound_to,
                    ticket_exists: exists,
                });
            }
        }
        let ticket_id = class.subject_ticket_id.clone()?;
        let exists = self
            .store
            .get(&ticket_id)
            .ok()
            .flatten()
            .is_some_and(|t| t.helpdesk == desk.name);
        Some(Followup {
            ticket_id,
            via: if exists {
                ReasonCode::FollowupSubjectId
            } else {
                ReasonCode::FollowupUnknownTicket
            },
            signed_for: None,
            ticket_exists: exists,
        })
    }

    /// One of our Message-IDs on a ticket of `desk`, checked against the
    /// addresses that ticket's mail went to.
    fn our_id(&self, desk: &HelpdeskConfig, id: &str) -> Option<crate::outbox::msgid::Signed> {
        let prefix = format!("{}-", desk.ticket_prefix);
        let addresses = |ticket: &str| {
            if !ticket.starts_with(&prefix) {
                return Vec::new();
            }
            match self.store.get(ticket) {
                Ok(Some(t)) if t.helpdesk == desk.name => sent_to(&t),
                _ => Vec::new(),
            }
        };
        self.signer
            .ticket_of(id, addresses)
            .filter(|s| s.ticket.starts_with(&prefix))
    }

    fn ticket_exists(&self, id: &str) -> bool {
        matches!(self.store.get(id), Ok(Some(_)))
    }

    /// Renders a reply of `kind` for `t`, ready to be stored with it.
    pub fn draft_reply(
        &self,
        desk: &HelpdeskConfig,
        t: &Ticket,
        kind: ReplyKind,
        to: &str,
        in_reply_to: Option<&str>,
        extra: &Extra,
    ) -> ReplyRecord {
        let (subject, body) = self.loaded().templates.render(kind, desk, t, extra);
        let message_id = self.signer.message_id(&t.id, &canonical_address(to));
        let raw = compose(&Draft {
            desk,
            to,
            subject: &subject,
            body: &body,
            message_id: &message_id,
            ticket_id: &t.id,
            in_reply_to,
        });
        ReplyRecord {
            kind,
            to: to.to_string(),
            message_id,
            state: ReplyState::Held,
            attempts: 0,
            next_attempt_at: None,
            raw,
            in_reply_to: in_reply_to.map(str::to_string),
            answers: None,
            reason: None,
        }
    }

    /// An automatic reply to `answering`, held until the next hop accepts
    /// that message; the rate limit applies when it is released
    /// (`settle`), so mail that is never delivered spends no budget.
    pub fn auto_reply(
        &self,
        desk: &HelpdeskConfig,
        t: &mut Ticket,
        kind: ReplyKind,
        to: &str,
        answering: Option<&MessageRecord>,
        extra: &Extra,
    ) {
        let in_reply_to = answering.and_then(|m| m.message_id.clone());
        let mut reply = self.draft_reply(desk, t, kind, to, in_reply_to.as_deref(), extra);
        reply.answers = answering.and_then(|m| m.identity.clone());
        t.replies.push(reply);
    }

    /// A notice a workgroup member's command sends to the requester: a
    /// person acted, so no rate limit, and nothing to wait for. None to a
    /// ticket opened by mail that must not be answered (RFC 3834).
    fn workgroup_notice(
        &self,
        desk: &HelpdeskConfig,
        t: &mut Ticket,
        kind: ReplyKind,
        extra: &Extra,
    ) {
        if let Some(why) = crate::settle::notice_suppression(t) {
            tracing::info!(ticket = %t.id, reason = %why, "workgroup notice not sent");
            if !t.reasons.contains(&ReasonCode::NoticeSuppressed) {
                t.reasons.push(ReasonCode::NoticeSuppressed);
            }
            return;
        }
        let to = t.requester.clone();
        let mut reply = self.draft_reply(desk, t, kind, &to, None, extra);
        reply.state = ReplyState::Queued;
        t.replies.push(reply);
    }

    /// Handles one control-socket request.
    pub async fn control(self: &Arc<Self>, request: Request) -> Response {
        let by = request.actor.clone().unwrap_or_else(|| "workgroup".into());
        let result = match request.op {
            // Written a page at a time by the control socket itself
            // (control::stream_list): never materialised here.
            Op::List { .. } => {
                return Response::Error {
                    error: "list is answered by the control socket".into(),
                };
            }
            Op::Show { id } => {
                return match self.store.get(&id) {
                    Ok(Some(t)) => Response::Ticket {
                        ticket: Box::new(t),
                    },
                    Ok(None) => Response::Error {
                        error: format!("no ticket {id}"),
                    },
                    Err(e) => Response::Error {
                        error: e.to_string(),
                    },
                };
            }
            Op::Take { id, by: taker } => {
                self.command(id, &taker.clone(), WorkgroupCommand::Take(taker))
                    .await
            }
            Op::Severity { id, level } => {
                self.command(id, &by, WorkgroupCommand::Severity(level))
                    .await
            }
            Op::Classify { id, category } => {
                self.command(id, &by, WorkgroupCommand::Classify(category))
                    .await
            }
            Op::Suspend { id, message } => {
                self.command(id, &by, WorkgroupCommand::Suspend(message))
                    .await
            }
            Op::Resume { id } => self.command(id, &by, WorkgroupCommand::Resume).await,
            Op::Close { id } => self.command(id, &by, WorkgroupCommand::Close).await,
            Op::Reopen { id } => self.command(id, &by, WorkgroupCommand::Reopen).await,
        };
        match result {
            Ok(t) => Response::Ticket {
                ticket: Box::new(t),
            },
            Err(e) => Response::Error { error: e },
        }
    }

    async fn command(
        self: &Arc<Self>,
        id: String,
        by: &str,
        command: WorkgroupCommand,
    ) -> Result<Ticket, String> {
        let current = self
            .store
            .get(&id)
            .map_err(|e| e.to_string())?
            .ok_or(format!("no ticket {id}"))?;
        let desk = self.desk_by_name(&current.helpdesk).ok_or(format!(
            "ticket {id} belongs to helpdesk {} which is not configured",
            current.helpdesk
        ))?;
        let by = by.to_string();
        let this = self.clone();
        let apply = move |t: &mut Ticket| {
            // Its mail never reached the helpdesk: not a case to work on.
            refuse_if(
                t.status == Status::Void,
                "the ticket is void (its mail was never delivered)",
            )?;
            this.apply_command(&desk, t, &by, command)
        };
        let change = Change::Update {
            id: id.clone(),
            dedupe_key: None,
            apply: Box::new(apply),
        };
        let stored = self.store.submit(change).await.map_err(|e| match e {
            StoreError::Rejected(msg) => msg,
            other => other.to_string(),
        })?;
        let ticket = stored.into_ticket();
        self.outbox.enqueue_queued(&ticket);
        Ok(ticket)
    }

    fn apply_command(
        &self,
        desk: &HelpdeskConfig,
        t: &mut Ticket,
        by: &str,
        command: WorkgroupCommand,
    ) -> Result<(), String> {
        let now = now_rfc3339();
        let event = match command {
            WorkgroupCommand::Take(name) => {
                refuse_if(
                    t.status == Status::Closed,
                    "a closed ticket cannot be taken; reopen it first",
                )?;
                t.assignee = Some(name.clone());
                format!("taken by {name}")
            }
            WorkgroupCommand::Severity(level) => {
                let sev = desk
                    .severities
                    .iter()
                    .find(|s| s.level.eq_ignore_ascii_case(&level))
                    .ok_or_else(|| {
                        let known: Vec<&str> =
                            desk.severities.iter().map(|s| s.level.as_str()).collect();
                        format!(
                            "unknown severity {level} for {}; levels: {}",
                            desk.name,
                            known.join(", ")
                        )
                    })?;
                t.severity = Some(sev.level.clone());
                t.due_at = Some(after_hours(sev.resolution_hours));
                format!(
                    "severity {} (resolve within {} h)",
                    sev.level, sev.resolution_hours
                )
            }
            WorkgroupCommand::Classify(category) => {
                t.category = Some(category);
                match category {
                    Category::Incident => "classified as incident".to_string(),
                    Category::Maintenance => "classified as Manutenzione Ordinaria".to_string(),
                }
            }
            WorkgroupCommand::Suspend(message) => {
                refuse_if(
                    t.status != Status::Open,
                    &format!(
                        "only an open ticket can be suspended (it is {})",
                        t.status.as_str()
                    ),
                )?;
                t.status = Status::Suspended;
                let extra = Extra {
                    message,
                    missing: String::new(),
                };
                self.workgroup_notice(desk, t, ReplyKind::InfoRequest, &extra);
                "suspended with an information request".to_string()
            }
            WorkgroupCommand::Resume => {
                refuse_if(
                    t.status != Status::Suspended,
                    &format!(
                        "only a suspended ticket can be resumed (it is {})",
                        t.status.as_str()
                    ),
                )?;
                t.status = Status::Open;
                self.workgroup_notice(desk, t, ReplyKind::Resumed, &Extra::default());
                "resumed".to_string()
            }
            WorkgroupCommand::Close => {
                refuse_if(t.status == Status::Closed, "the ticket is already closed")?;
                t.status = Status::Closed;
                self.workgroup_notice(desk, t, ReplyKind::Closed, &Extra::default());
                "closed".to_string()
            }
            WorkgroupCommand::Reopen => {
                refuse_if(
                    t.status != Status::Closed,
                    &format!(
                        "only a closed ticket can be reopened (it is {})",
                        t.status.as_str()
                    ),
                )?;
                t.status = Status::Open;
                self.workgroup_notice(desk, t, ReplyKind::Reopened, &Extra::default());
                "reopened".to_string()
            }
        };
        t.history.push(HistoryEntry {
            at: now,
            by: by.to_string(),
            event,
        });
        Ok(())
    }
}

#[derive(Debug, Clone)]
enum WorkgroupCommand {
    Take(String),
    Severity(String),
    Classify(Category),
    Suspend(String),
    Resume,
    Close,
    Reopen,
}

fn refuse_if(condition: bool, why: &str) -> Result<(), String> {
    if condition {
        Err(why.to_string())
    } else {
        Ok(())
    }
}

fn after_hours(hours: u64) -> String {
    let t = time::OffsetDateTime::now_utc() + Duration::from_secs(hours * 3600);
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// The sender as a requester: the From address, else the envelope sender.
pub fn sender_of(mail: &ParsedMail, envelope_from: &str) -> String {
    mail.from
        .as_deref()
        .filter(|f| f.contains('@'))
        .map(normalize_address)
        .unwrap_or_else(|| normalize_address(envelope_from))
}

/// The canonical addresses a ticket's mail went to: the requester and
/// every reply's recipient (a bound id is checked against these).
fn sent_to(t: &Ticket) -> Vec<String> {
    let mut out = vec![canonical_address(&t.requester)];
    for r in &t.replies {
        let to = canonical_address(&r.to);
        if !out.contains(&to) {
            out.push(to);
        }
    }
    out
}

/// What a follow-up brings to show that its sender is the requester.
#[derive(Debug, Clone, Default)]
pub struct Proof {
    /// The From address (canonical) when the header has one From field
    /// holding one address; several never authenticate.
    pub single_from: Option<String>,
    /// The envelope sender, canonical.
    pub envelope_from: String,
    pub dmarc_pass: bool,
    pub spf_fail: bool,
    /// The address that the signed id it answers was sent to.
    pub signed_for: Option<String>,
}

impl Proof {
    pub fn of(
        mail: &ParsedMail,
        envelope_from: &str,
        verdict: &AuthVerdict,
        followup: &Followup,
    ) -> Proof {
        let single = mail.shape.from_fields == 1 && mail.shape.from_addresses == 1;
        Proof {
            single_from: mail
                .from
                .as_deref()
                .filter(|_| single)
                .map(canonical_address),
            envelope_from: canonical_address(envelope_from),
            dmarc_pass: verdict.dmarc_pass,
            spf_fail: verdict.spf_fail,
            signed_for: followup.signed_for.clone(),
        }
    }
}

/// Who a follow-up's sender turned out to be, for this ticket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Standing {
    /// The requester, authenticated (DESIGN §5).
    Requester,
    /// Somebody else by its own From.
    Other,
    /// Says it is the requester and does not prove it; the detail says
    /// what is missing when there is more to say than "no proof".
    Unproven(Option<ReasonCode>),
}

/// DMARC pass for the requester's From, or a reply to a signed id that we
/// sent to the requester, with the envelope sender and the single From
/// both the requester's (SPF, when checked, not failing).
fn standing(t: &Ticket, p: &Proof) -> Standing {
    let requester = canonical_address(&t.requester);
    let Some(from) = &p.single_from else {
        return Standing::Unproven(Some(ReasonCode::AuthFromNotSingle));
    };
    if *from != requester {
        return Standing::Other;
    }
    if p.dmarc_pass {
        return Standing::Requester;
    }
    match &p.signed_for {
        None => Standing::Unproven(None),
        Some(to) if *to != requester => Standing::Unproven(Some(ReasonCode::AuthSignedForOther)),
        Some(_) if p.envelope_from != requester => {
            Standing::Unproven(Some(ReasonCode::AuthEnvelopeNotRequester))
        }
        Some(_) if p.spf_fail => Standing::Unproven(Some(ReasonCode::AuthSpfFail)),
        Some(_) => Standing::Requester,
    }
}

/// What a follow-up needs to decide, captured before the store write.
pub struct FollowupInput {
    pub desks: Arc<Helpdesks>,
    /// The helpdesk as configured when the message arrived.
    pub desk: HelpdeskConfig,
    pub class: Classification,
    pub sender: String,
    pub proof: Proof,
    pub out_of_office: bool,
    pub record: MessageRecord,
    pub suppressed: Option<ReasonCode>,
}

/// What a follow-up does to its ticket.
struct Decision {
    action: Action,
    /// The notice that tells the requester.
    notice: Option<ReplyKind>,
    reasons: Vec<ReasonCode>,
}

impl Decision {
    fn new(action: Action, notice: Option<ReplyKind>, reasons: &[ReasonCode]) -> Decision {
        Decision {
            action,
            notice,
            reasons: reasons.to_vec(),
        }
    }

    fn refused(code: ReasonCode, detail: Option<ReasonCode>) -> Decision {
        let mut d = Decision::new(Action::Refused, None, &[code]);
        d.reasons.extend(detail);
        d
    }
}

/// Appends a follow-up and applies what it asks for, if its sender may.
/// Notices go to the requester on file, whoever sent the follow-up.
pub fn apply_followup(t: &mut Ticket, input: FollowupInput) {
    let decision = decide_followup(t, &input);
    let mut record = input.record;
    record.action = decision.action;
    // The classifier saw the whole subject; what counts is the decision's.
    record
        .reasons
        .retain(|r| !matches!(r, ReasonCode::CommandClose | ReasonCode::CommandReopen));
    record.reasons.extend(decision.reasons.iter().copied());
    if decision.action == Action::Refused {
        tracing::warn!(ticket = %t.id, sender = %input.sender, reasons = ?decision.reasons, "change by mail refused");
    }
    match decision.action {
        Action::Closed => t.status = Status::Closed,
        Action::Reopened | Action::Resumed => t.status = Status::Open,
        _ => {}
    }
    if decision.action != Action::Appended {
        t.history.push(HistoryEntry {
            at: now_rfc3339(),
            by: input.sender.clone(),
            event: format!("{} by mail", decision.action.as_str()),
        });
    }
    match (decision.notice, input.suppressed) {
        (Some(kind), None) => {
            let to = t.requester.clone();
            input
                .desks
                .auto_reply(&input.desk, t, kind, &to, Some(&record), &Extra::default());
        }
        (Some(_), Some(why)) => record.reasons.push(why),
        (None, _) => {}
    }
    t.messages.push(record);
}

fn decide_followup(t: &Ticket, i: &FollowupInput) -> Decision {
    if i.out_of_office {
        return Decision::new(Action::Appended, None, &[ReasonCode::AutoReplyOutOfOffice]);
    }
    let standing = standing(t, &i.proof);
    let ours = our_subjects(t);
    if let Some(cmd) = classify::mail_command(&i.desk, &i.record.subject, &ours) {
        let (allowed_now, action, kind, code) = match cmd {
            MailCommand::Close => (
                t.status != Status::Closed,
                Action::Closed,
                ReplyKind::Closed,
                ReasonCode::CommandClose,
            ),
            MailCommand::Reopen => (
                t.status == Status::Closed,
                Action::Reopened,
                ReplyKind::Reopened,
                ReasonCode::CommandReopen,
            ),
        };
        return match standing {
            Standing::Other => Decision::refused(ReasonCode::CommandNotRequester, None),
            Standing::Unproven(detail) => {
                Decision::refused(ReasonCode::CommandNotAuthenticated, detail)
            }
            Standing::Requester if !allowed_now => {
                Decision::refused(ReasonCode::CommandIllegalTransition, None)
            }
            Standing::Requester => Decision::new(action, Some(kind), &[code]),
        };
    }
    if t.status == Status::Suspended {
        return match standing {
            Standing::Requester => Decision::new(
                Action::Resumed,
                Some(ReplyKind::Resumed),
                &[ReasonCode::ResumeOnReply],
            ),
            Standing::Other => Decision::refused(ReasonCode::ResumeNotRequester, None),
            Standing::Unproven(detail) => {
                Decision::refused(ReasonCode::ResumeNotAuthenticated, detail)
            }
        };
    }
    Decision::new(Action::Appended, None, &[])
}

/// The subjects of our replies on the ticket, as sent: a requester
/// answering one quotes it, and its words are ours, not the requester's.
fn our_subjects(t: &Ticket) -> Vec<String> {
    let mut subjects: Vec<String> = Vec::new();
    for r in &t.replies {
        let head = r.raw.split("\r\n\r\n").next().unwrap_or("");
        let subject = crate::parse::parse(format!("{head}\r\n\r\n").as_bytes()).subject;
        if !subject.is_empty() && !subjects.contains(&subject) {
            subjects.push(subject);
        }
    }
    subjects
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ticket::Urgency;

    const MARIO: &str = "mario@cliente.example";

    fn ticket() -> Ticket {
        Ticket {
            id: "PP-2026-000001".into(),
            helpdesk: "Project++".into(),
            queue: "nuovocaso".into(),
            procedure: None,
            sector: None,
            urgency: Urgency::Normale,
            contract: None,
            status: Status::Suspended,
            severity: None,
            category: None,
            requester: MARIO.into(),
            subject: "Aiuto".into(),
            created_at: String::new(),
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

    /// The requester answering our mail from its own envelope and From.
    fn signed_reply() -> Proof {
        Proof {
            single_from: Some(MARIO.into()),
            envelope_from: MARIO.into(),
            dmarc_pass: false,
            spf_fail: false,
            signed_for: Some(MARIO.into()),
        }
    }

    #[test]
    fn only_the_authenticated_requester_stands_as_requester() {
        let t = ticket();
        let u = |r| Standing::Unproven(Some(r));
        let cases: Vec<(Proof, Standing)> = vec![
            (signed_reply(), Standing::Requester),
            (
                Proof {
                    signed_for: None,
                    dmarc_pass: true,
                    envelope_from: "bounce@mailer.example".into(),
                    ..signed_reply()
                },
                Standing::Requester,
            ),
            (
                Proof {
                    signed_for: None,
                    ..signed_reply()
                },
                Standing::Unproven(None),
            ),
            (
                Proof {
                    envelope_from: "x9@vps.example".into(),
                    ..signed_reply()
                },
                u(ReasonCode::AuthEnvelopeNotRequester),
            ),
            (
                Proof {
                    signed_for: Some("x9@vps.example".into()),
                    ..signed_reply()
                },
                u(ReasonCode::AuthSignedForOther),
            ),
            (
                Proof {
                    spf_fail: true,
                    ..signed_reply()
                },
                u(ReasonCode::AuthSpfFail),
            ),
            (
                Proof {
                    single_from: None,
                    dmarc_pass: true,
                    ..signed_reply()
                },
                u(ReasonCode::AuthFromNotSingle),
            ),
            (
                Proof {
                    single_from: Some("x9@vps.example".into()),
                    dmarc_pass: true,
                    ..signed_reply()
                },
                Standing::Other,
            ),
        ];
        for (proof, want) in cases {
            assert_eq!(standing(&t, &proof), want, "{proof:?}");
        }
    }

    #[test]
    fn proof_reads_single_from_and_canonical_addresses() {
        let followup = Followup {
            ticket_id: "PP-2026-000001".into(),
            via: ReasonCode::FollowupInReplyTo,
            signed_for: Some(MARIO.into()),
            ticket_exists: true,
        };
        let verdict = AuthVerdict::default();
        let mail = |raw: &str| crate::parse::parse(raw.as_bytes());
        let one = mail("From: Mario <Mario@Cliente.Example>\r\nSubject: x\r\n\r\nx\r\n");
        let p = Proof::of(
            &one,
            "prvs=1234abcdef=mario@cliente.example",
            &verdict,
            &followup,
        );
        assert_eq!(p.single_from.as_deref(), Some(MARIO));
        assert_eq!(p.envelope_from, MARIO);
        for raw in [
            "From: mario@cliente.example\r\nFrom: x9@vps.example\r\n\r\nx\r\n",
            "From: mario@cliente.example, x9@vps.example\r\n\r\nx\r\n",
            "From: team: mario@cliente.example, x9@vps.example;\r\n\r\nx\r\n",
            "Subject: no from\r\n\r\nx\r\n",
        ] {
            let p = Proof::of(&mail(raw), MARIO, &verdict, &followup);
            assert_eq!(p.single_from, None, "{raw:?}");
        }
    }
}
