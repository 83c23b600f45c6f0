//! The state transitions of a ticket: what a follow-up does to it and what
//! the workgroup's commands do. Plain functions on `&mut Ticket` that
//! return the replies they want ([`Wanted`]); the caller drafts them and
//! the store writes ticket and replies in one atomic, durable write.

use std::time::Duration;

use super::replies::Wanted;
use crate::auth::AuthVerdict;
use crate::classify::{self, Classification, MailCommand};
use crate::config::HelpdeskConfig;
use crate::envelope::canonical_address;
use crate::outbox::render::Extra;
use crate::outbox::settle::notice_suppression;
use crate::parse::ParsedMail;
use crate::reason::ReasonCode;
use crate::route::normalize_address;
use crate::ticket::{
    Action, Category, Event, HistoryEntry, MessageRecord, ReplyKind, Status, Ticket, Timestamp,
};

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

/// What a workgroup member asks of a ticket (control socket).
#[derive(Debug, Clone)]
pub enum WorkgroupCommand {
    Take(String),
    Severity(String),
    Classify(Category),
    Suspend(String),
    Resume,
    Close,
    Reopen,
}

/// Why a command was refused, as the workgroup is told.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Refused(pub String);

/// Applies a workgroup member's command; returns the notice it sends to
/// the requester, if any. A refused command changes nothing.
pub fn apply_command(
    desk: &HelpdeskConfig,
    t: &mut Ticket,
    by: &str,
    command: WorkgroupCommand,
) -> Result<Option<Wanted>, Refused> {
    // Its mail never reached the helpdesk: not a case to work on.
    refuse_if(
        t.status == Status::Void,
        "the ticket is void (its mail was never delivered)",
    )?;
    let now = Timestamp::now();
    let (event, notice) = match command {
        WorkgroupCommand::Take(name) => (take(t, name)?, None),
        WorkgroupCommand::Severity(level) => (set_severity(desk, t, &level)?, None),
        WorkgroupCommand::Classify(category) => (classify_as(t, category), None),
        WorkgroupCommand::Suspend(message) => suspend(t, message)?,
        WorkgroupCommand::Resume => {
            refuse_unless(
                t,
                Status::Suspended,
                "only a suspended ticket can be resumed",
            )?;
            t.status = Status::Open;
            (
                Event::Resumed,
                notice(t, ReplyKind::Resumed, Extra::default()),
            )
        }
        WorkgroupCommand::Close => {
            refuse_if(t.status == Status::Closed, "the ticket is already closed")?;
            t.status = Status::Closed;
            (
                Event::Closed,
                notice(t, ReplyKind::Closed, Extra::default()),
            )
        }
        WorkgroupCommand::Reopen => {
            refuse_unless(t, Status::Closed, "only a closed ticket can be reopened")?;
            t.status = Status::Open;
            (
                Event::Reopened,
                notice(t, ReplyKind::Reopened, Extra::default()),
            )
        }
    };
    t.history.push(HistoryEntry {
        at: now,
        by: by.to_string(),
        event,
    });
    Ok(notice)
}

/// Suspends an open ticket and asks the requester for what is missing.
fn suspend(t: &mut Ticket, message: String) -> Result<(Event, Option<Wanted>), Refused> {
    refuse_unless(t, Status::Open, "only an open ticket can be suspended")?;
    t.status = Status::Suspended;
    let extra = Extra {
        message,
        missing: String::new(),
    };
    Ok((Event::Suspended, notice(t, ReplyKind::InfoRequest, extra)))
}

fn take(t: &mut Ticket, name: String) -> Result<Event, Refused> {
    refuse_if(
        t.status == Status::Closed,
        "a closed ticket cannot be taken; reopen it first",
    )?;
    t.assignee = Some(name.clone());
    Ok(Event::Taken { by: name })
}

fn set_severity(desk: &HelpdeskConfig, t: &mut Ticket, level: &str) -> Result<Event, Refused> {
    let sev = desk
        .severities
        .iter()
        .find(|s| s.level.eq_ignore_ascii_case(level))
        .ok_or_else(|| {
            let known: Vec<&str> = desk.severities.iter().map(|s| s.level.as_str()).collect();
            Refused(format!(
                "unknown severity {level} for {}; levels: {}",
                desk.name,
                known.join(", ")
            ))
        })?;
    t.severity = Some(sev.level.clone());
    t.due_at = Some(after_hours(sev.resolution_hours));
    Ok(Event::Severity {
        level: sev.level.clone(),
        resolution_hours: sev.resolution_hours,
    })
}

fn classify_as(t: &mut Ticket, category: Category) -> Event {
    t.category = Some(category);
    Event::Classified(category)
}

/// The notice a command sends the requester; none to a ticket opened by
/// mail that must not be answered (RFC 3834), which the ticket then says.
fn notice(t: &mut Ticket, kind: ReplyKind, extra: Extra) -> Option<Wanted> {
    if let Some(why) = notice_suppression(t) {
        tracing::info!(ticket = %t.id, reason = %why, "workgroup notice not sent");
        if !t.reasons.contains(&ReasonCode::NoticeSuppressed) {
            t.reasons.push(ReasonCode::NoticeSuppressed);
        }
        return None;
    }
    Some(Wanted::notice(kind, t, extra))
}

fn refuse_if(condition: bool, why: &str) -> Result<(), Refused> {
    if condition {
        Err(Refused(why.to_string()))
    } else {
        Ok(())
    }
}

/// Refuses unless the ticket is `status`; the refusal says what it is.
fn refuse_unless(t: &Ticket, status: Status, why: &str) -> Result<(), Refused> {
    refuse_if(
        t.status != status,
        &format!("{why} (it is {})", t.status.as_str()),
    )
}

fn after_hours(hours: u64) -> Timestamp {
    Timestamp::now() + Duration::from_secs(hours.saturating_mul(3600))
}

/// The sender as a requester: the From address, else the envelope sender.
pub fn sender_of(mail: &ParsedMail, envelope_from: &str) -> String {
    mail.from
        .as_deref()
        .filter(|f| f.contains('@'))
        .map(normalize_address)
        .unwrap_or_else(|| normalize_address(envelope_from))
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
#[derive(Clone)]
pub struct FollowupInput {
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

/// Appends a follow-up and applies what it asks for, if its sender may;
/// returns the notice that tells the requester, if one is due. Notices go
/// to the requester on file, whoever sent the follow-up.
pub fn apply_followup(t: &mut Ticket, input: FollowupInput) -> Option<Wanted> {
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
            at: Timestamp::now(),
            by: input.sender.clone(),
            event: Event::ByMail(decision.action),
        });
    }
    let notice = match (decision.notice, input.suppressed) {
        (Some(kind), None) => Some(Wanted::answer(
            kind,
            &t.requester,
            &record,
            Extra::default(),
        )),
        (Some(_), Some(why)) => {
            record.reasons.push(why);
            None
        }
        (None, _) => None,
    };
    t.messages.push(record);
    notice
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

    const MARIO: &str = "mario@cliente.example";

    fn ticket() -> Ticket {
        Ticket {
            status: Status::Suspended,
            subject: "Aiuto".into(),
            ..Ticket::sample(MARIO)
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
