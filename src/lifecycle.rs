//! The ticket lifecycle: what a follow-up message does to a ticket, what
//! the workgroup's commands do, and the state they share (`Helpdesks`).
//! Transitions are plain functions on `&mut Ticket`, run inside the store's
//! writer so that each change is one atomic, durable write.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use crate::auth::Authenticator;
use crate::classify::{Classification, MailCommand};
use crate::config::{Config, HelpdeskConfig};
use crate::control::{Op, Request, Response};
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
    /// It answers one of our signed Message-IDs.
    pub signed: bool,
    pub ticket_exists: bool,
}

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

    /// Why no automatic reply may go out (RFC 3834). A reply goes to the
    /// From or the envelope sender, both of which this already checks
    /// against our own addresses.
    pub fn reply_suppression(&self, mail: &ParsedMail, envelope_from: &str) -> Option<ReasonCode> {
        let loaded = self.loaded();
        suppress::suppression(mail, envelope_from, |a| loaded.table.is_own_address(a))
    }

    /// The ticket this message refers to: a reply to one of our mails
    /// (signed Message-ID), or a ticket id of this helpdesk in the subject.
    pub fn find_followup(
        &self,
        desk: &HelpdeskConfig,
        mail: &ParsedMail,
        class: &Classification,
    ) -> Option<Followup> {
        let ours = |id: &String| {
            self.signer
                .verify(id)
                .filter(|t| t.starts_with(&format!("{}-", desk.ticket_prefix)))
        };
        let signed = mail
            .in_reply_to
            .iter()
            .find_map(ours)
            .map(|t| (t, ReasonCode::FollowupInReplyTo))
            .or_else(|| {
                mail.references
                    .iter()
                    .rev()
                    .find_map(ours)
                    .map(|t| (t, ReasonCode::FollowupReferences))
            });
        if let Some((ticket_id, via)) = signed {
            let exists = self.ticket_exists(&ticket_id);
            return Some(Followup {
                ticket_id,
                via,
                signed: true,
                ticket_exists: exists,
            });
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
            signed: false,
            ticket_exists: exists,
        })
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
        let message_id = self.signer.message_id(&t.id);
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

/// What a follow-up needs to decide, captured before the store write.
pub struct FollowupInput {
    pub desks: Arc<Helpdesks>,
    /// The helpdesk as configured when the message arrived.
    pub desk: HelpdeskConfig,
    pub class: Classification,
    pub sender: String,
    pub authenticated: bool,
    pub out_of_office: bool,
    pub record: MessageRecord,
    pub reply_to: String,
    pub suppressed: Option<ReasonCode>,
}

/// Appends a follow-up and applies what it asks for, if its sender may.
pub fn apply_followup(t: &mut Ticket, input: FollowupInput) {
    let (action, reply, reason) = decide_followup(t, &input);
    let mut record = input.record;
    record.action = action;
    record.reasons.extend(reason);
    if let Some(r) = reason
        && action == Action::Refused
    {
        tracing::warn!(ticket = %t.id, sender = %input.sender, reason = %r, "mail command refused");
    }
    match action {
        Action::Closed => t.status = Status::Closed,
        Action::Reopened | Action::Resumed => t.status = Status::Open,
        _ => {}
    }
    if action != Action::Appended {
        t.history.push(HistoryEntry {
            at: now_rfc3339(),
            by: input.sender.clone(),
            event: format!("{} by mail", action.as_str()),
        });
    }
    if let (Some(kind), None) = (reply, input.suppressed) {
        input.desks.auto_reply(
            &input.desk,
            t,
            kind,
            &input.reply_to,
            Some(&record),
            &Extra::default(),
        );
    }
    t.messages.push(record);
}

fn decide_followup(
    t: &Ticket,
    i: &FollowupInput,
) -> (Action, Option<ReplyKind>, Option<ReasonCode>) {
    let is_requester = i.sender.eq_ignore_ascii_case(&t.requester);
    if i.out_of_office {
        return (
            Action::Appended,
            None,
            Some(ReasonCode::AutoReplyOutOfOffice),
        );
    }
    if let Some(cmd) = i.class.command {
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
        if !is_requester {
            return (Action::Refused, None, Some(ReasonCode::CommandNotRequester));
        }
        if !i.authenticated {
            return (
                Action::Refused,
                None,
                Some(ReasonCode::CommandNotAuthenticated),
            );
        }
        if !allowed_now {
            return (
                Action::Refused,
                None,
                Some(ReasonCode::CommandIllegalTransition),
            );
        }
        return (action, Some(kind), Some(code));
    }
    if t.status == Status::Suspended && is_requester {
        return (
            Action::Resumed,
            Some(ReplyKind::Resumed),
            Some(ReasonCode::ResumeOnReply),
        );
    }
    (Action::Appended, None, None)
}
