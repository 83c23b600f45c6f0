//! The outbox: automatic replies are written with the ticket (state
//! `held`), released (`queued`) once the next hop accepted the original,
//! and delivered here to the reply relay with mail-send. State lives in the
//! store, so retries survive a restart.
//!
//! Each attempt is recorded before it is made (record, then send): an
//! attempt that cannot be recorded is not made, so the attempts are
//! bounded whatever the store does, and a crash between the relay's 250
//! and the record of `sent` sends the reply again later, with the same
//! Message-ID (at least once).
//!
//! The outbox also keeps the reply rate limit ([`limit`]) and the sweep
//! ([`sweep`]) that settles, at start and then periodically, what a crash
//! or a missing retry left held.

pub mod compose;
pub mod limit;
pub mod msgid;
pub mod render;
pub mod settle;
mod sweep;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mail_send::SmtpClientBuilder;
use mail_send::smtp::message::Message;
use tokio::sync::Notify;

use crate::config::OutboxConfig;
use crate::metrics::METRICS;
use crate::reason::ReasonCode;
use crate::store::TicketStore;
use crate::ticket::{ReplyRecord, ReplyState, Status, Ticket, Timestamp, now_rfc3339};
use limit::RateLimiter;

/// A reply to deliver: the ticket and the reply's Message-ID.
type Key = (String, String);

#[derive(Clone)]
pub struct Outbox {
    inner: Arc<Inner>,
}

struct Inner {
    store: TicketStore,
    relay: Option<SocketAddr>,
    /// Built once: mail-send's builder loads the system's CA certificates
    /// for a TLS connector we never use (the relay is plain SMTP on the
    /// same host), which cost half the CPU of every reply when it was
    /// built per reply.
    client: Result<SmtpClientBuilder<String>, String>,
    config: OutboxConfig,
    pending: Mutex<BTreeSet<Key>>,
    wake: Notify,
    limiter: Arc<RateLimiter>,
    /// What the sweep looks at, and when: (ticket, identity of a message
    /// waiting for the next hop's answer, or "" for the ticket as a whole).
    watched: Mutex<BTreeMap<(String, String), Timestamp>>,
    /// Answers of the next hop that could not be recorded when they came.
    unrecorded: Mutex<Vec<sweep::Unrecorded>>,
}

fn relay_client(
    relay: Option<SocketAddr>,
    hostname: &str,
) -> Result<SmtpClientBuilder<String>, String> {
    let relay = relay.ok_or("no reply relay configured")?;
    Ok(
        SmtpClientBuilder::new(relay.ip().to_string(), relay.port())?
            .implicit_tls(false)
            .helo_host(hostname.to_string())
            .timeout(Duration::from_secs(60)),
    )
}

enum Attempt {
    Sent,
    Retry(String),
    Fail(String),
}

/// What recording an attempt before making it allowed.
enum Permit {
    Send(ReplyRecord),
    /// Not to be sent (any more): settled while recording.
    Settled,
    /// The store could not record it: not sent, tried again later.
    Unrecorded,
}

impl Outbox {
    /// Starts the delivery task and the sweep; replies queued before a
    /// restart are picked up from the store, and what a crash left held is
    /// settled by the sweep's first pass.
    pub fn start(
        store: TicketStore,
        relay: Option<SocketAddr>,
        hostname: &str,
        config: OutboxConfig,
    ) -> Outbox {
        let outbox = Outbox {
            inner: Arc::new(Inner {
                store,
                relay,
                client: relay_client(relay, hostname),
                limiter: Arc::new(RateLimiter::new(config.rate_limit_per_hour)),
                config,
                pending: Mutex::new(BTreeSet::new()),
                wake: Notify::new(),
                watched: Mutex::new(BTreeMap::new()),
                unrecorded: Mutex::new(Vec::new()),
            }),
        };
        outbox.scan_store();
        let worker = outbox.clone();
        tokio::spawn(async move { worker.run().await });
        let sweeper = outbox.clone();
        tokio::spawn(async move { sweeper.run_sweep().await });
        outbox
    }

    /// The reply budget, taken when a reply is released.
    pub fn limiter(&self) -> Arc<RateLimiter> {
        self.inner.limiter.clone()
    }

    /// Asks the sweep to look at this ticket when something in it may
    /// need settling (`settle::next_check`).
    pub fn watch(&self, ticket: &Ticket) {
        if let Some(at) = settle::next_check(ticket, self.horizon()) {
            self.watch_at((ticket.id.clone(), String::new()), at);
        }
    }

    /// A message just written to `ticket` waits for the next hop's answer:
    /// the sweep looks at the ticket at the horizon unless
    /// [`Outbox::answered`] says it got one first.
    pub fn watch_message(&self, ticket: &str, identity: &str) {
        let at = Timestamp::now() + self.horizon();
        self.watch_at((ticket.to_string(), identity.to_string()), at);
    }

    /// The next hop's answer to the message is on the ticket. After a 4xx
    /// the sweep still looks at the horizon: no retry may come.
    pub fn answered(&self, ticket: &Ticket, identity: &str, verdict: settle::HopVerdict) {
        self.enqueue_queued(ticket);
        if !matches!(verdict, settle::HopVerdict::Temporary(_)) {
            let key = (ticket.id.clone(), identity.to_string());
            let mut watched = self.inner.watched.lock().unwrap_or_else(|p| p.into_inner());
            watched.remove(&key);
        }
    }

    fn watch_at(&self, key: (String, String), at: Timestamp) {
        let mut watched = self.inner.watched.lock().unwrap_or_else(|p| p.into_inner());
        let entry = watched.entry(key).or_insert(at);
        *entry = (*entry).min(at);
    }

    fn horizon(&self) -> Duration {
        Duration::from_secs(self.inner.config.settle_horizon_secs)
    }

    /// Every ticket, a page at a time: queued replies to the worker, what
    /// is left to settle to the sweep.
    fn scan_store(&self) {
        let store = &self.inner.store;
        let index = match store.ticket_index() {
            Ok(index) => index,
            Err(e) => {
                tracing::error!(error = %e, "outbox: cannot scan the store for pending replies");
                return;
            }
        };
        for page in index.chunks(crate::store::LIST_PAGE) {
            match store.tickets_of(page) {
                Ok(tickets) => tickets.iter().for_each(|t| {
                    self.enqueue_queued(t);
                    self.watch(t);
                }),
                Err(e) => tracing::error!(error = %e, "outbox: cannot read tickets"),
            }
        }
    }

    /// Registers the ticket's queued replies and wakes the worker.
    pub fn enqueue_queued(&self, ticket: &Ticket) {
        let mut pending = self.inner.pending.lock().unwrap_or_else(|p| p.into_inner());
        for r in &ticket.replies {
            if r.state == ReplyState::Queued {
                pending.insert((ticket.id.clone(), r.message_id.clone()));
            }
        }
        drop(pending);
        self.inner.wake.notify_one();
    }

    async fn run(&self) {
        loop {
            let next_due = self.deliver_due().await;
            let wait = next_due
                .unwrap_or(Duration::from_secs(60))
                .min(Duration::from_secs(60));
            tokio::select! {
                _ = self.inner.wake.notified() => {}
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// Delivers every reply that is due; returns when the next one is.
    async fn deliver_due(&self) -> Option<Duration> {
        let keys: Vec<Key> = self
            .inner
            .pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .cloned()
            .collect();
        let now = time::OffsetDateTime::now_utc();
        let mut next: Option<Duration> = None;
        for key in keys {
            let reply = match self.current(&key) {
                Some(r) if r.state == ReplyState::Queued => r,
                _ => {
                    self.forget(&key);
                    continue;
                }
            };
            if let Some(at) = reply.next_attempt_at.as_deref().and_then(parse_time)
                && at > now
            {
                let d = Duration::try_from(at - now).unwrap_or_default();
                next = Some(next.map_or(d, |n| n.min(d)));
                continue;
            }
            let reply = match self.begin_attempt(&key).await {
                Permit::Send(reply) => reply,
                Permit::Settled => {
                    self.forget(&key);
                    continue;
                }
                Permit::Unrecorded => {
                    let d = Duration::from_secs(self.inner.config.retry_initial_secs.max(1));
                    next = Some(next.map_or(d, |n| n.min(d)));
                    continue;
                }
            };
            let attempt = self.send(&reply).await;
            if let Some(d) = self.record(&key, attempt).await {
                next = Some(next.map_or(d, |n| n.min(d)));
            }
        }
        next
    }

    /// Records an attempt before it is made: counted, and the next one
    /// scheduled, so that a crash after sending retries later rather than
    /// at once. A reply past its attempts fails; one of a void ticket is
    /// cancelled.
    async fn begin_attempt(&self, key: &Key) -> Permit {
        let cfg = &self.inner.config;
        let (max_attempts, initial, max) =
            (cfg.max_attempts, cfg.retry_initial_secs, cfg.retry_max_secs);
        let written = self
            .update_queued(key, move |status, r| {
                if status == Status::Void {
                    r.state = ReplyState::Cancelled;
                    r.reason = Some(ReasonCode::ReplyCancelledVoid);
                } else if r.attempts >= max_attempts {
                    r.state = ReplyState::Failed;
                    r.reason = Some(ReasonCode::ReplyFailedAttempts);
                } else {
                    r.attempts += 1;
                    let secs = backoff(initial, max, r.attempts);
                    r.next_attempt_at = Some(rfc3339(
                        time::OffsetDateTime::now_utc() + Duration::from_secs(secs),
                    ));
                }
            })
            .await;
        match written {
            Ok(t) => match reply_in(&t, key) {
                Some(r) if r.state == ReplyState::Queued => Permit::Send(r.clone()),
                Some(r) => {
                    log_reply(&t, r, "not sent");
                    Permit::Settled
                }
                None => Permit::Settled,
            },
            Err(crate::store::StoreError::Rejected(_) | crate::store::StoreError::NotFound(_)) => {
                Permit::Settled
            }
            Err(e) => {
                tracing::error!(error = %e, ticket = %key.0, "outbox: cannot record an attempt; not sending it");
                Permit::Unrecorded
            }
        }
    }

    /// Runs `change` (given the ticket's status) on the reply of `key` if
    /// it is still queued: one settled meanwhile, by the sweep or an
    /// earlier attempt, stays as it is. Returns the ticket as written.
    async fn update_queued(
        &self,
        key: &Key,
        mut change: impl FnMut(Status, &mut ReplyRecord),
    ) -> Result<Ticket, crate::store::StoreError> {
        let msgid = &key.1;
        let outcome = self
            .inner
            .store
            .modify(&key.0, None, |t| {
                let status = t.status;
                let r = t
                    .replies
                    .iter_mut()
                    .find(|r| r.message_id == *msgid)
                    .ok_or("reply vanished")?;
                if r.state == ReplyState::Queued {
                    change(status, r);
                }
                Ok(())
            })
            .await?;
        Ok(outcome.into_ticket())
    }

    fn current(&self, (ticket, msgid): &Key) -> Option<ReplyRecord> {
        let t = self.inner.store.get(ticket).ok()??;
        t.replies.into_iter().find(|r| &r.message_id == msgid)
    }

    fn forget(&self, key: &Key) {
        self.inner
            .pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key);
    }

    async fn send(&self, reply: &ReplyRecord) -> Attempt {
        let Some(relay) = self.inner.relay else {
            return Attempt::Retry("no reply relay configured".into());
        };
        let builder = match &self.inner.client {
            Ok(b) => b,
            Err(e) => return Attempt::Fail(e.clone()),
        };
        let mut client = match builder.connect_plain().await {
            Ok(c) => c,
            Err(e) => return Attempt::Retry(format!("relay {relay}: {e}")),
        };
        // mail-send writes the body and the final dot in two writes; with
        // Nagle on, the second waits for a delayed ACK (40 ms a reply).
        let _ = client.stream.set_nodelay(true);
        // RFC 3834 §3.3: an automatic response goes out with a null
        // return path, so it can never cause a bounce loop.
        let message = Message::new("", [reply.to.as_str()], reply.raw.as_bytes());
        let result = client.send(message).await;
        let _ = client.quit().await;
        match result {
            Ok(()) => Attempt::Sent,
            Err(mail_send::Error::UnexpectedReply(r)) if r.code() >= 500 => {
                Attempt::Fail(format!("relay refused: {} {}", r.code(), r.message()))
            }
            Err(e) => Attempt::Retry(format!("relay {relay}: {e}")),
        }
    }

    /// Writes the attempt's result; returns the delay to the next attempt.
    async fn record(&self, key: &Key, attempt: Attempt) -> Option<Duration> {
        let cfg = &self.inner.config;
        let (max_attempts, initial, max) =
            (cfg.max_attempts, cfg.retry_initial_secs, cfg.retry_max_secs);
        let (state, reason, note) = attempt.result();
        // The attempt was counted and the next one scheduled before it was
        // made (`begin_attempt`); a retry keeps that schedule.
        let written = self
            .update_queued(key, move |_, r| {
                r.state = state;
                r.reason = reason;
                if state != ReplyState::Queued {
                    r.next_attempt_at = None;
                } else if r.attempts >= max_attempts {
                    r.state = ReplyState::Failed;
                    r.reason = Some(ReasonCode::ReplyFailedAttempts);
                    r.next_attempt_at = None;
                }
            })
            .await;
        match written {
            Ok(ticket) => {
                let r = reply_in(&ticket, key)?;
                log_reply(&ticket, r, &note);
                if r.state != ReplyState::Queued {
                    self.forget(key);
                    return None;
                }
                Some(Duration::from_secs(backoff(initial, max, r.attempts)))
            }
            // The reply stays queued with its next attempt scheduled: it
            // goes again then (at least once), and the attempts it may
            // make stay bounded.
            Err(e) => {
                tracing::error!(error = %e, ticket = %key.0, "outbox: cannot record a delivery attempt");
                Some(Duration::from_secs(backoff(initial, max, 1)))
            }
        }
    }
}

impl Attempt {
    /// The reply's state, reason and log note after this attempt; a retry
    /// leaves it queued.
    fn result(self) -> (ReplyState, Option<ReasonCode>, String) {
        match self {
            Attempt::Sent => (ReplyState::Sent, None, String::new()),
            Attempt::Fail(e) => (
                ReplyState::Failed,
                Some(ReasonCode::ReplyFailedRelayRefused),
                e,
            ),
            Attempt::Retry(e) => (ReplyState::Queued, None, e),
        }
    }
}

fn reply_in<'t>(ticket: &'t Ticket, (_, msgid): &Key) -> Option<&'t ReplyRecord> {
    ticket.replies.iter().find(|r| &r.message_id == msgid)
}

fn log_reply(ticket: &Ticket, r: &ReplyRecord, note: &str) {
    tracing::info!(
        target: "ticketgate::outbox",
        ticket = %ticket.id, message_id = %r.message_id, to = %r.to,
        state = r.state.as_str(), attempts = r.attempts,
        reason = r.reason.map(|c| c.as_str()).unwrap_or(""), note = %note,
        "reply"
    );
    METRICS.reply(r.state);
}

fn backoff(initial: u64, max: u64, attempts: u32) -> u64 {
    initial
        .saturating_mul(1u64 << attempts.saturating_sub(1).min(20))
        .min(max)
        .max(1)
}

fn parse_time(s: &str) -> Option<time::OffsetDateTime> {
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()
}

fn rfc3339(t: time::OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| now_rfc3339())
}
