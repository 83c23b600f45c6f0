//! How the next hop's answer to a message settles its ticket and the
//! replies written with it, and how the sweep settles what a crash or a
//! missing retry left. Plain functions on `&mut Ticket`, run inside the
//! store's writer, so each settlement is one atomic, durable write.
//!
//! Every reply ends `sent`, `cancelled` (with a reason) or `failed`:
//! * accepted: the message is marked delivered, its held replies are
//!   released through the rate limit, a void ticket comes back to life;
//! * refused (4xx or 5xx): its held replies are cancelled (a retry that
//!   is accepted releases them again); after a 5xx a ticket none of whose
//!   messages was delivered becomes void;
//! * no 250 within the horizon (a 4xx and no retry, or a crash): the sweep
//!   cancels what is still held and voids the ticket. A late retry that
//!   is accepted still revives it.

use std::time::Duration;

use super::limit::{RateLimiter, Slots};
use crate::reason::ReasonCode;
use crate::store::{Outcome, StoreError, TicketStore};
use crate::ticket::{
    Event, HistoryEntry, Refusal, ReplyRecord, ReplyState, Status, Ticket, Timestamp, VoidRecord,
};

/// What the next hop (or, in milter mode, our own verdict) said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HopVerdict {
    Accepted,
    Temporary(u16),
    Permanent(u16),
}

impl HopVerdict {
    pub fn of(code: u16) -> HopVerdict {
        match code {
            200..=299 => HopVerdict::Accepted,
            500..=599 => HopVerdict::Permanent(code),
            // Anything else (4xx, or a reply that makes no sense) may be
            // followed by a retry.
            _ => HopVerdict::Temporary(code),
        }
    }
}

/// The next hop answered the message whose identity is `identity`.
pub fn settle_delivery(
    t: &mut Ticket,
    identity: &str,
    verdict: HopVerdict,
    slots: &Slots<'_>,
    now: Timestamp,
) {
    let Some(index) = t
        .messages
        .iter()
        .position(|m| m.identity.as_deref() == Some(identity))
    else {
        return;
    };
    match verdict {
        HopVerdict::Accepted => {
            let m = &mut t.messages[index];
            m.delivered = true;
            m.refused = None;
            revive(t, now);
            release_replies(t, index, slots);
        }
        HopVerdict::Temporary(code) | HopVerdict::Permanent(code) => {
            t.messages[index].refused = Some(Refusal { code, at: now });
            if t.messages[index].delivered {
                return;
            }
            cancel_held(t, |_| true, Some(index), ReasonCode::ReplyCancelledRefused);
            // After a 4xx a retry may still come: the sweep voids the
            // ticket if none is accepted within the horizon.
            if matches!(verdict, HopVerdict::Permanent(_)) && nothing_delivered(t) {
                void(t, ReasonCode::TicketVoidRefused, now);
            }
        }
    }
}

/// Records the next hop's answer to a message on its ticket, durably; the
/// replies it releases take their slots of the rate limit only if the
/// change is written.
pub async fn record_answer(
    store: &TicketStore,
    limiter: &RateLimiter,
    ticket: &str,
    identity: &str,
    verdict: HopVerdict,
) -> Result<Outcome, StoreError> {
    let slots = limiter.slots();
    let outcome = store
        .modify(ticket, None, |t| {
            slots.give_back();
            settle_delivery(t, identity, verdict, &slots, Timestamp::now());
            Ok(())
        })
        .await?;
    slots.keep();
    Ok(outcome)
}

/// Settles what a crash or a missing retry left: a held reply of a
/// delivered message is released; one whose message got no 250 within the
/// horizon is cancelled, and a ticket none of whose messages was delivered
/// in that time becomes void. Returns whether anything changed.
pub fn settle_leftovers(
    t: &mut Ticket,
    slots: &Slots<'_>,
    now: Timestamp,
    horizon: Duration,
) -> bool {
    let before = (t.status, t.replies.clone());
    for index in 0..t.messages.len() {
        if t.messages[index].delivered {
            release_replies(t, index, slots);
        }
    }
    let expired = |m: &crate::ticket::MessageRecord| m.received_at + horizon <= now;
    let overdue: Vec<bool> = t
        .messages
        .iter()
        .map(|m| !m.delivered && expired(m))
        .collect();
    cancel_held(
        t,
        |i| i.is_none_or(|i| overdue[i]),
        None,
        ReasonCode::ReplyCancelledUndelivered,
    );
    if !t.messages.is_empty() && nothing_delivered(t) && t.messages.iter().all(expired) {
        void(t, ReasonCode::TicketVoidUndelivered, now);
    }
    (t.status, &t.replies) != (before.0, &before.1)
}

/// When the sweep should look at this ticket again: now for a held reply
/// whose message was delivered, else the horizon of the messages it waits
/// for. `None`: nothing is left to settle.
pub fn next_check(t: &Ticket, horizon: Duration) -> Option<Timestamp> {
    let now = Timestamp::now();
    let held = t
        .replies
        .iter()
        .filter(|r| r.state == ReplyState::Held)
        .map(|r| match answered_record(t, r).map(|i| &t.messages[i]) {
            Some(m) if !m.delivered => m.received_at + horizon,
            _ => now,
        });
    // Void once every message is past the horizon undelivered.
    let void_at = (t.status != Status::Void && nothing_delivered(t))
        .then(|| t.messages.iter().map(|m| m.received_at + horizon).max())
        .flatten();
    held.chain(void_at).min()
}

/// Whether a workgroup notice may go to this ticket's requester: not when
/// the mail that opened it must not be answered (RFC 3834), the same rule
/// as for its confirmation.
pub fn notice_suppression(t: &Ticket) -> Option<ReasonCode> {
    t.reasons.iter().copied().find(|r| {
        r.as_str().starts_with("reply.suppressed_") && *r != ReasonCode::ReplySuppressedRateLimit
    })
}

/// The message record whose delivery releases this reply: the one it
/// answers; for replies written before replies named it, the one with its
/// In-Reply-To as Message-ID, else the first.
pub fn answered_record(t: &Ticket, r: &ReplyRecord) -> Option<usize> {
    if let Some(identity) = &r.answers {
        return t
            .messages
            .iter()
            .position(|m| m.identity.as_ref() == Some(identity));
    }
    if let Some(parent) = &r.in_reply_to {
        let found = t
            .messages
            .iter()
            .position(|m| m.message_id.as_ref() == Some(parent));
        if found.is_some() {
            return found;
        }
    }
    (!t.messages.is_empty()).then_some(0)
}

/// Cancelled for a reason that a later delivery undoes.
fn revivable(r: &ReplyRecord) -> bool {
    r.state == ReplyState::Cancelled
        && matches!(
            r.reason,
            None | Some(
                ReasonCode::ReplyCancelledRefused
                    | ReasonCode::ReplyCancelledUndelivered
                    | ReasonCode::ReplyCancelledVoid
            )
        )
}

/// Releases the replies waiting for message `index`, each taking a slot of
/// its recipient's budget; past the budget it is cancelled instead.
fn release_replies(t: &mut Ticket, index: usize, slots: &Slots<'_>) {
    let waiting: Vec<usize> = (0..t.replies.len())
        .filter(|&i| {
            let r = &t.replies[i];
            (r.state == ReplyState::Held || revivable(r)) && answered_record(t, r) == Some(index)
        })
        .collect();
    for i in waiting {
        let r = &mut t.replies[i];
        if slots.allow(&r.to) {
            r.state = ReplyState::Queued;
            r.reason = None;
        } else {
            r.state = ReplyState::Cancelled;
            r.reason = Some(ReasonCode::ReplySuppressedRateLimit);
            if !t.reasons.contains(&ReasonCode::ReplySuppressedRateLimit) {
                t.reasons.push(ReasonCode::ReplySuppressedRateLimit);
            }
        }
    }
}

/// Cancels the held replies whose answered record (by index) `pick` selects.
fn cancel_held(
    t: &mut Ticket,
    pick: impl Fn(Option<usize>) -> bool,
    only: Option<usize>,
    reason: ReasonCode,
) {
    let chosen: Vec<usize> = (0..t.replies.len())
        .filter(|&i| {
            let r = &t.replies[i];
            let record = answered_record(t, r);
            r.state == ReplyState::Held && only.is_none_or(|o| record == Some(o)) && pick(record)
        })
        .collect();
    for i in chosen {
        t.replies[i].state = ReplyState::Cancelled;
        t.replies[i].reason = Some(reason);
    }
}

fn nothing_delivered(t: &Ticket) -> bool {
    t.messages.iter().all(|m| !m.delivered)
}

/// The ticket stops being a case; nothing is sent for it.
fn void(t: &mut Ticket, reason: ReasonCode, now: Timestamp) {
    if t.status == Status::Void {
        return;
    }
    cancel_held(t, |_| true, None, ReasonCode::ReplyCancelledVoid);
    t.void = Some(VoidRecord {
        reason,
        at: now,
        previous: t.status,
    });
    t.status = Status::Void;
    push_event(t, now, Event::Void(reason));
}

/// A void ticket whose message was accepted after all.
fn revive(t: &mut Ticket, now: Timestamp) {
    let Some(v) = t.void.take() else {
        return;
    };
    t.status = v.previous;
    if !t.reasons.contains(&ReasonCode::TicketRevived) {
        t.reasons.push(ReasonCode::TicketRevived);
    }
    push_event(t, now, Event::Revived(v.reason));
}

fn push_event(t: &mut Ticket, now: Timestamp, event: Event) {
    t.history.push(HistoryEntry {
        at: now,
        by: "ticketgate".into(),
        event,
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ticket::{Action, MessageRecord, ReplyKind};

    const HOUR: Duration = Duration::from_secs(3600);

    fn at(text: &str) -> Timestamp {
        Timestamp::parse(text).unwrap()
    }

    fn ticket() -> Ticket {
        Ticket {
            messages: vec![MessageRecord {
                message_id: None,
                from: "op@caf.example".into(),
                subject: "s".into(),
                received_at: at("2026-12-01T10:00:00Z"),
                attachments: vec![],
                action: Action::Created,
                recipients: vec![],
                reasons: vec![],
                raw_sha256: None,
                delivered: false,
                identity: Some("m1".into()),
                refused: None,
            }],
            replies: vec![ReplyRecord {
                kind: ReplyKind::Created,
                to: "op@caf.example".into(),
                message_id: "r1@gate".into(),
                state: ReplyState::Held,
                attempts: 0,
                next_attempt_at: None,
                raw: String::new(),
                in_reply_to: None,
                answers: Some("m1".into()),
                reason: None,
            }],
            ..Ticket::sample("op@caf.example")
        }
    }

    #[test]
    fn a_refusal_cancels_and_an_accepted_retry_releases() {
        let limiter = RateLimiter::new(10);
        let limiter = limiter.slots();
        let now = at("2026-12-01T10:00:01Z");
        let mut t = ticket();
        settle_delivery(&mut t, "m1", HopVerdict::of(451), &limiter, now);
        assert_eq!(t.replies[0].state, ReplyState::Cancelled);
        assert_eq!(t.status, Status::Open, "a 4xx may be retried");
        settle_delivery(&mut t, "other", HopVerdict::Accepted, &limiter, now);
        assert_eq!(t.replies[0].state, ReplyState::Cancelled, "not its message");
        settle_delivery(&mut t, "m1", HopVerdict::Accepted, &limiter, now);
        assert_eq!(t.replies[0].state, ReplyState::Queued);
        assert!(t.messages[0].delivered && t.messages[0].refused.is_none());
    }

    #[test]
    fn a_5xx_voids_and_an_accepted_retry_revives() {
        let limiter = RateLimiter::new(10);
        let limiter = limiter.slots();
        let now = at("2026-12-01T10:00:01Z");
        let mut t = ticket();
        t.status = Status::Suspended;
        settle_delivery(&mut t, "m1", HopVerdict::of(550), &limiter, now);
        assert_eq!(t.status, Status::Void);
        assert_eq!(
            t.void.as_ref().unwrap().reason,
            ReasonCode::TicketVoidRefused
        );
        assert_eq!(next_check(&t, HOUR), None, "nothing left to settle");
        settle_delivery(&mut t, "m1", HopVerdict::Accepted, &limiter, now);
        assert_eq!(t.status, Status::Suspended);
        assert!(t.void.is_none());
        assert_eq!(t.replies[0].state, ReplyState::Queued);
    }

    #[test]
    fn leftovers_are_settled_at_the_horizon_and_not_before() {
        let limiter = RateLimiter::new(10);
        let limiter = limiter.slots();
        let mut t = ticket();
        let young = at("2026-12-01T10:30:00Z");
        assert!(!settle_leftovers(&mut t, &limiter, young, HOUR));
        assert_eq!(next_check(&t, HOUR), Some(at("2026-12-01T11:00:00Z")));
        let late = at("2026-12-01T11:00:00Z");
        assert!(settle_leftovers(&mut t, &limiter, late, HOUR));
        assert_eq!(
            t.replies[0].reason,
            Some(ReasonCode::ReplyCancelledUndelivered)
        );
        assert_eq!(
            t.void.as_ref().unwrap().reason,
            ReasonCode::TicketVoidUndelivered
        );
    }

    #[test]
    fn a_held_reply_of_a_delivered_message_is_released_within_the_budget() {
        let limiter = RateLimiter::new(1);
        let limiter = limiter.slots();
        let now = at("2026-12-01T10:00:01Z");
        let mut first = ticket();
        first.messages[0].delivered = true;
        let mut second = first.clone();
        assert!(next_check(&first, HOUR).is_some());
        assert!(settle_leftovers(&mut first, &limiter, now, HOUR));
        assert_eq!(first.replies[0].state, ReplyState::Queued);
        assert!(settle_leftovers(&mut second, &limiter, now, HOUR));
        assert_eq!(second.replies[0].state, ReplyState::Cancelled);
        assert_eq!(
            second.replies[0].reason,
            Some(ReasonCode::ReplySuppressedRateLimit)
        );
        assert_eq!(next_check(&second, HOUR), None);
    }

    #[test]
    fn notices_follow_the_confirmation_rule() {
        let mut t = ticket();
        assert_eq!(notice_suppression(&t), None);
        t.reasons.push(ReasonCode::ReplySuppressedRateLimit);
        assert_eq!(notice_suppression(&t), None, "a budget is not a robot");
        t.reasons.push(ReasonCode::ReplySuppressedAutoSubmitted);
        assert_eq!(
            notice_suppression(&t),
            Some(ReasonCode::ReplySuppressedAutoSubmitted)
        );
    }
}
