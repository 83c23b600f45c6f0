//! The outbox's two operations on a queued reply, as data: claim it for
//! one attempt (counted, and its next attempt set, before it is sent) and
//! record how the attempt ended. A reply that is no longer queued (settled
//! by the sweep or an earlier attempt) is left as it is by both.
//!
//! Here they are read-change-write cycles of [`TicketStore::modify`]; a
//! backend shared by several hosts gives them their own statements (a
//! claim must then be one host's alone).

use std::time::Duration;

use super::{StoreError, TicketStore};
use crate::reason::ReasonCode;
use crate::ticket::{ReplyRecord, ReplyState, Status, Ticket, Timestamp};

/// One reply of one ticket.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ReplyKey {
    pub ticket: String,
    pub message_id: String,
}

/// Claims a queued reply for one attempt.
#[derive(Debug, Clone, Copy)]
pub struct Claim {
    /// A reply that has had this many attempts fails instead.
    pub max_attempts: u32,
    /// The attempt is this claim's until the next one is due, after the
    /// backoff for its count: a crash after sending retries then, not at
    /// once.
    pub backoff: Backoff,
}

/// Exponential backoff between attempts, in whole seconds.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub initial_secs: u64,
    pub max_secs: u64,
}

impl Backoff {
    /// The wait after the `attempts`-th attempt: initial, doubled for each
    /// attempt after the first, at most max, at least a second.
    pub fn after(self, attempts: u32) -> Duration {
        let secs = self
            .initial_secs
            .saturating_mul(1u64 << attempts.saturating_sub(1).min(20))
            .min(self.max_secs)
            .max(1);
        Duration::from_secs(secs)
    }
}

/// How an attempt ended.
#[derive(Debug, Clone, Copy)]
pub struct Finish {
    /// `Queued` for a retry; it keeps the next attempt the claim set.
    pub state: ReplyState,
    pub reason: Option<ReasonCode>,
    /// A retry of a reply that has had this many attempts fails.
    pub max_attempts: u32,
}

impl TicketStore {
    /// Claims the reply: one of a void ticket is cancelled, one past its
    /// attempts fails, any other queued one is counted and leased. Returns
    /// the ticket as written; the reply is to be sent if it is still
    /// queued there.
    pub async fn claim_reply(&self, key: &ReplyKey, claim: Claim) -> Result<Ticket, StoreError> {
        self.update_queued(key, |status, r| {
            if status == Status::Void {
                r.state = ReplyState::Cancelled;
                r.reason = Some(ReasonCode::ReplyCancelledVoid);
            } else if r.attempts >= claim.max_attempts {
                r.state = ReplyState::Failed;
                r.reason = Some(ReasonCode::ReplyFailedAttempts);
            } else {
                r.attempts += 1;
                r.next_attempt_at = Some(Timestamp::now() + claim.backoff.after(r.attempts));
            }
        })
        .await
    }

    /// Records how the claimed attempt ended; returns the ticket as
    /// written.
    pub async fn finish_reply(&self, key: &ReplyKey, finish: Finish) -> Result<Ticket, StoreError> {
        self.update_queued(key, |_, r| {
            r.state = finish.state;
            r.reason = finish.reason;
            if finish.state != ReplyState::Queued {
                r.next_attempt_at = None;
            } else if r.attempts >= finish.max_attempts {
                r.state = ReplyState::Failed;
                r.reason = Some(ReasonCode::ReplyFailedAttempts);
                r.next_attempt_at = None;
            }
        })
        .await
    }

    /// Runs `change` (given the ticket's status) on the reply if it is
    /// still queued. A reply no longer on the ticket is `Rejected`.
    async fn update_queued(
        &self,
        key: &ReplyKey,
        mut change: impl FnMut(Status, &mut ReplyRecord),
    ) -> Result<Ticket, StoreError> {
        let outcome = self
            .modify(&key.ticket, None, |t| {
                let status = t.status;
                let r = t
                    .replies
                    .iter_mut()
                    .find(|r| r.message_id == key.message_id)
                    .ok_or("reply vanished")?;
                if r.state == ReplyState::Queued {
                    change(status, r);
                }
                Ok(())
            })
            .await?;
        Ok(outcome.into_ticket())
    }
}
